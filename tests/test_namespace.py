"""NamespacePass: Model Explorer's namespace metadata becomes the tag path."""

from __future__ import annotations

import onnx_ir as ir
from hiercompile.passes import NamespacePass

TEXT = """
<ir_version: 10, opset_import: ["" : 20]>
g (float[2] x) => (float[2] y) {
    c = Constant <value = float[2] {1.0, 2.0}> ()
    a = Add (x, c)
    y = Mul (a, x)
}
"""


def test_tagged_nodes_get_their_tag_path_and_the_old_namespace_is_kept():
    model = ir.from_onnx_text(TEXT)
    _constant, add, mul = model.graph
    add.metadata_props.update({"hiercompile.tag": "/M/Block.0/Inner", "namespace": ": M/blocks.0: Block"})
    mul.metadata_props["hiercompile.tag"] = "/M"
    assert NamespacePass()(model).modified
    assert add.metadata_props["namespace"] == "M/Block.0/Inner"
    assert add.metadata_props["hiercompile.original_namespace"] == ": M/blocks.0: Block"
    assert mul.metadata_props["namespace"] == "M" and "hiercompile.original_namespace" not in mul.metadata_props
    assert "namespace" not in _constant.metadata_props  # untagged: left alone
    assert not NamespacePass()(model).modified  # idempotent
    assert add.metadata_props["hiercompile.original_namespace"] == ": M/blocks.0: Block"


def test_relative_tags_in_function_bodies_are_left_alone():
    model = ir.from_onnx_text(TEXT)
    _constant, add, _mul = model.graph
    add.metadata_props["hiercompile.tag"] = "Inner"  # a body's relative tag
    assert not NamespacePass()(model).modified
    assert "namespace" not in add.metadata_props
