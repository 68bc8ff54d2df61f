"""Carry the FX tags into the ONNX model the dynamo exporter produced."""

from __future__ import annotations

__all__ = ["NAME_SCOPES_KEY", "CarryTagsPass", "fx_graph_path"]

import ast
import json

import onnx_ir as ir

from .tags import CALLS_KEY, TAG_KEY, set_node_tags

# The dynamo exporter writes, on every node it emits, the module path scopes and,
# last, the name of the FX node the ONNX node was translated from.
NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def fx_graph_path(graph: ir.Graph, main: ir.Graph) -> str:
    """The path of the FX graph an ONNX graph was translated from: ``""`` for the main graph;
    a subgraph is named after its FX attribute path, ``.`` written ``__`` (``true_graph_0__false_graph_0``)."""
    return "" if graph is main else (graph.name or "").replace("__", ".")


class CarryTagsPass(ir.passes.InPlacePass):
    """Attach ``hiercompile.tag`` to every ONNX node from the FX node it came from.

    Rules:

    1. The FX node of an ONNX node is the last entry of its
       ``pkg.torch.onnx.name_scopes`` metadata, looked up in the FX graph its ONNX graph
       was translated from (:func:`fx_graph_path`): names repeat between the main graph
       and the branches of control flow.
    2. A node that already has a tag keeps it.
    3. A node whose FX node ran in a repeated module call (``fx_calls``) also gets
       ``hiercompile.calls``: JSON ``{tag: k}``, read by the functions form.
    4. A node without exporter metadata (an optimizer made it) is left to
       :class:`InheritTagsPass`, which also fails on any node still untagged.
    """

    def __init__(
        self, fx_tags: dict[str, dict[str, str]], fx_calls: dict[str, dict[str, dict[str, int]]] | None = None
    ) -> None:
        super().__init__()
        self.fx_tags = fx_tags
        self.fx_calls = fx_calls or {}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            if TAG_KEY in node.metadata_props or NAME_SCOPES_KEY not in node.metadata_props:
                continue
            fx_name = ast.literal_eval(node.metadata_props[NAME_SCOPES_KEY])[-1]
            path = fx_graph_path(node.graph, model.graph) if node.graph is not None else ""
            if fx_name in (tags := self.fx_tags.get(path, {})):
                set_node_tags(node, [tags[fx_name]])
                if fx_name in (calls := self.fx_calls.get(path, {})):
                    node.metadata_props[CALLS_KEY] = json.dumps(calls[fx_name], sort_keys=True)
                modified = True
        return ir.passes.PassResult(model, modified=modified)
