"""FX pass: decide the tag of every op of a captured graph, before lowering.

The tag is stored in ``node.meta["custom"]``, which torch.export's decompositions
copy to every node they produce, so tags survive into the graph the ONNX exporter
translates.
"""

from __future__ import annotations

__all__ = ["call_indices", "tag_fx_graph", "tag_graph_module"]

from collections.abc import Callable

from torch import fx

from .module_tags import ModuleHierarchy
from .tags import CALLS_KEY, TAG_KEY, inherit_tags

_OPS = ("call_function", "call_method", "call_module")
# torch.export's placeholder for "no module stack" on ops it creates itself (symbolic shape checks)
_EMPTY_STACK = "_empty_nn_module_stack_from_metadata_hook"


def _stack_paths(node: fx.Node, hierarchy: ModuleHierarchy, normalize: Callable[[str], str]) -> list[str] | None:
    stack = node.meta.get("nn_module_stack") or {}
    paths = [hierarchy.module_path(key, normalize(path)) for key, (path, _cls) in stack.items() if path != _EMPTY_STACK]
    return paths or None


def _stack_calls(node: fx.Node, hierarchy: ModuleHierarchy, normalize: Callable[[str], str]) -> dict[str, int]:
    """{tag: k} for each kept module on the stack that runs its k-th call (k >= 1): keys end in ``@k``."""
    calls = {}
    for key, (path, _cls) in (node.meta.get("nn_module_stack") or {}).items():
        _, at, index = key.rpartition("@")
        if not (at and index.isdigit() and int(index) > 0):
            continue
        if tag := hierarchy.tag_of_path(hierarchy.module_path(key, normalize(path))):
            calls[tag] = int(index)
    return calls


def tag_fx_graph(
    graph: fx.Graph,
    hierarchy: ModuleHierarchy,
    *,
    normalize_path: Callable[[str], str] = lambda path: path,
    caller: str | None = None,
) -> dict[str, str]:
    """Tag every op of ``graph`` and return ``{node name: tag}``.

    Rules:

    1. A node that already carries a tag keeps it (so the pass can run again on
       a decomposed graph and only fill in nodes it has not seen).
    2. A node with an ``nn_module_stack`` gets the tag of the innermost kept module
       on it (:meth:`ModuleHierarchy.tag_of_stack`); ``normalize_path`` turns the
       stack's paths into ``named_modules()`` paths (dynamo writes ``L['self'].a[0]``).
    3. A node without a stack (created by a tracer outside any module call, or with
       torch.export's empty-stack placeholder) takes
       the innermost module enclosing all its tagged users; with no tagged user,
       the innermost module enclosing its tagged inputs; with neither, the root.
    4. A node that runs inside the k-th call (k >= 1) of a kept module instance
       (its stack key ends in ``@k``) also records ``{tag: k}`` under
       ``CALLS_KEY``, so the functions form can tell the calls apart. The tag
       itself does not change: one instance keeps one tag however often it runs.
    5. In the graph of a control-flow branch or loop body (``caller`` is the tag of
       the ``cond``/``scan`` node that runs it), a node without a stack ran in the
       branch function itself, so in the module that called it: it gets ``caller``.

    Raises ``KeyError`` naming a stack path that is not a submodule of the model.
    """
    ops = [n for n in graph.nodes if n.op in _OPS]
    tags: dict[fx.Node, str] = {}
    for node in ops:
        custom = node.meta.get("custom") or {}
        if TAG_KEY in custom:
            tags[node] = custom[TAG_KEY]
            continue
        if (paths := _stack_paths(node, hierarchy, normalize_path)) is not None:
            tags[node] = hierarchy.tag_of_stack(paths)
        elif caller is not None:  # rule 5
            tags[node] = caller
        if calls := _stack_calls(node, hierarchy, normalize_path):  # rule 4
            node.meta["custom"] = {**custom, CALLS_KEY: calls}
    inherit_tags(  # rule 3
        ops, tags, users=lambda n: n.users, inputs=lambda n: n.all_input_nodes, default=hierarchy.root.tag
    )
    for node, tag in tags.items():
        node.meta["custom"] = {**(node.meta.get("custom") or {}), TAG_KEY: tag}
    return {node.name: tag for node, tag in tags.items()}


def tag_graph_module(
    module: fx.GraphModule,
    hierarchy: ModuleHierarchy,
    *,
    normalize_path: Callable[[str], str] = lambda path: path,
) -> dict[str, dict[str, str]]:
    """Tag the ops of ``module``'s graph and of every subgraph in it (the branches of
    ``cond``, the bodies of ``scan`` and loops, nested at any depth).

    Returns ``{graph path: {node name: tag}}``: ``""`` for the main graph, the subgraph's
    attribute path (``true_graph_0``, ``true_graph_0.false_graph_0``) for the others. FX
    names repeat between graphs, so a tag is looked up by graph and name together.
    """
    tables = {"": tag_fx_graph(module.graph, hierarchy, normalize_path=normalize_path)}
    subgraphs = {name: m for name, m in module.named_modules() if name and isinstance(m, fx.GraphModule)}
    for name in sorted(subgraphs, key=lambda n: n.count(".")):  # parents first
        parent_path, _, attribute = name.rpartition(".")
        parent = module.get_submodule(parent_path) if parent_path else module
        runners = [
            user.name
            for node in parent.graph.find_nodes(op="get_attr", target=attribute)
            for user in node.users
            if user.op in _OPS
        ]
        caller = tables[parent_path].get(runners[0]) if runners else None
        tables[name] = tag_fx_graph(subgraphs[name].graph, hierarchy, normalize_path=normalize_path, caller=caller)
    return tables


def call_indices(module: fx.GraphModule) -> dict[str, dict[str, dict[str, int]]]:
    """``{graph path: {node name: {tag: k}}}`` for the ops the tagging found in a repeated call (rule 4)."""
    graphs = {name: m.graph for name, m in module.named_modules() if isinstance(m, fx.GraphModule)}
    return {
        path: {node.name: calls for node in graph.nodes if (calls := (node.meta.get("custom") or {}).get(CALLS_KEY))}
        for path, graph in graphs.items()
    }
