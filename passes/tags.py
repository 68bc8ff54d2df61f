"""Where tags live in an ONNX model (docs/tags.md), and how to read and write them."""

from __future__ import annotations

__all__ = [
    "CALLS_KEY",
    "CLASS_KEY",
    "HIERARCHY_KEY",
    "SELF",
    "TAGS_KEY",
    "TAG_KEY",
    "VERSION_KEY",
    "ancestors",
    "common_ancestor",
    "get_calls",
    "get_tags",
    "inherit_tags",
    "is_under",
    "metadata_of",
    "set_node_tags",
    "tag_depth",
    "untagged_nodes",
]

import json
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

import onnx_ir as ir

TAG_KEY = "hiercompile.tag"
TAGS_KEY = "hiercompile.tags"
HIERARCHY_KEY = "hiercompile.hierarchy"
VERSION_KEY = "hiercompile.version"
CALLS_KEY = "hiercompile.calls"  # JSON {tag: k}: the node ran in the k-th call (k >= 1) of that module
CLASS_KEY = "hiercompile.class"  # in a function body: the class name of the module that ran the node
SELF = "."  # in a function body: the relative tag of the function's own ops


def get_tags(obj: ir.Node | ir.Value) -> list[str]:
    """All tags of a node (primary first) or an initializer; ``[]`` when untagged."""
    props = metadata_of(obj)
    if TAGS_KEY in props:
        return json.loads(props[TAGS_KEY])
    return [props[TAG_KEY]] if TAG_KEY in props else []


def get_calls(node: ir.Node) -> dict[str, int]:
    """``{tag: k}`` for each module the node ran in for the k-th time (k >= 1); ``{}`` for first calls."""
    return json.loads(node.metadata_props.get(CALLS_KEY, "{}"))


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


def tag_depth(tag: str) -> int:
    """Depth of a module in the hierarchy: 0 for the root (``/Model``)."""
    return tag.count("/") - 1


def ancestors(tag: str) -> list[str]:
    """``/A/B/C`` -> ``["/A/B/C", "/A/B", "/A"]``: the tag and every module above it."""
    parts = tag.split("/")
    return ["/".join(parts[:k]) for k in range(len(parts), 1, -1)]


def common_ancestor(tags: Iterable[str]) -> str:
    """The innermost tag that every tag in ``tags`` lies under."""
    split = [t.split("/") for t in tags]
    common: list[str] = []
    for parts in zip(*split, strict=False):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    return "/".join(common)


N = TypeVar("N", bound=Hashable)


def inherit_tags(
    order: Sequence[N],
    tags: dict[N, str],
    *,
    users: Callable[[N], Iterable[N]],
    inputs: Callable[[N], Iterable[N]],
    default: str,
) -> None:
    """Give each op of ``order`` (topological) that has no tag one from its neighbours, in place.

    The op takes the innermost module enclosing all its tagged users; with no tagged
    user, the innermost module enclosing all its tagged inputs; with neither, ``default``.
    Users are filled in first (from the end), so chains of untagged ops resolve.
    """
    for op in reversed(order):
        if op not in tags and (user_tags := [tags[u] for u in users(op) if u in tags]):
            tags[op] = common_ancestor(user_tags)
    for op in order:
        if op not in tags:
            input_tags = [tags[i] for i in inputs(op) if i in tags]
            tags[op] = common_ancestor(input_tags) if input_tags else default


def untagged_nodes(graph: ir.Graph | ir.Function) -> list[ir.Node]:
    """Non-``Constant`` nodes of ``graph`` (and its subgraphs) without a tag."""
    return [
        node
        for node in ir.traversal.RecursiveGraphIterator(graph)
        if node.op_type != "Constant" and TAG_KEY not in node.metadata_props
    ]
