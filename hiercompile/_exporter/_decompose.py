"""Stage 3a: decompose the ops of a captured program that ONNX has no translation for, one op at a time.

torch's exporter decomposes a program by tracing all of it once more
(``ExportedProgram.run_decompositions``): every op runs again on fake tensors with
symbolic sizes, twice (aot_autograd collects metadata, then traces), though nearly every
op of the program has a translation and comes out of that trace as it went in. Here only the ops
that need it are traced, each alone, on the values the capture recorded, and the program
is the one the whole trace gives: the same ATen ops (tests hold them equal).
"""

from __future__ import annotations

__all__ = ["decompose_ops"]

import contextlib
import logging
import operator
from collections.abc import Callable, Collection, Mapping
from typing import Any

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from .._compat.torch import (
    HigherOrderOperator,
    OperatorBase,
    OpOverload,
    always_decomposed,
    detect_fake_mode,
    python_dispatcher,
    pytree,
)
from .._compat.torch import size_oblivious as oblivious

logger = logging.getLogger(__name__)

# the exporter's assertions, which it removes before translating (_fx_passes.remove_assertion_nodes)
_ASSERTIONS = frozenset(
    {
        torch.ops.aten.sym_constrain_range_for_size.default,
        torch.ops.aten._assert_async.default,
        torch.ops.aten._assert_async.msg,
        torch.ops.aten._assert_scalar.default,
        torch.ops.aten._assert_tensor_metadata.default,
    }
)
# Python's arithmetic on sizes, which the exporter translates
_SIZE_MODULES = frozenset({"_operator", "math", "builtins", "torch", "torch.fx.experimental.sym_node"})
# what a decomposed op's own trace records; the rest of its metadata is the replaced op's
_VALUE_KEYS = ("val", "tensor_meta", "unbacked_bindings")

_Trace = tuple[torch.fx.Node, list[torch.fx.Node], torch.fx.GraphModule]


def decompose_ops(
    program: torch.export.ExportedProgram,
    table: Mapping[OperatorBase, Callable],
    translated: Collection[OperatorBase],
    *,
    size_oblivious: bool = False,
) -> str | None:
    """Replace, in place, each op of ``program`` that is not ``translated`` by the ops its
    decomposition runs; None when done, else why it cannot be done.

    Rules:

    1. Ops with a translation, the exporter's assertions and Python's arithmetic on sizes
       stay as they are, but for the composite ops torch always decomposes (:func:`_decomposes`).
    2. An op that writes into its first input (``add_``, ``detach_``) becomes its functional
       op (``add``), read by the op's users and by every later reader of that input, when
       nothing else can see the write: the input is a tensor an op of the program made
       (not a view, not an input of the program) and no view of it was taken before
       (:func:`_functionalize`). Any other write is left to torch's trace.
    3. Each other op is traced alone (``make_fx`` with ``table`` and torch's composite
       decompositions), on the fake values the capture recorded for its inputs and in the
       program's shape environment (size-oblivious, as its capture was, with
       ``size_oblivious``). Its ops replace it, each with its own values and the
       replaced op's other metadata: module stack, tags, source lines.
    4. An op whose trace is that op again (it has no decomposition) stays, for the
       lowering's remedies.
    5. Not done when a write cannot be made functional, the program has a higher-order op
       (a branch, a loop: functionalizing them takes the whole program), a value the
       capture recorded is missing, or a trace would add a guard (the decomposition would
       specialize a dynamic size to the example's). The program is then as it was, but for
       the writes of rule 2, which compute the same.
    6. An output the program's signature names by its op's name is named after the ops that
       replaced it; the ops no output reads are removed, as torch's trace removes them.
    """
    graph = program.graph_module.graph
    writes = []
    for node in graph.nodes:
        if node.op == "call_module":
            return f"{node.name} calls a submodule"
        if node.op != "call_function" or node.target in _ASSERTIONS:
            continue
        if not isinstance(node.target, OpOverload):
            if getattr(node.target, "__module__", None) in _SIZE_MODULES and not isinstance(
                node.target, HigherOrderOperator
            ):
                continue
            return f"{node.name} calls {node.target}, not an ATen op"
        if node.target._schema.is_mutable:
            writes.append(node)
    if writes and (why_not := _functionalize(graph, writes)):
        return why_not
    todo = [
        node
        for node in graph.nodes
        if node.op == "call_function"
        and isinstance(node.target, OpOverload)
        and node.target not in _ASSERTIONS
        and _decomposes(node.target, table, translated)
    ]
    if not todo:
        _cleaned(program)
        return None
    if python_dispatcher() is None:
        return "this torch has no Python dispatcher to trace an op with"
    values = [n.meta.get("val") for node in todo for n in node.all_input_nodes]
    fake_mode = detect_fake_mode([v for v in values if isinstance(v, torch.Tensor)])
    if any(v is None for v in values) or fake_mode is None or fake_mode.shape_env is None:
        return "an op's input has no value recorded by the capture"
    guards = len(fake_mode.shape_env.guards)
    traces = []
    seen: dict[tuple, torch.fx.GraphModule | None] = {}
    # a program captured so that sizes of 0 or 1 stay dynamic is decomposed so too
    with fake_mode, oblivious() if size_oblivious else contextlib.nullcontext():
        for node in todo:
            trace = _trace(node, table, seen)
            if isinstance(trace, str):
                return trace
            if trace is not None:
                traces.append(trace)
    if len(fake_mode.shape_env.guards) != guards:
        return "a decomposition guards on a dynamic size"
    replaced: dict[torch.fx.Node, Any] = {}
    for node, inputs, sub in traces:
        _splice(graph, node, [replaced.get(n, n) for n in inputs], sub, replaced)
    _cleaned(program)
    logger.info(
        "lower: decomposed %d op(s) one at a time (%d had no decomposition)", len(traces), len(todo) - len(traces)
    )
    return None


