"""Overlays for Google's Model Explorer: a value on every node of the model you open in it.

Model Explorer reads node data as ``{graph id: {"results": {node id: {"value": v}},
"gradient": [...]}}`` (its ``node_data_builder``); its ONNX adapter names the main graph
``main_graph`` and each node by its ONNX name, and an export with ``--namespace`` groups
the nodes by module, each group summing or taking the largest of its nodes' values.

Rules:

1. The tools measure per module; a node takes the value of its primary tag's module, or of
   the nearest module above it that has one (a child module that was not measured).
2. A time is split evenly among the nodes of its module, so a group's sum is its time.
3. Nodes of no measured module are left out (drawn without colour).
"""

from __future__ import annotations

__all__ = ["GRAPH", "node_data", "write_node_data"]

import collections
from collections.abc import Mapping
from pathlib import Path

import onnx_ir as ir

from .._io import json_writer, write_files
from ..passes import ancestors, get_tags

GRAPH = "main_graph"
_LOW, _HIGH = "#e8f5e9", "#c62828"  # the colours of the smallest and the largest value


def node_data(model: ir.Model, per_module: Mapping[str, float], *, split: bool = False) -> dict:
    """Model Explorer's node data for ``model``'s main graph from a value per module tag."""
    primary = {node.name: get_tags(node)[0] for node in model.graph if node.name and get_tags(node)}
    own = collections.Counter(primary.values())
    results = {}
    for name, tag in primary.items():
        if split:
            value = per_module.get(tag)
            value = value / own[tag] if value is not None else None
        else:
            value = next((per_module[t] for t in ancestors(tag) if t in per_module), None)
        if value is not None:
            results[name] = {"value": float(value)}
    gradient = [{"stop": 0, "bgColor": _LOW}, {"stop": 1, "bgColor": _HIGH}]
    return {GRAPH: {"results": results, "gradient": gradient}}


def write_node_data(path: str | Path, model: ir.Model, per_module: Mapping[str, float], *, split: bool = False) -> Path:
    """Write :func:`node_data` atomically to ``path``."""
    path = Path(path)
    write_files(path.parent, {path.name: json_writer(node_data(model, per_module, split=split))})
    return path
