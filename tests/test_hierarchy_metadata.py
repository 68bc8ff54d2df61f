from __future__ import annotations

import json

import onnx_ir as ir
from hiercompile.passes import HIERARCHY_KEY, VERSION_KEY, HierarchyMetadataPass

TEXT = """
<ir_version: 10, opset_import: ["" : 20]>
g (float[2] x) => (float[2] y) { y = Relu (x) }
"""


def test_writes_hierarchy_and_version():
    hierarchy = {
        "/M/A": {"class": "pkg.A", "module": "a", "parent": "/M"},
        "/M": {"class": "pkg.M", "module": "", "parent": None},
    }
    model = ir.from_onnx_text(TEXT)
    assert HierarchyMetadataPass(hierarchy, "9.9")(model).modified
    assert json.loads(model.metadata_props[HIERARCHY_KEY]) == hierarchy
    assert list(json.loads(model.metadata_props[HIERARCHY_KEY])) == ["/M", "/M/A"]  # sorted keys
    assert model.metadata_props[VERSION_KEY] == "9.9"
    assert not HierarchyMetadataPass(hierarchy, "9.9")(model).modified
