from __future__ import annotations

import onnx_ir as ir
import pytest
from hiercompile.passes import InheritTagsPass, UnmappedNodesError, get_tags, set_node_tags

TEXT = """
<ir_version: 10, opset_import: ["" : 20]>
g (float[4] x) => (float[4] y) {
    a = Relu (x)
    s1, s2 = Split <num_outputs = 2> (a)
    b = Neg (s1)
    c = Abs (s2)
    d = Concat <axis = 0> (b, c)
    e = Cast <to = 1> (d)
    y = Sigmoid (e)
}
"""


def _model(tags: dict[str, str], exporter: set[str] = frozenset()) -> ir.Model:
    model = ir.from_onnx_text(TEXT)
    for node in model.graph:
        if node.op_type in tags:
            set_node_tags(node, [tags[node.op_type]])
        if node.op_type in exporter:
            node.metadata_props["pkg.torch.onnx.name_scopes"] = "['', 'fx_node']"
    return model


def test_orphans_take_the_module_enclosing_their_users_then_inputs():
    model = _model({"Relu": "/M/Pre", "Neg": "/M/Block/A", "Abs": "/M/Block/B", "Concat": "/M/Block/A"})
    assert InheritTagsPass(fallback_tag="/M")(model).modified
    tags = {n.op_type: get_tags(n) for n in model.graph}
    assert tags["Split"] == ["/M/Block"]  # users in A and B: their innermost common module
    assert tags["Cast"] == ["/M/Block/A"]  # no tagged user (Sigmoid is an orphan too): its input's module
    assert tags["Sigmoid"] == ["/M/Block/A"]  # chain: from its input, resolved first


def test_nothing_to_do():
    model = _model({op: "/M" for op in ("Relu", "Split", "Neg", "Abs", "Concat", "Cast", "Sigmoid")})
    assert not InheritTagsPass(fallback_tag="/M")(model).modified


def test_no_tag_anywhere_gives_the_root():
    model = _model({})
    InheritTagsPass(fallback_tag="/Root")(model)
    assert {tuple(get_tags(n)) for n in model.graph} == {("/Root",)}


def test_untagged_exporter_node_is_an_error_naming_it():
    model = _model({"Relu": "/M"}, exporter={"Cast"})
    with pytest.raises(UnmappedNodesError, match=r"1 ONNX nodes have no tag: .*Cast.*fx_node"):
        InheritTagsPass(fallback_tag="/M")(model)
