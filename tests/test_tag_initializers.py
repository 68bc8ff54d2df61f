from __future__ import annotations

import json

import onnx
import onnx_ir as ir
from hiercompile.passes import TAGS_KEY, TagInitializersPass, get_tags, set_node_tags

TEXT = """
<ir_version: 10, opset_import: ["" : 20]>
g (float[2] x) => (float[2] y, float[2] unused_out) <float[2] w = {1.0, 2.0}, float[2] unused_out = {0.0, 0.0}> {
    a = Mul (x, w)
    y = Add (a, w)
}
"""


def test_initializer_tags_are_the_sorted_tags_of_its_consumers(tmp_path):
    model = ir.from_onnx_text(TEXT)
    mul, add = list(model.graph)
    set_node_tags(mul, ["/M/Z"])
    set_node_tags(add, ["/M/A", "/M/B"])
    assert TagInitializersPass(fallback_tag="/M")(model).modified
    assert get_tags(model.graph.initializers["w"]) == ["/M/A", "/M/B", "/M/Z"]
    assert get_tags(model.graph.initializers["unused_out"]) == ["/M"]
    assert not TagInitializersPass(fallback_tag="/M")(model).modified
    path = tmp_path / "m.onnx"
    ir.save(model, path)  # the tags are saved with the initializer (docs/tags.md)
    saved = {i.name: {p.key: p.value for p in i.metadata_props} for i in onnx.load(path).graph.initializer}
    assert json.loads(saved["w"][TAGS_KEY]) == ["/M/A", "/M/B", "/M/Z"]
