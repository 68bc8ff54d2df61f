from __future__ import annotations

import onnx
import onnx_ir as ir
import pytest
from hiercompile.passes import AddTagAttributesPass, StripTagAttributesPass, set_node_tags

TEXT = """
<ir_version: 10, opset_import: ["" : 20]>
g (float[2] x) => (float[2] y) {
    a = Relu (x)
    y = Neg (a)
}
"""


def test_round_trip_and_validity():
    model = ir.from_onnx_text(TEXT)
    relu, neg = list(model.graph)
    set_node_tags(relu, ["/M/A"])
    set_node_tags(neg, ["/M/B", "/M/C"])
    original = ir.to_proto(model).SerializeToString()
    AddTagAttributesPass()(model)
    assert relu.attributes["source_module"].value == "/M/A"
    assert "hierarchy_tags" not in relu.attributes
    assert neg.attributes["source_module"].value == "/M/B"
    assert list(neg.attributes["hierarchy_tags"].value) == ["/M/B", "/M/C"]
    with pytest.raises(onnx.checker.ValidationError):  # why the form is opt-in
        onnx.checker.check_model(ir.to_proto(model), full_check=True)
    assert StripTagAttributesPass()(model).modified
    onnx.checker.check_model(ir.to_proto(model), full_check=True)
    assert ir.to_proto(model).SerializeToString() == original
    assert not StripTagAttributesPass()(model).modified
