"""Outline every kept module instance into a call of an ONNX local function (docs/tags.md, functions form), and back."""

from __future__ import annotations

__all__ = ["FUNCTION_DOMAIN", "FunctionizePass", "FunctionizeResult", "InlineFunctionsPass"]

import dataclasses
import json
from collections import Counter

import onnx_ir as ir

from .._compat.onnx_ir import clone_nodes
from .namespace import NAMESPACE_KEY, ORIGINAL_NAMESPACE_KEY
from .partition import attribute_key, is_convex, partition, subgraphs
from .scoped_names import ORIGINAL_NAME_KEY, scope_of
from .tags import (
    CALLS_KEY,
    CLASS_KEY,
    HIERARCHY_KEY,
    SELF,
    TAG_KEY,
    TAGS_KEY,
    common_ancestor,
    get_calls,
    get_tags,
    is_under,
    set_node_tags,
)

FUNCTION_DOMAIN = "hiercompile"


@dataclasses.dataclass
class FunctionizeResult(ir.passes.PassResult):
    """Which modules became functions, and which stayed inline and why."""

    # call name (the tag; ``tag@k`` for the k-th repeated call of one instance) -> function name
    functions: dict[str, str] = dataclasses.field(default_factory=dict)
    inline: dict[str, str] = dataclasses.field(default_factory=dict)  # call name -> reason


def _owner(node: ir.Node) -> str | None:
    """The module a node is outlined with: its tag, or for a merged node the module enclosing all its tags."""
    tags = get_tags(node)
    return common_ancestor(tags) if tags else None


def _relative(tag: str, module: str) -> str:
    """A tag as seen from inside ``module``'s function: ``.``, ``Child/...``, or absolute if outside it."""
    if tag == module:
        return SELF
    return tag[len(module) + 1 :] if is_under(tag, module) else tag


def _scope(relative_tag: str, hierarchy: dict[str, dict], module: str) -> str:
    """``/self/dense`` for a child's relative tag: its module path below ``module``, ``""`` for the module's own."""
    if relative_tag == SELF or relative_tag.startswith("/"):
        return ""
    base = hierarchy[module]["module"]
    path = hierarchy[f"{module}/{relative_tag}"]["module"]
    return scope_of(path[len(base) + 1 :] if base else path)


def _class_of(tag: str, hierarchy: dict[str, dict]) -> str:
    return hierarchy[tag]["class"].rsplit(".", 1)[-1]


