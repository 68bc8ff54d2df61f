"""Common-subexpression elimination that keeps the tags of the nodes it removes.

onnx-ir's ``CommonSubexpressionEliminationPass`` drops the removed node and its
metadata, so an op computed identically in two modules (a mask built the same way
in every block) would end up tagged with only the first module. This pass merges
the same duplicates and unions their tags (docs/tags.md).
"""

from __future__ import annotations

__all__ = ["MergeDuplicatesPass"]

import onnx_ir as ir

from .partition import attribute_key
from .tags import get_tags, set_node_tags

_RANDOM_OPS = frozenset(
    {"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial", "Bernoulli"}
)


class MergeDuplicatesPass(ir.passes.InPlacePass):
    """Merge duplicate nodes of the main graph and union their tags.

    Rules:

    1. Two nodes are duplicates when they have the same operator (domain, type,
       overload), the very same input values, as many outputs, and equal
       attributes. Nodes with subgraph attributes, random ops and nodes with a
       tensor attribute over ``size_limit`` elements are never merged.
    2. Nodes are visited in graph order; a duplicate of an earlier node is removed
       and its outputs' uses are redirected to the earlier node's outputs, so chains
       of duplicates collapse in one pass.
    3. The kept node's tags become its own tags followed by the removed node's:
       its primary tag does not change.
    4. A duplicate one of whose outputs is a graph output is kept as it is.
    """

    def __init__(self, size_limit: int = 10) -> None:
        super().__init__()
        self.size_limit = size_limit

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        seen: dict[tuple, ir.Node] = {}
        modified = False
        for node in list(graph):
            if node.op_type in _RANDOM_OPS:
                continue
            attributes = {name: attribute_key(attr, self.size_limit) for name, attr in node.attributes.items()}
            if any(v is None for v in attributes.values()):
                continue
            key = (
                node.op_identifier(),
                len(node.outputs),
                tuple(id(v) for v in node.inputs),
                tuple(sorted(attributes.items())),
            )
            first = seen.setdefault(key, node)
            if first is node or any(out.is_graph_output() for out in node.outputs):
                continue
            if tags := get_tags(first) + get_tags(node):
                set_node_tags(first, tags)
            ir.convenience.replace_all_uses_with(node.outputs, first.outputs)
            graph.remove(node, safe=True)
            modified = True
        return ir.passes.PassResult(model, modified=modified)
