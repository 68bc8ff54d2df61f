"""Tag the nodes an ONNX optimizer created without the exporter's metadata."""

from __future__ import annotations

__all__ = ["InheritTagsPass", "UnmappedNodesError"]

import onnx_ir as ir

from .carry_tags import NAME_SCOPES_KEY
from .tags import TAG_KEY, get_tags, inherit_tags, set_node_tags, untagged_nodes


class UnmappedNodesError(ir.passes.PostconditionError):
    """Some ONNX nodes could not be given a tag."""


class InheritTagsPass(ir.passes.InPlacePass):
    """Give an untagged node that no FX node produced the tag of its neighbours.

    Rewrite rules and constant folding build new nodes (a ``Split`` for several
    ``Slice`` s, a ``Cast``); some copy the replaced nodes' metadata, some do not.

    Rules:

    1. Only main-graph nodes with neither a tag nor exporter metadata are tagged.
    2. Such a node takes the innermost module enclosing all its tagged consumers;
       with none, the innermost module enclosing all its tagged producers; with
       neither, ``fallback_tag`` (the root) (:func:`inherit_tags`, as for FX ops).
    3. Postcondition: every non-``Constant`` node has a tag. A node that carries
       exporter metadata but no tag came from an FX node that was never tagged:
       the error names it and that FX node.
    """

    def __init__(self, fallback_tag: str) -> None:
        super().__init__()
        self.fallback_tag = fallback_tag

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        order = [n for n in model.graph if n.op_type != "Constant"]
        tags = {n: get_tags(n)[0] for n in order if TAG_KEY in n.metadata_props}
        orphans = [n for n in order if n not in tags and NAME_SCOPES_KEY not in n.metadata_props]
        if not orphans:
            return ir.passes.PassResult(model, modified=False)
        inherit_tags(
            [n for n in order if n in tags or n in orphans],
            tags,
            users=lambda n: [u for v in n.outputs for u, _ in v.uses()],
            inputs=lambda n: [v.producer() for v in n.inputs if v is not None and v.producer() is not None],
            default=self.fallback_tag,
        )
        for node in orphans:
            set_node_tags(node, [tags[node]])
        return ir.passes.PassResult(model, modified=True)

    def ensures(self, model: ir.Model) -> None:
        missing = untagged_nodes(model.graph)
        if missing:
            described = ", ".join(
                f"{n.name} ({n.op_type}, from FX node {n.metadata_props.get(NAME_SCOPES_KEY, '?')})"
                for n in missing[:5]
            )
            raise UnmappedNodesError(f"{len(missing)} ONNX nodes have no tag: {described}")
