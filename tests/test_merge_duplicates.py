from __future__ import annotations

import numpy as np
import onnx_ir as ir
from conftest import run_ir
from hiercompile.passes import MergeDuplicatesPass, get_tags, set_node_tags

TEXT = """
<ir_version: 10, opset_import: ["" : 20]>
g (float[3] x) => (float[3] y, float[3] r2) {
    r1 = Relu (x)
    n1 = Neg (r1)
    r2 = Relu (x)
    n2 = Neg (r2)
    s = Add (n1, n2)
    t1 = Transpose <perm = [0]> (x)
    t2 = Transpose <perm = [0]> (x)
    u = Add (t1, t2)
    y = Add (s, u)
}
"""


def _tagged() -> ir.Model:
    model = ir.from_onnx_text(TEXT)
    for i, node in enumerate(model.graph):
        set_node_tags(node, [f"/M/Mod{i}"])
    return model


def test_duplicates_merge_and_union_their_tags():
    model = _tagged()
    x = np.array([-1.0, 0.5, 2.0], dtype=np.float32)
    before = run_ir(model, {"x": x})
    assert MergeDuplicatesPass()(model).modified
    ops = [(n.op_type, get_tags(n)) for n in model.graph]
    # r2 is a graph output: kept (rule 4), so n2 differs from n1 and stays
    assert ("Relu", ["/M/Mod0"]) in ops and ("Relu", ["/M/Mod2"]) in ops
    assert ("Transpose", ["/M/Mod5", "/M/Mod6"]) in ops  # merged, primary first
    assert sum(op == "Transpose" for op, _ in ops) == 1
    after = run_ir(model, {"x": x})
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_chains_collapse_in_one_pass():
    text = """
    <ir_version: 10, opset_import: ["" : 20]>
    g (float[3] x) => (float[3] y) {
        a1 = Relu (x)
        b1 = Neg (a1)
        a2 = Relu (x)
        b2 = Neg (a2)
        y = Add (b1, b2)
    }
    """
    model = ir.from_onnx_text(text)
    for i, node in enumerate(model.graph):
        set_node_tags(node, [f"/M/L{i}"])
    MergeDuplicatesPass()(model)
    assert [(n.op_type, get_tags(n)) for n in model.graph] == [
        ("Relu", ["/M/L0", "/M/L2"]),
        ("Neg", ["/M/L1", "/M/L3"]),
        ("Add", ["/M/L4"]),
    ]
    assert not MergeDuplicatesPass()(model).modified


def test_different_attributes_do_not_merge():
    text = """
    <ir_version: 10, opset_import: ["" : 20]>
    g (float[2,3] x) => (float[3,2] y, float[2,3] z) {
        y = Transpose <perm = [1, 0]> (x)
        z = Transpose <perm = [0, 1]> (x)
    }
    """
    model = ir.from_onnx_text(text)
    assert not MergeDuplicatesPass()(model).modified
    assert len(model.graph) == 2
