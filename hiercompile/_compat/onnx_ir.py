"""onnx-ir's private names.

``onnx_ir._cloner.Cloner`` (checked on onnx-ir 0.1.x and 1.1) copies a function's body into
a graph with its values mapped to the call's and a hook on each copied node: what inlining
a functions-form model needs to turn each body node's relative tag into its full one. onnx-ir's
public ``InlinePass`` inlines without that hook. Without the cloner, the nodes are copied by
hand, which covers bodies without control-flow subgraphs (hiercompile's functions form has
none); a body with one is a :class:`~hiercompile.CompatError`.
"""

from __future__ import annotations

__all__ = ["clone_nodes"]

import importlib
from collections.abc import Callable, Iterable

import onnx_ir as ir

from .._errors import CompatError


def clone_nodes(
    nodes: Iterable[ir.Node], value_map: dict[ir.Value, ir.Value | None], post_process: Callable[[ir.Node], None]
) -> list[ir.Node]:
    """Copies of ``nodes`` reading ``value_map``'s values for the ones it maps (the copies'
    outputs are added to it), each passed to ``post_process``."""
    try:
        _cloner = importlib.import_module("onnx_ir._cloner")
    except ImportError:
        return [_copied(node, value_map, post_process) for node in nodes]
    cloner = _cloner.Cloner(attr_map={}, value_map=value_map, metadata_props={}, post_process=post_process)
    return [cloner.clone_node(node) for node in nodes]


def _copied(node: ir.Node, value_map: dict[ir.Value, ir.Value | None], post_process: Callable) -> ir.Node:
    if any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()):
        raise CompatError(
            f"onnx-ir {ir.__version__} has no onnx_ir._cloner, which copying a function body with control flow "
            f"(node {node.name}) needs; install onnx-ir 1.1"
        )
    inputs = [value_map.get(v, v) if v is not None else None for v in node.inputs]
    copy = ir.Node(
        node.domain,
        node.op_type,
        inputs,
        attributes=list(node.attributes.values()),
        overload=node.overload,
        num_outputs=len(node.outputs),
        name=node.name,
        metadata_props=dict(node.metadata_props),
    )
    for old, new in zip(node.outputs, copy.outputs, strict=True):
        new.name, new.type, new.shape = old.name, old.type, old.shape
        value_map[old] = new
    post_process(copy)
    return copy
