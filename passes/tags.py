"""Where tags live in an ONNX model (SPEC §4), and how to read and write them."""

from __future__ import annotations

__all__ = [
    "HIERARCHY_KEY",
    "TAGS_KEY",
    "TAG_KEY",
    "VERSION_KEY",
    "common_ancestor",
    "get_tags",
    "is_under",
    "metadata_of",
    "set_node_tags",
    "untagged_nodes",
]

import json
from collections.abc import Iterable

import onnx_ir as ir

TAG_KEY = "hiercompile.tag"
TAGS_KEY = "hiercompile.tags"
HIERARCHY_KEY = "hiercompile.hierarchy"
VERSION_KEY = "hiercompile.version"


def get_tags(obj: ir.Node | ir.Value) -> list[str]:
    """All tags of a node (primary first) or an initializer; ``[]`` when untagged."""
    props = metadata_of(obj)
    if TAGS_KEY in props:
        return json.loads(props[TAGS_KEY])
    return [props[TAG_KEY]] if TAG_KEY in props else []


def metadata_of(obj: ir.Node | ir.Value) -> dict[str, str]:
    """The metadata that holds tags: a node's own, or an initializer's tensor's (saved with it)."""
    if isinstance(obj, ir.Value) and obj.const_value is not None:
        return obj.const_value.metadata_props
    return obj.metadata_props


def set_node_tags(node: ir.Node, tags: Iterable[str]) -> None:
    """Write a node's tags: the first is primary, repeats are dropped."""
    unique = list(dict.fromkeys(tags))
    if not unique:
        raise ValueError(f"node {node.name!r} needs at least one tag")
    node.metadata_props[TAG_KEY] = unique[0]
    if len(unique) > 1:
        node.metadata_props[TAGS_KEY] = json.dumps(unique)
    else:
        node.metadata_props.pop(TAGS_KEY, None)


def is_under(tag: str, ancestor: str) -> bool:
    """Whether ``tag`` is ``ancestor`` or lies in its subtree."""
    return tag == ancestor or tag.startswith(ancestor + "/")


def common_ancestor(tags: Iterable[str]) -> str:
    """The innermost tag that every tag in ``tags`` lies under."""
    split = [t.split("/") for t in tags]
    common: list[str] = []
    for parts in zip(*split, strict=False):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    return "/".join(common)


def untagged_nodes(graph: ir.Graph | ir.Function) -> list[ir.Node]:
    """Non-``Constant`` nodes of ``graph`` (and its subgraphs) without a tag."""
    return [
        node
        for node in ir.traversal.RecursiveGraphIterator(graph)
        if node.op_type != "Constant" and TAG_KEY not in node.metadata_props
    ]
