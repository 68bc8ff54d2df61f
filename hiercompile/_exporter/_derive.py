"""Stage 5: derive the data-flow DAGs, the operation table and the hierarchy summary (SPEC §5)."""

from __future__ import annotations

import networkx as nx
import onnx_ir as ir

from ..passes import ModuleHierarchy, ancestors, get_tags


def hierarchy_metadata(hierarchy: ModuleHierarchy) -> dict[str, dict]:
    """Tag -> ``{"class", "module", "parent"}`` for every kept module (``hiercompile.hierarchy``)."""
    return {info.tag: {"class": info.qualified_class, "module": info.path, "parent": info.parent} for info in hierarchy}


def data_flow_graph(graph: ir.Graph) -> nx.DiGraph:
    """The DAG of the graph's non-``Constant`` nodes, an edge for each value one hands the other.

    Each node has attributes ``op_type`` and ``tags`` (primary first).
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


def operations(graph: ir.Graph) -> dict[str, dict]:
    """Node name / initializer name -> ``{"op_type", "inputs", "outputs", "tags"}``."""
    table: dict[str, dict] = {}
    for name, value in graph.initializers.items():
        table[name] = {"op_type": "Initializer", "inputs": [], "outputs": [name], "tags": get_tags(value)}
    for node in graph:
        if node.op_type == "Constant":
            continue
        table[node.name] = {
            "op_type": node.op_type,
            "inputs": [v.name if v is not None else "" for v in node.inputs],
            "outputs": [v.name for v in node.outputs],
            "tags": get_tags(node),
        }
    return table


def hierarchy_summary(hierarchy: ModuleHierarchy, full: nx.DiGraph) -> dict[str, dict]:
    """``hierarchy.json``: the metadata object plus depth, children, parameters and op counts."""
    summary = hierarchy_metadata(hierarchy)
    own = {tag: 0 for tag in summary}
    for _, data in full.nodes(data=True):
        own[data["tags"][0]] += 1
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
