from __future__ import annotations

import onnx_ir as ir
from hiercompile.passes import CarryTagsPass, get_calls, get_tags

TEXT = """
<ir_version: 10, opset_import: ["" : 20]>
g (float[2] x) => (float[2] y) {
    c = Constant <value = float[2] {1.0, 2.0}> ()
    a = Add (x, c)
    y = Mul (a, x)
}
"""


def _model(scopes: dict[str, str]) -> ir.Model:
    model = ir.from_onnx_text(TEXT)
    for node in model.graph:
        if node.op_type in scopes:
            node.metadata_props["pkg.torch.onnx.name_scopes"] = repr(["", "sub", scopes[node.op_type]])
    return model


def test_nodes_get_the_tag_of_their_fx_node():
    model = _model({"Constant": "fx_c", "Add": "fx_add", "Mul": "fx_mul"})
    result = CarryTagsPass({"": {"fx_c": "/M/C", "fx_add": "/M/A", "fx_mul": "/M"}})(model)
    assert result.modified
    assert {n.op_type: get_tags(n) for n in model.graph} == {"Constant": ["/M/C"], "Add": ["/M/A"], "Mul": ["/M"]}


def test_existing_tags_are_kept_and_unmapped_constants_allowed():
    model = _model({"Add": "fx_add", "Mul": "fx_mul"})
    mul = next(n for n in model.graph if n.op_type == "Mul")
    mul.metadata_props["hiercompile.tag"] = "/M/Kept"
    CarryTagsPass({"": {"fx_add": "/M/A", "fx_mul": "/M"}})(model)
    assert get_tags(mul) == ["/M/Kept"]


def test_unmapped_nodes_stay_untagged():
    model = _model({"Add": "fx_add", "Mul": "fx_unknown"})
    CarryTagsPass({"": {"fx_add": "/M/A"}})(model)
    assert {n.op_type: get_tags(n) for n in model.graph} == {"Constant": [], "Add": ["/M/A"], "Mul": []}


def test_call_indices_of_repeated_module_calls_are_carried():
    model = _model({"Add": "fx_add", "Mul": "fx_mul"})
    CarryTagsPass({"": {"fx_add": "/M/A", "fx_mul": "/M"}}, {"": {"fx_add": {"/M/A": 1}}})(model)
    assert {n.op_type: get_calls(n) for n in model.graph} == {"Constant": {}, "Add": {"/M/A": 1}, "Mul": {}}
