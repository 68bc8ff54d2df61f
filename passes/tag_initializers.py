"""Tag every initializer with the modules that use it (docs/tags.md)."""

from __future__ import annotations

__all__ = ["TagInitializersPass"]

import json

import onnx_ir as ir

from .tags import TAGS_KEY, get_tags, metadata_of


class TagInitializersPass(ir.passes.InPlacePass):
    """Write ``hiercompile.tags`` on every initializer of the main graph.

    Rules:

    1. An initializer's tags are the sorted set of all tags of the nodes that
       consume it, in the main graph or in any subgraph: one tag usually, several
       for shared or tied parameters.
    2. An initializer that no tagged node consumes (only a graph output, say)
       gets ``fallback_tag``, the root's tag.
    3. Existing initializer tags are replaced: the pass can run again after a
       graph change.
    """

    def __init__(self, fallback_tag: str) -> None:
        super().__init__()
        self.fallback_tag = fallback_tag

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for value in model.graph.initializers.values():
            tags = sorted({tag for user, _ in value.uses() for tag in get_tags(user)}) or [self.fallback_tag]
            encoded = json.dumps(tags)
            props = metadata_of(value)
            if props.get(TAGS_KEY) != encoded:
                props[TAGS_KEY] = encoded
                modified = True
        return ir.passes.PassResult(model, modified=modified)
