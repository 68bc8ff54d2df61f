from __future__ import annotations

import onnx_ir as ir
from hiercompile.passes import ORIGINAL_NAME_KEY, ScopedNamesPass, set_node_tags
from hiercompile.passes.scoped_names import scope_of

import hiercompile

TEXT = """
<ir_version: 10, opset_import: ["" : 20]>
g (float[2] x) => (float[2] y) {
    a = Relu (x)
    b = Relu (a)
    c = Neg (b)
    y = Relu (c)
}
"""


def test_scope_of_keeps_container_indices_with_their_name():
    assert scope_of("encoder.layer.0.attention.self") == "/encoder/layer.0/attention/self"
    assert scope_of("blocks.3") == "/blocks.3"
    assert scope_of("") == ""


def test_names_count_per_module_and_op_type():
    model = ir.from_onnx_text(TEXT)
    for node, tag in zip(model.graph, ["/M/A", "/M/A", "/M/A", "/M"], strict=True):
        set_node_tags(node, [tag])
    old = [n.name for n in model.graph]
    assert ScopedNamesPass({"/M": "", "/M/A": "a.0"})(model).modified
    assert [n.name for n in model.graph] == ["/a.0/Relu_0", "/a.0/Relu_1", "/a.0/Neg_0", "/Relu_0"]
    assert [n.metadata_props.get(ORIGINAL_NAME_KEY) for n in model.graph] == [o or None for o in old]
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert not ScopedNamesPass({"/M": "", "/M/A": "a.0"})(model).modified


def test_bert_names_are_unique_stable_and_searchable(bert_tiny, bert_export):
    _, inputs, result, _ = bert_export
    names = [n.name for n in result.model.graph]
    assert len(names) == len(set(names))
    assert "/encoder/layer.0/attention/self/MatMul_0" in names
    again = hiercompile.export(bert_tiny, kwargs=inputs)
    assert [n.name for n in again.model.graph] == names  # stable across exports
    assert set(again.operations) == set(result.operations)
    plain = hiercompile.export(bert_tiny, kwargs=inputs, scoped_names=False)
    assert all(n.name.startswith("node_") for n in plain.model.graph)
