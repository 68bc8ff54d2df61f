"""The seed notes' literal tag form: node attributes ``source_module`` and ``hierarchy_tags``.

Standard ONNX operators reject unknown attributes, so a model carrying them fails
``onnx.checker`` and ONNX Runtime refuses to load it (docs/tags.md). The form is written
only on request, to a separate file, and :class:`StripTagAttributesPass` removes it.
"""

from __future__ import annotations

__all__ = ["AddTagAttributesPass", "StripTagAttributesPass"]

import onnx_ir as ir

from .tags import get_tags

SOURCE_MODULE = "source_module"
HIERARCHY_TAGS = "hierarchy_tags"


class AddTagAttributesPass(ir.passes.InPlacePass):
    """Copy each node's tags into node attributes.

    Rules:

    1. Every tagged node gets ``source_module`` (STRING): its primary tag.
    2. A node with several tags also gets ``hierarchy_tags`` (STRINGS): all its tags.
    3. Metadata tags stay as they are.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            tags = get_tags(node)
            if not tags:
                continue
            node.attributes[SOURCE_MODULE] = ir.AttrString(SOURCE_MODULE, tags[0])
            if len(tags) > 1:
                node.attributes[HIERARCHY_TAGS] = ir.AttrStrings(HIERARCHY_TAGS, tags)
            modified = True
        return ir.passes.PassResult(model, modified=modified)


class StripTagAttributesPass(ir.passes.InPlacePass):
    """Remove ``source_module`` and ``hierarchy_tags`` node attributes.

    Rules:

    1. Both attributes are removed from every node, in subgraphs too.
    2. Nothing else changes: the metadata tags remain, so the result is the valid model.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            for name in (SOURCE_MODULE, HIERARCHY_TAGS):
                modified |= node.attributes.pop(name, None) is not None
        return ir.passes.PassResult(model, modified=modified)