class FunctionizePass(ir.passes.InPlacePass):
    """Turn a flat tagged model into nested module function calls.

    Rules:

    1. Modules are outlined deepest first. A module's members are the main-graph
       nodes whose tag (a call node's: its instance tag) is the module or lies below
       it: children already outlined join as their call nodes. A node merged out of
       several modules belongs to the innermost module enclosing all of them, so
       that every module it served takes its value as an input alike.
    2. Members must be convex (no data path leaves them and comes back);
       otherwise the module stays inline, its nodes join its parent's members,
       and the result says so. The graph is never made invalid.
    3. Function inputs are the values the members use but do not make (graph
       inputs, parameters, folded constants, other modules' values, and what a
       member's control-flow branches read from outside) in order of first use;
       outputs are member values used outside or returned by the model, in order of
       production.
    4. Body nodes (and the nodes of their control-flow branches) carry tags relative
       to the module: ``.`` for its own ops, ``Child.0`` for a child's call or op; a
       tag outside the module (a merged node's second module) stays absolute. Each
       also carries ``hiercompile.class``: the class name of the module that ran it.
    5. Instances of one class whose bodies have the same ops, attributes, wiring,
       relative tags and callees share one function, named after the class:
       ``Block``, ``Block_2`` for a second body; instances of different classes never
       share one.
    6. Nothing in a body names one instance: a node is named ``<scope>/<OpType>_<n>``
       with the scope of its module below the function's (``/self/MatMul_0``), its
       values ``<node name>:<k>``, a formal parameter after the weight it takes,
       relative to the module (``dense.weight``), after the model input it takes, or
       ``input_<k>``; exporter metadata that names instances is dropped and
       ``namespace`` is the relative tag. Body values carry no shapes (instances of
       different sizes share a body); their types stay.
    7. Call nodes in the main graph carry the instance's full tag; initializer tags
       do not change.
    8. An instance that runs several times gives one call per run: members are
       grouped by their call index of the module (``hiercompile.calls``, 0 when
       absent), and the k-th call (k >= 1) is named ``<tag>@k``. Each call is
       outlined on its own, so runs of one instance share one body.
    """

    def call(self, model: ir.Model) -> FunctionizeResult:
        hierarchy = json.loads(model.metadata_props[HIERARCHY_KEY])
        graph = model.graph
        bodies: dict[tuple, str] = {}
        result = FunctionizeResult(model, modified=False)
        for tag in sorted(hierarchy, key=lambda t: -t.count("/")):
            runs: dict[int, set[ir.Node]] = {}
            for node in graph:
                if (owner := _owner(node)) is not None and is_under(owner, tag):
                    runs.setdefault(get_calls(node).get(tag, 0), set()).add(node)
            for index, members in sorted(runs.items()):
                name = f"{tag}@{index}" if index else tag
                if not is_convex(members):
                    result.inline[name] = "its ops are not convex: a path leaves the module and comes back"
                    continue
                result.functions[name] = self._outline(model, hierarchy, tag, name, members, bodies)
                result.modified = True
                graph.sort()
        if result.modified:
            model.opset_imports[FUNCTION_DOMAIN] = 1
        return result

    def _outline(
        self,
        model: ir.Model,
        hierarchy: dict[str, dict],
        tag: str,
        name: str,
        members: set[ir.Node],
        bodies: dict[tuple, str],
    ) -> str:
        graph = model.graph
        cut = partition(graph, members)
        ordered, outputs = cut.nodes, cut.outputs
        outer_calls = {t: k for t, k in get_calls(ordered[0]).items() if t != tag and is_under(tag, t)}
        refs: dict[ir.Value, tuple] = {v: ("in", k) for k, v in enumerate(cut.inputs)}
        signature = []
        for index, node in enumerate(ordered):
            signature.append(
                (
                    node.op_identifier(),
                    tuple(attribute_key(a) for _, a in sorted(node.attributes.items())),
                    tuple(refs.get(v) if v is not None else None for v in node.inputs),
                    len(node.outputs),
                    tuple(_relative(t, tag) for t in get_tags(node)),
                )
            )
            for position, value in enumerate(node.outputs):
                refs[value] = ("node", index, position)
        class_name = _class_of(tag, hierarchy)
        key = (class_name, tuple(signature), tuple(refs[v] for v in outputs))  # rule 5: one class per body
        new_body = key not in bodies
        if new_body:
            bodies[key] = self._function_name(class_name, set(bodies.values()))

        call_outputs = [ir.Value(name=v.name, type=v.type, shape=v.shape) for v in outputs]
        for inner, outer in zip(outputs, call_outputs, strict=True):
            for user, position in list(inner.uses()):
                if user not in members:
                    user.replace_input_with(position, outer)
            for position, graph_output in enumerate(graph.outputs):
                if graph_output is inner:
                    graph.outputs[position] = outer
        graph.remove(ordered, safe=False)
        call = ir.Node(
            FUNCTION_DOMAIN,
            bodies[key],
            inputs=cut.inputs,
            outputs=call_outputs,
            name=name,
            metadata_props={TAG_KEY: tag},
        )
        if outer_calls:  # the call itself runs in a repeated call of an ancestor
            call.metadata_props[CALLS_KEY] = json.dumps(outer_calls, sort_keys=True)
        graph.append(call)
        body_nodes = [inner for node in ordered for inner in _with_branches(node)]
        if not new_body:
            for node in body_nodes:  # the shared body already exists: drop this copy's uses
                for position in range(len(node.inputs)):
                    node.replace_input_with(position, None)
            return bodies[key]
        formals = {  # no shapes: instances of different sizes share the body (rule 6)
            v: ir.Value(name=_formal_name(v, k, hierarchy[tag]["module"]), type=v.type)
            for k, v in enumerate(cut.inputs)
        }
        for node in body_nodes:
            for position, value in enumerate(node.inputs):
                if value in formals:
                    node.replace_input_with(position, formals[value])
        _relativize(body_nodes, tag, hierarchy)
        function = ir.Function(
            FUNCTION_DOMAIN,
            bodies[key],
            graph=ir.Graph(
                list(formals.values()),
                outputs,
                nodes=ordered,
                opset_imports={**graph.opset_imports, FUNCTION_DOMAIN: 1},
            ),
            attributes=[],
        )
        model.functions[function.identifier()] = function
        return bodies[key]

    @staticmethod
    def _function_name(class_name: str, taken: set[str]) -> str:
        name, k = class_name, 1
        while name in taken:
            k += 1
            name = f"{class_name}_{k}"
        return name


def _with_branches(node: ir.Node) -> list[ir.Node]:
    """The node and every node of its control-flow branches, at any depth."""
    found = [node]
    for graph in subgraphs(node):
        for inner in graph:
            found.extend(_with_branches(inner))
    return found


