"""A set of nodes cut out of a graph, with the values that flow in and out of it.

Extracting a module as a model of its own and outlining it into a function are the
same cut; both take it from :func:`partition`.
"""

from __future__ import annotations

__all__ = [
    "Partition",
    "attribute_key",
    "captured_values",
    "is_convex",
    "node_inputs",
    "partition",
    "subgraph_owners",
    "subgraphs",
    "top_level",
    "users",
]

import dataclasses
from collections.abc import Collection, Hashable, Iterable, Iterator

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


def subgraphs(node: ir.Node) -> list[ir.Graph]:
    """The graphs in a node's attributes (an ``If``'s branches, a ``Loop``'s or ``Scan``'s body)."""
    found: list[ir.Graph] = []
    for attr in node.attributes.values():
        if attr.type is ir.AttributeType.GRAPH:
            found.append(attr.value)
        elif attr.type is ir.AttributeType.GRAPHS:
            found.extend(attr.value)
    return found


def _nested_graphs(node: ir.Node) -> Iterator[ir.Graph]:
    for graph in subgraphs(node):
        yield graph
        for inner in graph:
            yield from _nested_graphs(inner)


def captured_values(node: ir.Node) -> list[ir.Value]:
    """Values that nodes inside ``node``'s subgraphs (at any depth) use but that are defined
    outside them: a control-flow node's implicit inputs, in order of first use."""
    defined: set[ir.Value] = set()
    used: dict[ir.Value, None] = {}
    for graph in _nested_graphs(node):
        defined.update(graph.inputs)
        defined.update(graph.initializers.values())
        for inner in graph:
            defined.update(inner.outputs)
            used.update(dict.fromkeys(v for v in inner.inputs if v is not None))
    return [v for v in used if v not in defined]


def subgraph_owners(graph: ir.Graph) -> dict[ir.Graph, ir.Node]:
    """Every subgraph nested in ``graph``, at any depth, with the control-flow node that holds it."""
    return {sub: node for node in ir.traversal.RecursiveGraphIterator(graph) for sub in subgraphs(node)}


def top_level(node: ir.Node, graph: ir.Graph, owners: dict[ir.Graph, ir.Node]) -> ir.Node | None:
    """The node of ``graph`` that holds ``node`` (itself, or the control-flow node whose
    subgraphs it sits in); None when it is not in ``graph`` at all."""
    while node is not None and node.graph is not graph:
        node = owners.get(node.graph)
    return node


def users(value: ir.Value, graph: ir.Graph, owners: dict[ir.Graph, ir.Node]) -> list[ir.Node]:
    """The nodes of ``graph`` that use ``value``, directly or inside their subgraphs."""
    return [user for node, _ in value.uses() if (user := top_level(node, graph, owners)) is not None]


def node_inputs(node: ir.Node) -> list[ir.Value]:
    """A node's inputs and the values its subgraphs capture from outside (control flow)."""
    return [*(v for v in node.inputs if v is not None), *captured_values(node)]


def partition(graph: ir.Graph, members: Collection[ir.Node]) -> Partition:
    """The members of ``graph`` with their inputs and outputs (see :class:`Partition`); the
    values a member's subgraphs capture from outside count as its inputs."""
    members = set(members)
    owners = subgraph_owners(graph)
    nodes = [n for n in graph if n in members]
    inputs: dict[ir.Value, None] = {}
    for node in nodes:
        for value in node_inputs(node):
            if value.producer() not in members:
                inputs.setdefault(value)
    outputs = [
        v
        for n in nodes
        for v in n.outputs
        if v.is_graph_output() or any(u not in members for u in users(v, graph, owners))
    ]
    return Partition(nodes, list(inputs), outputs)


def is_convex(members: Collection[ir.Node]) -> bool:
    """No data path leaves the members and comes back: cutting them out cannot create a cycle."""
    members = set(members)
    graph = next(iter(members)).graph if members else None
    owners = subgraph_owners(graph) if graph is not None else {}
    frontier = [u for n in members for v in n.outputs for u in users(v, graph, owners) if u not in members]
    seen: set[ir.Node] = set()
    while frontier:
        node = frontier.pop()
        if node in seen:
            continue
        seen.add(node)
        for value in node.outputs:
            for user in users(value, graph, owners):
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
