"""Outline every kept module instance into a call of an ONNX local function (SPEC §6), and back."""

from __future__ import annotations

__all__ = ["FUNCTION_DOMAIN", "FunctionizePass", "FunctionizeResult", "InlineFunctionsPass"]

import dataclasses
import json

import onnx_ir as ir
from onnx_ir import _cloner

from .partition import attribute_key, is_convex, partition
from .tags import CALLS_KEY, HIERARCHY_KEY, TAG_KEY, common_ancestor, get_calls, get_tags, is_under, set_node_tags

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
    """A tag as seen from inside ``module``'s function: ``""``, ``Child/...``, or absolute if outside it."""
    if tag == module:
        return ""
    return tag[len(module) + 1 :] if is_under(tag, module) else tag


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
       inputs, parameters, folded constants, other modules' values) in order of
       first use; outputs are member values used outside or returned by the model,
       in order of production.
    4. Body nodes carry tags relative to the module: ``""`` for its own ops,
       ``Child.0`` for a child's call; a tag outside the module (a merged node's
       second module) stays absolute.
    5. Bodies with the same ops, attributes, wiring, relative tags and callees
       share one function, named by class: ``Block``, ``Block_2`` for a different body.
    6. Call nodes in the main graph carry the instance's full tag; initializer tags
       do not change.
    7. An instance that runs several times gives one call per run: members are
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
                result.functions[name] = self._outline(model, tag, name, members, bodies)
                result.modified = True
                graph.sort()
        if result.modified:
            model.opset_imports[FUNCTION_DOMAIN] = 1
        return result

    def _outline(self, model: ir.Model, tag: str, name: str, members: set[ir.Node], bodies: dict[tuple, str]) -> str:
        graph = model.graph
        cut = partition(graph, members)
        ordered, outputs = cut.nodes, cut.outputs
        outer_calls = {t: k for t, k in get_calls(ordered[0]).items() if t != tag and is_under(tag, t)}
        inputs = {v: ir.Value(name=v.name, type=v.type, shape=v.shape) for v in cut.inputs}
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
        key = (tuple(signature), tuple(refs[v] for v in outputs))
        new_body = key not in bodies
        if new_body:
            bodies[key] = self._function_name(tag.rsplit("/", 1)[-1].split(".")[0], set(bodies.values()))

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
            inputs=list(inputs),
            outputs=call_outputs,
            name=name,
            metadata_props={TAG_KEY: tag},
        )
        if outer_calls:  # the call itself runs in a repeated call of an ancestor
            call.metadata_props[CALLS_KEY] = json.dumps(outer_calls, sort_keys=True)
        graph.append(call)
        if not new_body:
            for node in ordered:  # the shared body already exists: drop this copy's uses
                for position in range(len(node.inputs)):
                    node.replace_input_with(position, None)
            return bodies[key]
        for node in ordered:
            for position, value in enumerate(node.inputs):
                if value in inputs:
                    node.replace_input_with(position, inputs[value])
            relative = [_relative(t, tag) for t in get_tags(node)]
            node.metadata_props.pop(TAG_KEY, None)
            node.metadata_props.pop(CALLS_KEY, None)  # which run it is belongs to the call, not the body
            if relative:
                set_node_tags(node, relative)
        function = ir.Function(
            FUNCTION_DOMAIN,
            bodies[key],
            graph=ir.Graph(
                list(inputs.values()),
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


def _full(tag: str, caller: str) -> str:
    if tag.startswith("/"):
        return tag
    return f"{caller}/{tag}" if tag else caller


class InlineFunctionsPass(ir.passes.InPlacePass):
    """Inline every ``hiercompile`` function call, giving each inlined node its full tag.

    Rules:

    1. Calls are inlined outside in: a body node's tag is joined to its call's full
       tag (``""`` gives the call's tag; an absolute tag stays as it is).
    2. Inlined nodes and values are named ``<call name>/<name>``, unique per call.
    3. The functions are removed when no call is left; the result is the flat model.
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
        caller = call.metadata_props[TAG_KEY]
        prefix = call.name or caller

        def rename(node: ir.Node) -> None:
            node.name = f"{prefix}/{node.name or node.op_type}"
            for value in node.outputs:
                value.name = f"{prefix}/{value.name}"
            tags = get_tags(node)
            if TAG_KEY in node.metadata_props:
                set_node_tags(node, [_full(t, caller) for t in tags])

        value_map: dict[ir.Value, ir.Value | None] = dict(zip(function.inputs, call.inputs, strict=True))
        cloner = _cloner.Cloner(attr_map={}, value_map=value_map, metadata_props={}, post_process=rename)
        nodes = [cloner.clone_node(node) for node in function]
        ir.convenience.replace_nodes_and_values(
            graph,
            insertion_point=call,
            old_nodes=[call],
            new_nodes=nodes,
            old_values=call.outputs,
            new_values=[value_map[v] for v in function.outputs],
        )
