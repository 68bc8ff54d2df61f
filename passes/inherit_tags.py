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

    1. Only nodes with neither a tag nor exporter metadata are tagged, in the main
       graph and in every subgraph (the branches of ``If``, the bodies of loops).
    2. Such a node takes the innermost module enclosing all its tagged consumers in
       its graph; with none, the innermost module enclosing all its tagged producers;
       with neither, ``fallback_tag`` (the root) in the main graph and the tag of the
       control-flow node in a subgraph (:func:`inherit_tags`, as for FX ops).
    3. Postcondition: every non-``Constant`` node has a tag. A node that carries
       exporter metadata but no tag came from an FX node that was never tagged:
       the error names it and that FX node.
    """

    def __init__(self, fallback_tag: str) -> None:
        super().__init__()
        self.fallback_tag = fallback_tag

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = self._inherit(model.graph, self.fallback_tag)
        for node in ir.traversal.RecursiveGraphIterator(model.graph):  # subgraphs, outer ones first
            for attr in node.attributes.values():
                graphs = [attr.value] if attr.type is ir.AttributeType.GRAPH else []
                graphs += list(attr.value) if attr.type is ir.AttributeType.GRAPHS else []
                for subgraph in graphs:
                    modified |= self._inherit(subgraph, get_tags(node)[0] if get_tags(node) else self.fallback_tag)
        return ir.passes.PassResult(model, modified=modified)

    @staticmethod
    def _inherit(graph: ir.Graph, fallback: str) -> bool:
        order = [n for n in graph if n.op_type != "Constant"]
        tags = {n: get_tags(n)[0] for n in order if TAG_KEY in n.metadata_props}
        orphans = [n for n in order if n not in tags and NAME_SCOPES_KEY not in n.metadata_props]
        if not orphans:
            return False
        inherit_tags(
            [n for n in order if n in tags or n in orphans],
            tags,
            users=lambda n: [u for v in n.outputs for u, _ in v.uses() if u.graph is graph],
            inputs=lambda n: [v.producer() for v in n.inputs if v is not None and v.producer() is not None],
            default=fallback,
        )
        for node in orphans:
            set_node_tags(node, [tags[node]])
        return True

    def ensures(self, model: ir.Model) -> None:
        missing = untagged_nodes(model.graph)
        if missing:
            described = ", ".join(
                f"{n.name} ({n.op_type}, from FX node {n.metadata_props.get(NAME_SCOPES_KEY, '?')})"
                for n in missing[:5]
            )
            raise UnmappedNodesError(f"{len(missing)} ONNX nodes have no tag: {described}")
