"""Record the module hierarchy and the package version in the model (docs/tags.md)."""

from __future__ import annotations

__all__ = ["HierarchyMetadataPass"]

import json

import onnx_ir as ir

from .tags import HIERARCHY_KEY, VERSION_KEY


class HierarchyMetadataPass(ir.passes.InPlacePass):
    """Write ``hiercompile.hierarchy`` and ``hiercompile.version`` into the model's metadata.

    Rules:

    1. ``hiercompile.hierarchy`` is a JSON object with sorted keys: tag ->
       ``{"class", "module", "parent", "num_parameters"}`` for every kept module, with or
       without ops.
    2. ``hiercompile.version`` is the version of the package that wrote the tags.
    """

    def __init__(self, hierarchy: dict[str, dict], version: str) -> None:
        super().__init__()
        self.hierarchy = hierarchy
        self.version = version

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        new = {HIERARCHY_KEY: json.dumps(self.hierarchy, sort_keys=True), VERSION_KEY: self.version}
        modified = any(model.metadata_props.get(k) != v for k, v in new.items())
        model.metadata_props.update(new)
        return ir.passes.PassResult(model, modified=modified)
