"""Stage 5: derive the data-flow DAGs, the operation table and the hierarchy summary (docs/tags.md, side files)."""

from __future__ import annotations

__all__ = ["hierarchy_metadata", "hierarchy_summary", "module_dags", "operations"]

import networkx as nx
import onnx_ir as ir

from .._graph import ops
from ..passes import ModuleHierarchy, ancestors, get_tags


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