def _functional_op(op: OpOverload) -> OpOverload | None:
    """``add`` for ``add_``: the op that computes what ``op`` writes into its first input."""
    schema = op._schema
    written = [a for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write]
    if written != schema.arguments[:1] or len(schema.returns) != 1 or not op._opname.endswith("_"):
        return None
    packet = getattr(getattr(torch.ops, op.namespace), op._opname[:-1], None)
    functional = getattr(packet, op._overloadname, None)
    if not isinstance(functional, OpOverload) or functional._schema.is_mutable:
        return None
    return functional if [a.name for a in functional._schema.arguments] == [a.name for a in schema.arguments] else None


def _aliases(node: torch.fx.Node) -> bool:
    """Whether ``node``'s value may share memory with another's (a view, an input, a write)."""
    if node.op != "call_function":
        return True
    if node.target is operator.getitem:
        return _aliases(node.args[0])
    return not isinstance(node.target, OpOverload) or any(r.alias_info is not None for r in node.target._schema.returns)


def _functionalize(graph: torch.fx.Graph, writes: list[torch.fx.Node]) -> str | None:
    """Rule 2 of :func:`decompose_ops` for ``writes`` (in the graph's order); None when done,
    else why not, with nothing changed."""
    order = {node: i for i, node in enumerate(graph.nodes)}
    functional = {}
    for node in writes:
        target = node.args[0]
        op = _functional_op(node.target)
        if op is None:
            return f"{node.name} writes into a tensor ({node.target}) and has no functional op"
        made = functional.get(target)
        if made is None and (not isinstance(target, torch.fx.Node) or _aliases(target)):
            return f"{node.name} writes into {getattr(target, 'name', target)}, which another value may share"
        if made is not None and made._schema.returns[0].alias_info is not None:
            return f"{node.name} writes into a view ({target.name})"
        if any(u is not node and order[u] < order[node] and _aliases(u) for u in target.users):
            return f"{node.name} writes into {target.name}, which a view read before"
        functional[node] = op
    for node in writes:
        target = node.args[0]
        later = [u for u in target.users if u is not node and order[u] > order[node]]
        with graph.inserting_before(node):
            new = graph.call_function(functional[node], node.args, node.kwargs)
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        for user in later:
            user.replace_input_with(target, new)
        order[new] = order[node]
        graph.erase_node(node)
    logger.info("lower: %d write(s) into a tensor made functional", len(writes))
    return None


def _decomposes(op: OpOverload, table: Mapping[OperatorBase, Callable], translated: Collection) -> bool:
    """Whether torch's exporter would decompose ``op``: it is in ``table``, it has no
    translation, or it is a composite op torch always decomposes (one that may alias or
    mutate its inputs: ``reshape``, ``to``, ``batch_norm``)."""
    return op in table or op not in translated or always_decomposed(op) is not False


