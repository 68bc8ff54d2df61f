"""A set of nodes cut out of a graph, with the values that flow in and out of it.

Extracting a module as a model of its own and outlining it into a function are the
same cut; both take it from :func:`partition`.
"""

from __future__ import annotations

__all__ = ["Partition", "attribute_key", "is_convex", "partition"]

import dataclasses
from collections.abc import Collection, Hashable, Iterable

import onnx_ir as ir


@dataclasses.dataclass
class Partition:
    """Nodes of one graph and their boundary.

    Attributes:
        nodes: the members, in graph order.
        inputs: values the members use but do not make (graph inputs, initializers,
            values of other nodes), in order of first use.
        outputs: member values used outside the members or returned by the graph,
            in order of production.
    """

    nodes: list[ir.Node]
    inputs: list[ir.Value]
    outputs: list[ir.Value]

    @property
    def params(self) -> list[ir.Value]:
        """The inputs that are initializers (weights, folded constants)."""
        return [v for v in self.inputs if v.is_initializer()]


def partition(graph: ir.Graph, members: Collection[ir.Node]) -> Partition:
    """The members of ``graph`` with their inputs and outputs (see :class:`Partition`)."""
    members = set(members)
    nodes = [n for n in graph if n in members]
    inputs: dict[ir.Value, None] = {}
    for node in nodes:
        for value in node.inputs:
            if value is not None and value.producer() not in members:
                inputs.setdefault(value)
    outputs = [v for n in nodes for v in n.outputs if v.is_graph_output() or any(u not in members for u, _ in v.uses())]
    return Partition(nodes, list(inputs), outputs)


def is_convex(members: Collection[ir.Node]) -> bool:
    """No data path leaves the members and comes back: cutting them out cannot create a cycle."""
    members = set(members)
    frontier = [u for n in members for v in n.outputs for u, _ in v.uses() if u not in members]
    seen: set[ir.Node] = set()
    while frontier:
        node = frontier.pop()
        if node in seen:
            continue
        seen.add(node)
        for value in node.outputs:
            for user, _ in value.uses():
                if user in members:
                    return False
                frontier.append(user)
    return True


def attribute_key(attr: ir.Attr, size_limit: int | None = None) -> Hashable | None:
    """A hashable form of an attribute's value, equal for equal attributes.

    Tensors compare by dtype, shape and bytes; a tensor of more than ``size_limit``
    elements gives None (too costly to compare). Subgraphs compare by identity: two
    nodes with subgraphs are never taken as equal.
    """
    value = attr.value
    if attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
        value = tuple(id(g) for g in (value if isinstance(value, Iterable) else [value]))
    elif attr.type is ir.AttributeType.TENSOR:
        if size_limit is not None and value.size > size_limit:
            return None
        value = (value.dtype, tuple(value.shape), value.tobytes())
    elif attr.type is ir.AttributeType.TENSORS:
        value = tuple((t.dtype, tuple(t.shape), t.tobytes()) for t in value)
    elif isinstance(value, list | tuple):
        value = tuple(value)
    return (attr.name, attr.type, value)