def _formal_name(value: ir.Value, position: int, module_path: str) -> str:
    """A body's formal parameter name that names no instance (rule 6)."""
    if value.is_initializer() and module_path and value.name.startswith(module_path + "."):
        return value.name[len(module_path) + 1 :]
    if value.is_graph_input() or (value.is_initializer() and not module_path):
        return value.name
    return f"input_{position}"


# exporter and renaming metadata whose values name one instance's module path or FX nodes
_INSTANCE_METADATA = (
    NAMESPACE_KEY,
    ORIGINAL_NAME_KEY,
    ORIGINAL_NAMESPACE_KEY,
    "pkg.torch.onnx.name_scopes",
    "pkg.torch.onnx.fx_node",
)


def _relativize(nodes: list[ir.Node], tag: str, hierarchy: dict[str, dict]) -> None:
    """Relative tags, classes, names and namespaces for a new body's nodes (rules 4 and 6)."""
    counts: Counter = Counter()
    for node in nodes:
        tags = get_tags(node)
        relative = [_relative(t, tag) for t in tags]
        for key in (*_INSTANCE_METADATA, TAG_KEY, TAGS_KEY, CALLS_KEY):  # which run belongs to the call
            node.metadata_props.pop(key, None)
        if not relative:
            continue
        set_node_tags(node, relative)
        node.metadata_props[CLASS_KEY] = _class_of(tags[0], hierarchy)
        if relative[0] != SELF and not relative[0].startswith("/"):
            node.metadata_props[NAMESPACE_KEY] = relative[0]
        scope = _scope(relative[0], hierarchy, tag)
        kind = node.op_type
        node.name = f"{scope}/{kind}_{counts[(scope, kind)]}"
        counts[(scope, kind)] += 1
        for k, value in enumerate(node.outputs):
            value.name = f"{node.name}:{k}"
            value.shape = None  # the first instance's sizes: another one may have others


def _full(tag: str, caller: str) -> str:
    if tag.startswith("/"):
        return tag
    return caller if tag == SELF else f"{caller}/{tag}"


class InlineFunctionsPass(ir.passes.InPlacePass):
    """Inline every ``hiercompile`` function call, giving each inlined node its full tag.

    Rules:

    1. Calls are inlined outside in: a body node's tag is joined to its call's full
       tag (``.`` gives the call's tag; an absolute tag stays as it is), and its
       ``hiercompile.class`` is dropped (the full tag names the module).
    2. Inlined nodes and values are named ``<call name>/<name>``, unique per call.
    3. The functions are removed when no call is left; the result is the flat model.
    4. A call that lost its tag (a tool dropped its metadata) cannot resolve its body's
       relative tags: those nodes are left untagged (``hiercompile retag`` can tag
       them), absolute tags stay.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        functions = {f.identifier(): f for f in model.functions.values() if f.domain == FUNCTION_DOMAIN}
        modified = False
        while calls := [n for n in graph if n.op_identifier() in functions]:
            for call in calls:
                self._inline(graph, call, functions[call.op_identifier()])
            modified = True
        for identifier in functions:
            model.functions.pop(identifier)
        model.opset_imports.pop(FUNCTION_DOMAIN, None)
        return ir.passes.PassResult(model, modified=modified)

    @staticmethod
    def _inline(graph: ir.Graph, call: ir.Node, function: ir.Function) -> None:
        caller = call.metadata_props.get(TAG_KEY)
        prefix = call.name or caller or call.op_type

        def joined(name: str) -> str:
            return f"{prefix}{name}" if name.startswith("/") else f"{prefix}/{name}"

        def rename(node: ir.Node) -> None:
            node.name = joined(node.name or node.op_type)
            for value in node.outputs:
                value.name = joined(value.name or "")
            tags = get_tags(node)
            node.metadata_props.pop(CLASS_KEY, None)
            if caller is None:  # rule 4
                tags = [t for t in tags if t.startswith("/")]
                for key in (TAG_KEY, TAGS_KEY, NAMESPACE_KEY):
                    node.metadata_props.pop(key, None)
            else:
                tags = [_full(t, caller) for t in tags]
            if tags:
                set_node_tags(node, tags)
                if NAMESPACE_KEY in node.metadata_props:
                    node.metadata_props[NAMESPACE_KEY] = get_tags(node)[0].lstrip("/")

        value_map: dict[ir.Value, ir.Value | None] = dict(zip(function.inputs, call.inputs, strict=True))
        nodes = clone_nodes(function, value_map, rename)
        ir.convenience.replace_nodes_and_values(
            graph,
            insertion_point=call,
            old_nodes=[call],
            new_nodes=nodes,
            old_values=call.outputs,
            new_values=[value_map[v] for v in function.outputs],
        )
