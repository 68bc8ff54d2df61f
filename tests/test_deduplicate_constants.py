from __future__ import annotations

import numpy as np
import onnx_ir as ir
from conftest import run_ir
from hiercompile.passes import DeduplicateConstantsPass


def _model() -> ir.Model:
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([2]))
    inits = {}
    for name, values in [("p1", [1, 1]), ("p2", [1, 1]), ("c1", [2, 3]), ("c2", [2, 3]), ("c3", [4, 5])]:
        inits[name] = ir.Value(name=name, const_value=ir.tensor(np.array(values, dtype=np.float32), name=name))
    nodes, prev = [], x
    for name in inits:
        node = ir.node("Add", [prev, inits[name]], name=f"add_{name}")
        nodes.append(node)
        prev = node.outputs[0]
    prev.name = "y"
    graph = ir.Graph([x], [prev], nodes=nodes, initializers=list(inits.values()), opset_imports={"": 20})
    return ir.Model(graph, ir_version=10)


def test_only_unprotected_equal_constants_merge():
    model = _model()
    feeds = {"x": np.array([0.5, -1.0], dtype=np.float32)}
    before = run_ir(model, feeds)
    assert DeduplicateConstantsPass(protected={"p1", "p2"})(model).modified
    assert set(model.graph.initializers) == {"p1", "p2", "c1", "c3"}
    assert [n.inputs[1].name for n in model.graph] == ["p1", "p2", "c1", "c1", "c3"]
    np.testing.assert_array_equal(run_ir(model, feeds)[0], before[0])


def test_size_limit():
    model = _model()
    assert not DeduplicateConstantsPass(protected={"p1", "p2"}, size_limit=1)(model).modified
