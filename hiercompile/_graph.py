"""Graph facts of a tagged ONNX model that the export and the tools both read: its data-flow DAG
and its ops, subgraphs included."""

from __future__ import annotations

__all__ = ["data_flow_graph", "ops"]

from collections.abc import Iterator

import networkx as nx
import onnx_ir as ir

from .passes import get_tags
from .passes.partition import subgraph_owners


def data_flow_graph(graph: ir.Graph) -> nx.DiGraph:
    """The DAG of the main graph's non-``Constant`` nodes, an edge for each value one hands the other.

    A control-flow node stands for its subgraphs (docs/tags.md): their ops are not nodes of
    this DAG, and only its declared inputs are edges (the values its branches read from
    outside are not, as the tag format states it). Each node has
    attributes ``op_type`` and ``tags`` (primary first).
    """
    dag = nx.DiGraph()
    for node in graph:
        if node.op_type == "Constant":
            continue
        dag.add_node(node.name, op_type=node.op_type, tags=get_tags(node))
        for value in node.inputs:
            producer = value.producer() if value is not None else None
            if producer is not None and producer.name in dag:
                dag.add_edge(producer.name, node.name)
    return dag


def ops(graph: ir.Graph) -> Iterator[tuple[ir.Node, ir.Node | None]]:
    """Every non-``Constant`` node, in subgraphs too (docs/tags.md), with the control-flow node whose
    subgraph holds it (None in the main graph); a control-flow node comes before its subgraphs."""
    owners = subgraph_owners(graph)
    for node in ir.traversal.RecursiveGraphIterator(graph):
        if node.op_type != "Constant":
            yield node, owners.get(node.graph)