def _trace(node: torch.fx.Node, table: Mapping[OperatorBase, Callable], seen: dict[tuple, Any]) -> _Trace | str | None:
    """``node``'s op alone, traced with its decompositions; None when that is the op again.

    An op traced before with the same arguments (the same constants, inputs of the same
    dtypes, sizes and strides, symbolic ones alike) is not traced again: ``seen`` has its
    trace (48 identical blocks decompose their ops once)."""
    flat, spec = pytree.tree_flatten((node.args, node.kwargs))
    where = [i for i, a in enumerate(flat) if isinstance(a, torch.fx.Node)]
    multiple = isinstance(node.meta["val"], (tuple, list))
    if multiple and any(user.target is not operator.getitem for user in node.users):
        return f"{node.name}'s outputs are read whole"
    inputs = [flat[i] for i in where]
    key = (node.target, str(spec), *(_described(a) for a in flat), *(inputs.index(n) for n in inputs))
    if key not in seen:
        seen[key] = _traced(node.target, flat, spec, where, table)
    sub = seen[key]
    if sub is None:
        return None
    if any(isinstance(n.target, OpOverload) and n.target._schema.is_mutable for n in sub.graph.nodes):
        return f"{node.name}'s decomposition mutates a tensor"
    return node, inputs, sub


def _described(arg: Any) -> Any:
    """What a decomposition may read of an argument: a constant as it is; of a value, its
    kind, dtype, device, sizes, strides and offset (symbolic ones by their expressions)."""
    if not isinstance(arg, torch.fx.Node):
        return repr(arg)
    value = arg.meta["val"]
    if isinstance(value, torch.Tensor):
        return (value.dtype, value.device, str(value.shape), str(value.stride()), str(value.storage_offset()))
    return (type(value).__name__, str(value))


def _traced(
    op: Any, flat: list, spec: Any, where: list[int], table: Mapping[OperatorBase, Callable]
) -> torch.fx.GraphModule | None:
    def run(*values: Any) -> Any:
        full = list(flat)
        for i, value in zip(where, values, strict=True):
            full[i] = value
        args, kwargs = pytree.tree_unflatten(full, spec)
        return op(*args, **kwargs)

    # as aot_autograd traces: the recorded fake values as they are, under the program's
    # fake mode (entered by the caller) and the Python dispatcher, which holds torch's
    # Python kernels of composite ops; "symbolic" tracing would first copy every input
    # into a new fake tensor (a fifth of the time)
    with python_dispatcher():
        sub = make_fx(run, decomposition_table=table, tracing_mode="real")(*(flat[i].meta["val"] for i in where))
    ops = [n for n in sub.graph.nodes if n.op == "call_function"]
    return None if len(ops) == 1 and ops[0].target is op else sub


def _splice(
    graph: torch.fx.Graph,
    node: torch.fx.Node,
    inputs: list[torch.fx.Node],
    sub: torch.fx.GraphModule,
    replaced: dict[torch.fx.Node, Any],
) -> None:
    """Put ``sub``'s ops in ``graph`` in place of ``node``, reading ``inputs``."""
    env: dict[torch.fx.Node, Any] = {}
    given = iter(inputs)
    kept = {k: v for k, v in node.meta.items() if k not in _VALUE_KEYS}
    with graph.inserting_before(node):
        for n in sub.graph.nodes:
            if n.op == "placeholder":
                env[n] = next(given)
            elif n.op == "output":
                out = pytree.tree_map(lambda x: env[x] if isinstance(x, torch.fx.Node) else x, n.args[0])
            else:
                new = graph.node_copy(n, env.__getitem__)
                new.meta = {**kept, **{k: n.meta[k] for k in _VALUE_KEYS if k in n.meta}}
                env[n] = new
    if isinstance(out, (tuple, list)):
        for user in list(node.users):
            replaced[user] = out[user.args[1]]
            user.replace_all_uses_with(replaced[user])
            graph.erase_node(user)
    else:
        replaced[node] = out
        node.replace_all_uses_with(out)
    graph.erase_node(node)


def _cleaned(program: torch.export.ExportedProgram) -> None:
    """The program's signature names its outputs' nodes: name the ones that replaced them;
    remove the ops no output reads, and write the program's code again."""
    outputs = program.graph.output_node().args[0]
    for spec, node in zip(program.graph_signature.output_specs, outputs, strict=True):
        if isinstance(node, torch.fx.Node) and getattr(spec.arg, "name", node.name) != node.name:
            spec.arg.name = node.name
    program.graph.eliminate_dead_code()
    program.graph_module.recompile()
