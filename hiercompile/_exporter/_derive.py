"""Stage 5: derive the data-flow DAGs, the operation table and the hierarchy summary (docs/tags.md, side files)."""

from __future__ import annotations

from collections.abc import Iterator

import networkx as nx
import onnx_ir as ir

from ..passes import ModuleHierarchy, ancestors, get_tags, subgraph_owners


def hierarchy_metadata(hierarchy: ModuleHierarchy) -> dict[str, dict]:
    """Tag -> ``{"class", "module", "parent", "num_parameters"}`` for every kept module
    (``hiercompile.hierarchy``): the parameter count is PyTorch's, which the ONNX initializers
    do not give back (weights folded into new constants, buffers)."""
    return {
        info.tag: {
            "class": info.qualified_class,
            "module": info.path,
            "parent": info.parent,
            "num_parameters": info.num_parameters,
        }
        for info in hierarchy
    }


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


def module_dags(full: nx.DiGraph, tags: list[str]) -> dict[str, nx.DiGraph]:
    """Each module's DAG: the subgraph induced by the ops whose primary tag lies in its subtree.

    Each op is added to its module and that module's ancestors, so the cost is ops x depth,
    not ops x modules (which grows with the square of a model's depth in blocks).
    """
    members: dict[str, list[str]] = {tag: [] for tag in tags}
    for name, data in full.nodes(data=True):
        for tag in ancestors(data["tags"][0]):
            members.setdefault(tag, []).append(name)
    return {tag: full.subgraph(members[tag]).copy() for tag in tags}


def ops(graph: ir.Graph) -> Iterator[tuple[ir.Node, ir.Node | None]]:
    """Every non-``Constant`` node, in subgraphs too (docs/tags.md), with the control-flow node whose
    subgraph holds it (None in the main graph); a control-flow node comes before its subgraphs."""
    owners = subgraph_owners(graph)
    for node in ir.traversal.RecursiveGraphIterator(graph):
        if node.op_type != "Constant":
            yield node, owners.get(node.graph)


def operations(graph: ir.Graph) -> dict[str, dict]:
    """Node name / initializer name -> ``{"op_type", "inputs", "outputs", "tags"}``; a node inside
    a subgraph also has ``"parent"``: the name of the control-flow node that runs it."""
    table: dict[str, dict] = {}
    for name, value in graph.initializers.items():
        table[name] = {"op_type": "Initializer", "inputs": [], "outputs": [name], "tags": get_tags(value)}
    for node, parent in ops(graph):
        table[node.name] = {
            "op_type": node.op_type,
            "inputs": [v.name if v is not None else "" for v in node.inputs],
            "outputs": [v.name for v in node.outputs],
            "tags": get_tags(node),
        }
        if parent is not None:
            table[node.name]["parent"] = parent.name
    return table


def hierarchy_summary(hierarchy: ModuleHierarchy, graph: ir.Graph) -> dict[str, dict]:
    """``hierarchy.json``: the metadata object plus depth, children, parameters and op counts
    (ops in subgraphs count for their own module, docs/tags.md)."""
    summary = hierarchy_metadata(hierarchy)
    own = {tag: 0 for tag in summary}
    for node, _ in ops(graph):
        own[get_tags(node)[0]] += 1
    total = dict.fromkeys(summary, 0)
    for tag, n in own.items():
        for ancestor in ancestors(tag):
            total[ancestor] += n
    for entry in summary.values():
        entry["children"] = []
    for info in hierarchy:
        entry = summary[info.tag]
        entry["depth"] = info.depth
        entry["num_parameters"] = info.num_parameters
        entry["num_ops"] = own[info.tag]
        entry["num_ops_total"] = total[info.tag]
        if info.parent is not None:
            summary[info.parent]["children"].append(info.tag)
    return summary
