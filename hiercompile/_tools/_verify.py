"""Per-module verification: which module's ONNX ops stop reproducing PyTorch."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common_passes
import onnxruntime as ort
import torch
from torch import nn

from .. import _ort
from .._artifacts import VERIFY_FILE, write_result
from .._compat.torch import tree_leaves
from .._errors import InputError, VerifyError
from .._exporter import capture_mode, check_inputs, export
from ..passes import KeepPredicate, ModuleHierarchy, get_tags
from ._retrieve import HierarchyRetriever, ModelSource, model_file


@dataclasses.dataclass
class ModuleCheck:
    """How one module's PyTorch outputs compare with the values its tagged ops produce.

    ``status`` is ``"matched"``, ``"diverged"`` (a value of the right shape exists but
    differs), ``"not produced"`` (no op in the module's subtree makes a value of that
    shape), ``"passthrough"`` (the module returns a tensor it was given, as dropout
    in eval mode does), ``"unused"`` (the model's outputs depend on none of what it
    returns, so the export has none of its ops; of a module's outputs, only those the
    model uses are compared), ``"no ops"`` (nothing of the module is left in the graph:
    its outputs were folded into constants), ``"inside control flow"`` (all its ops run in the
    subgraph of an ``If``, ``Loop`` or ``Scan``, whose values ONNX Runtime cannot expose;
    the control-flow node's own module is checked) or ``"no tensor output"``. Only ``"diverged"``
    and ``"not produced"`` mean the ONNX model or its tags are wrong.

    Verifying a model another tool made (``source=``), a module whose outputs differ is
    ``"inherited"`` when its own ops, run on the inputs the source export gives them, match:
    the difference came in with its inputs; ``"fused"`` when the tool fused every value of it
    the source made into ops that make none of them (an ``Add`` inside a ``SkipLayerNormalization``),
    so that its parent's check covers it. ``own_abs_diff`` is that error of its own ops
    (None where an input of its ops has no counterpart in the source), ``inherited_abs_diff``
    how far its inputs already were from the source's.
    """

    tag: str
    status: str
    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0
    values: list[str] = dataclasses.field(default_factory=list)
    own_abs_diff: float | None = None
    inherited_abs_diff: float | None = None


@dataclasses.dataclass
class VerifyReport:
    """Module checks in hierarchy order, and the first module that diverges."""

    modules: list[ModuleCheck]
    first_divergence: str | None

    @property
    def ok(self) -> bool:
        """No module diverged and every output the model uses was found in the ONNX model."""
        return self.first_divergence is None and not self.not_produced

    @property
    def not_produced(self) -> list[str]:
        """Modules with an output that no op of theirs makes: the model or its tags are wrong."""
        return [m.tag for m in self.modules if m.status == "not produced"]

    def summary(self) -> str:
        """One line: what failed, or that every module matched."""
        parts = [f"first divergence: {self.first_divergence}"] if self.first_divergence else []
        inherited = [m.tag for m in self.modules if m.status == "inherited"]
        if inherited and not self.first_divergence:
            parts.append(f"{len(inherited)} modules differ only by their inputs")
        if self.not_produced:
            parts.append(f"not produced by their own ops: {', '.join(self.not_produced)}")
        return "; ".join(parts) or "every module matched"

    def by_tag(self) -> dict[str, ModuleCheck]:
        return {m.tag: m for m in self.modules}

    def to_json(self) -> dict[str, Any]:
        """``verify.json``: the first divergence and, per tag, status and differences (read by the HTML report)."""
        return {
            "first_divergence": self.first_divergence,
            "modules": {m.tag: dataclasses.asdict(m) for m in self.modules},
        }


def _tensors(obj: Any, attributes: bool = False) -> list[torch.Tensor]:
    """Tensors of a module's output, in order (tensors, tuples, lists, dicts, ModelOutput); with
    ``attributes``, also those held in other objects' attributes (a cache)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v, attributes)]
    if isinstance(obj, list | tuple):
        return [t for v in obj for t in _tensors(v, attributes)]
    if attributes and hasattr(obj, "__dict__") and not isinstance(obj, type | nn.Module):
        return _tensors(vars(obj), attributes)
    return []


class Output(NamedTuple):
    """A module's output tensor (a copy), whether it is one of the tensors the module was
    given, and whether the model's outputs depend on it (else the export drops its ops)."""

    tensor: np.ndarray
    passthrough: bool
    used: bool = True


def _used(roots: list[torch.Tensor]) -> Callable[[torch.Tensor], bool]:
    """Whether the model's outputs ``roots`` were computed from a tensor: its autograd node is
    one they reach. A tensor autograd did not record (integers, nothing with a weight behind
    it) is taken as used."""
    reached: set[Any] = set()
    todo = [t.grad_fn for t in roots if t.grad_fn is not None]
    while todo:
        node = todo.pop()
        if node not in reached:
            reached.add(node)
            todo.extend(next_node for next_node, _ in node.next_functions if next_node is not None)
    if not roots:  # nothing recorded: every tensor counts as used
        return lambda t: True
    return lambda t: t.grad_fn is None or t.grad_fn in reached or any(t is r for r in roots)


def _capture_outputs(
    model: nn.Module, args: tuple, kwargs: dict, hierarchy: ModuleHierarchy
) -> tuple[dict[str, list[Output]], list[str]]:
    """Each kept module's outputs (first call) and the order the modules returned in."""
    returned: dict[str, list[tuple[torch.Tensor, np.ndarray, bool]]] = {}
    finished: list[str] = []
    handles = []
    for info in hierarchy:

        def hook(_module, call_args, call_kwargs, out, tag=info.tag):
            if tag not in returned:
                given = _tensors(list(call_args)) + _tensors(call_kwargs)
                # copies: a caller may update the returned tensor in place (`h += residual`)
                returned[tag] = [
                    (t, t.detach().cpu().numpy().copy(), any(t is g for g in given)) for t in _tensors(out)
                ]
                finished.append(tag)

        handles.append(info.module.register_forward_hook(hook, with_kwargs=True))
    try:
        try:
            with torch.enable_grad():  # the autograd graph tells what the outputs were computed from
                result = model(*args, **kwargs)
            used = _used(_tensors(result, attributes=True))
        except Exception:  # torch.cond compiles its branches to run under autograd, and cannot with hooks
            returned.clear()
            finished.clear()
            with torch.no_grad():
                model(*args, **kwargs)
            used = _used([])
    finally:
        for handle in handles:
            handle.remove()
    outputs = {
        tag: [Output(copy, passthrough, used(t)) for t, copy, passthrough in found] for tag, found in returned.items()
    }
    return outputs, finished


def run_exposing_values(model: ir.Model, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``model`` in ONNX Runtime with every node output exposed; value name -> array."""
    exposed = ir.from_proto(ir.to_proto(model))  # a copy; a tool may have left the nodes out of order
    common_passes.TopologicalSortPass()(exposed)
    if any(v.type is None for n in exposed.graph for v in n.outputs):
        common_passes.ShapeInferencePass()(exposed)  # types for values a graph output must declare
    present = set(exposed.graph.outputs)
    for node in exposed.graph:
        for value in node.outputs:
            if value not in present and value.type is not None:
                exposed.graph.outputs.append(value)
                present.add(value)
    session = _ort.session(exposed)
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    return dict(zip(names, session.run(None, {k: v for k, v in feeds.items() if k in wanted}), strict=True))


def _compare(expected: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    if expected.dtype == np.bool_ or not np.issubdtype(expected.dtype, np.floating):
        diff = float(np.count_nonzero(expected != got))
        return diff, diff
    diff = np.abs(expected.astype(np.float64) - got.astype(np.float64))
    max_abs = float(diff.max()) if diff.size else 0.0
    return max_abs, max_abs / max(float(np.abs(expected).max()) if expected.size else 0.0, 1e-12)


def verify(
    model: nn.Module,
    args: tuple = (),
    kwargs: dict[str, Any] | None = None,
    onnx_model: ModelSource | None = None,
    *,
    keep: KeepPredicate | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    training: bool = False,
    output: str | Path | None = None,
    feeds: Mapping[str, np.ndarray] | None = None,
    source: ModelSource | None = None,
) -> VerifyReport:
    """Compare every kept module's PyTorch outputs with the values its tagged ONNX ops produce.

    A module matches when each of its output tensors equals (within ``atol + rtol·max|x|``)
    some value produced by an op of its subtree, or a constant its ops read (the optimizer
    folds what does not depend on the inputs, a position bias say). The first divergence is the diverging
    module whose forward returned first: the innermost, earliest place the two disagree.
    Without ``onnx_model`` the model is exported first. PyTorch runs in eval mode unless
    ``training`` (as :func:`hiercompile.export` captures). ``output``: write ``verify.json``
    there (a folder, or a ``.json`` path), stamped with the ONNX file's hash (``onnx_model``
    must then be a path). The ONNX model runs on the example inputs flattened as torch
    flattens them (a cache into its tensors), or on ``feeds``, its inputs by name.

    ``source``: the hiercompile export ``onnx_model`` was made from by another tool (ONNX
    Runtime's optimizer, a quantizer, a float16 converter). ``onnx_model`` is retagged from it
    in memory (:func:`hiercompile.retag`, which refuses a model that does not come from it),
    and each module's own ops also run on the inputs the source export gives them: the first
    divergence is then the first module whose *own* error passes the tolerance, not the first
    to return a value that came in diverged (see :class:`ModuleCheck`).
    """
    kwargs = dict(kwargs or {})
    check_inputs(model, args, kwargs)
    if output is not None and not isinstance(onnx_model, str | Path):
        raise InputError(
            "output= writes verify.json stamped with the model file's hash, so it needs onnx_model as a path; "
            "pass the .onnx file (or its export folder) the model was saved to"
        )
    with capture_mode(model, training):
        report = _verify(model, args, kwargs, onnx_model, keep, atol, rtol, feeds, source)
    if output is not None:
        output = Path(output)
        path = output / VERIFY_FILE if output.suffix != ".json" else output
        stamp = model_file(Path(onnx_model)) if isinstance(onnx_model, str | Path) else None
        write_result(path, report.to_json(), stamp)
    return report


def _verify(
    model: nn.Module,
    args: tuple,
    kwargs: dict[str, Any],
    onnx_model: ModelSource | None,
    keep: KeepPredicate | None,
    atol: float,
    rtol: float,
    feeds: Mapping[str, np.ndarray] | None,
    source: ModelSource | None,
) -> VerifyReport:
    if onnx_model is None:
        if source is not None:
            raise InputError("source= names what onnx_model was made from; pass onnx_model too")
        onnx_model = export(model, args, kwargs=kwargs, keep=keep).model
    retagged = None
    if source is not None:
        from ._retag import retag

        retagged = retag(onnx_model, source)
        onnx_model = retagged.model
    retriever = HierarchyRetriever(onnx_model)
    hierarchy = ModuleHierarchy(model, keep)
    missing = set(hierarchy.tags) ^ set(retriever.hierarchy)
    if missing:
        raise VerifyError(
            f"the ONNX model's modules differ from the PyTorch model's ({sorted(missing)[:3]}); "
            "verify the model the file was exported from, with the same keep predicate"
        )
    graph_inputs = [v.name for v in retriever.model.graph.inputs]
    if feeds is None:  # before PyTorch runs: a model may update a cache it was given in place
        flat = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if len(flat) != len(graph_inputs):
            raise VerifyError(
                f"the ONNX model takes {len(graph_inputs)} inputs but the example inputs hold {len(flat)} "
                "tensors; pass the inputs the model was exported with"
            )
        feeds = {name: t.detach().cpu().numpy().copy() for name, t in zip(graph_inputs, flat, strict=True)}
    elif missing_feeds := sorted(set(graph_inputs) - set(feeds)):
        raise VerifyError(f"feeds has no {', '.join(missing_feeds)}, which the ONNX model takes")
    expected, finished = _capture_outputs(model, args, kwargs, hierarchy)
    values = run_exposing_values(retriever.model, {k: v for k, v in feeds.items() if k in graph_inputs})
    initializers = retriever.model.graph.initializers
    for name, value in initializers.items():  # folded constants: a module's output may have become one
        if value.const_value is not None and name not in values:
            values[name] = value.const_value.numpy()
    producers = {node.name: node for node in retriever.model.graph}  # main graph: its values can be observed
    own = _OwnErrors(retriever.model, source, retagged.values, values, feeds) if retagged is not None else None
    checks = []
    for tag in retriever.modules():
        ops = retriever.get_nodes_by_module(tag)
        produced = [v.name for n in ops if n in producers for v in producers[n].outputs]
        produced += [name for name in retriever.initializers_of(tag) if name in values] if produced else []
        if ops and not produced:  # every op of it runs inside an If/Loop/Scan subgraph
            checks.append(ModuleCheck(tag, "inside control flow"))
            continue
        outputs = expected.get(tag, [])
        if own is not None:  # the values that stand for the ones the source's ops of the module made
            produced, outputs = own.counterparts(tag, outputs)
            if expected.get(tag) and not outputs:
                checks.append(ModuleCheck(tag, "fused"))
                continue
        check = _check_module(tag, outputs, produced, values, atol, rtol)
        if own is not None and check.status == "diverged":
            own.check(check, expected[tag], atol, rtol)
        checks.append(check)
    by_tag = {c.tag: c for c in checks}
    diverged = [t for t in finished if by_tag[t].status == "diverged"]
    return VerifyReport(modules=checks, first_divergence=diverged[0] if diverged else None)


def _check_module(
    tag: str, outputs: list[Output], produced: list[str], values: dict[str, np.ndarray], atol: float, rtol: float
) -> ModuleCheck:
    if not outputs:
        return ModuleCheck(tag, "no tensor output")
    tensors = [output.tensor for output in outputs if not output.passthrough and output.used]
    if not tensors:
        return ModuleCheck(tag, "passthrough" if all(o.passthrough for o in outputs) else "unused")
    if not produced:
        return ModuleCheck(tag, "no ops")
    worst_abs = worst_rel = 0.0
    matched_values: list[str] = []
    status = "matched"
    for tensor in tensors:
        candidates = [n for n in produced if n in values and values[n].shape == tensor.shape]
        if not candidates:
            status = "not produced" if status == "matched" else status
            continue
        scored = sorted((_compare(tensor, values[n]), n) for n in candidates)
        (max_abs, max_rel), name = scored[0]
        matched_values.append(name)
        worst_abs, worst_rel = max(worst_abs, max_abs), max(worst_rel, max_rel)
        if max_abs > atol + rtol * float(np.abs(tensor).max() if tensor.size else 0.0):
            status = "diverged"
    return ModuleCheck(tag, status, worst_abs, worst_rel, matched_values)


class _OwnErrors:
    """Each module's own ops of a transformed model, run on the inputs the source export gives
    them: the error they add, apart from the one their inputs bring."""

    def __init__(
        self,
        model: ir.Model,
        source: ModelSource,
        names: dict[str, str],
        values: dict[str, np.ndarray],
        feeds: Mapping[str, np.ndarray],
    ) -> None:
        self.model = model
        self.proto = ir.to_proto(model)
        self.values = values
        self.source = HierarchyRetriever(source)
        reference = self.source.model
        inputs = {v.name for v in reference.graph.inputs}
        self.reference = run_exposing_values(reference, {k: v for k, v in feeds.items() if k in inputs})
        self.reference.update({k: np.asarray(v) for k, v in feeds.items()})
        self.values = {**{k: np.asarray(v) for k, v in feeds.items()}, **values}
        self.names = names  # a value of the model -> the source value it stands for

    def counterparts(self, tag: str, outputs: list[Output]) -> tuple[list[str], list[Output]]:
        """The model's values standing for those that match the module's outputs in the source,
        and the outputs that have one (a tool may have fused one away: an Add inside a
        SkipLayerNormalization makes no value of its own)."""
        producers = {n.name: n for n in self.source.model.graph}
        made = [v.name for n in self.source.get_nodes_by_module(tag) if n in producers for v in producers[n].outputs]
        names = []
        kept = []
        for output in outputs:
            if output.passthrough or not output.used:
                kept.append(output)
                continue
            fits = [n for n in made if n in self.reference and self.reference[n].shape == output.tensor.shape]
            if not fits:
                kept.append(output)  # the source has none either: the check says so
                continue
            best = min(fits, key=lambda n: _compare(output.tensor, self.reference[n]))
            mine = [n for n in self.values if n == best or self.names.get(n) == best]
            if mine:
                names += mine
                kept.append(output)
        return names, kept

    def reference_of(self, name: str) -> np.ndarray | None:
        found = self.reference.get(name)
        return found if found is not None else self.reference.get(self.names.get(name, ""))

    def check(self, check: ModuleCheck, outputs: list[Output], atol: float, rtol: float) -> None:
        """Set ``check``'s own and inherited errors; ``"inherited"`` when its own ops match."""
        members = [k for k, node in enumerate(self.model.graph) if _within(node, check.tag)]
        found = self._run(members)
        if found is None:
            return
        results, inherited = found
        own = _check_module(check.tag, outputs, list(results), {**self.values, **results}, atol, rtol)
        check.own_abs_diff, check.inherited_abs_diff = own.max_abs_diff, inherited
        if own.status == "matched":
            check.status = "inherited"

    def _run(self, members: list[int]) -> tuple[dict[str, np.ndarray], float] | None:
        """The values the nodes ``members`` (main-graph positions) make from the reference
        inputs, and how far the model's own inputs to them were from those; None where an input
        has no reference."""
        nodes = list(self.model.graph)
        chosen = {nodes[k] for k in members}
        made = {v.name for n in chosen for v in n.outputs}
        constants = [n for n in nodes if n.op_type == "Constant"]
        read = {v.name for n in chosen for v in _reads(n)} - made - set(self.model.graph.initializers)
        read -= {v.name for n in constants for v in n.outputs}
        inputs = {}
        inherited = 0.0
        for name in sorted(read):
            reference, actual = self.reference_of(name), self.values.get(name)
            if reference is None or actual is None or reference.shape != actual.shape:
                return None
            inputs[name] = reference.astype(actual.dtype)
            if np.issubdtype(actual.dtype, np.floating):
                inherited = max(inherited, _compare(reference, actual)[0])
        outputs = [name for name in made if name in self.values]
        graph = onnx.helper.make_graph(
            [self.proto.graph.node[k] for k, n in enumerate(nodes) if n in chosen or n.op_type == "Constant"],
            "module",
            [_value_info(name, array) for name, array in inputs.items()],
            [_value_info(name, self.values[name]) for name in outputs],
            [i for i in self.proto.graph.initializer if i.name in {v.name for n in chosen for v in _reads(n)}],
        )
        module = onnx.helper.make_model(
            graph,
            opset_imports=list(self.proto.opset_import),
            functions=list(self.proto.functions),
            ir_version=self.proto.ir_version,
        )
        session = ort.InferenceSession(module.SerializeToString(), providers=list(_ort.CPU))
        return dict(zip(outputs, session.run(outputs, inputs), strict=True)), inherited


def _within(node: ir.Node, tag: str) -> bool:
    tags = get_tags(node)
    return bool(tags) and (tags[0] == tag or tags[0].startswith(tag + "/"))


def _reads(node: ir.Node) -> list[ir.Value]:
    """The values a node reads, those its control-flow subgraphs read from outside included."""
    found = [v for v in node.inputs if v is not None]
    for attribute in node.attributes.values():
        graphs = [attribute.value] if attribute.type == ir.AttributeType.GRAPH else []
        graphs += list(attribute.value) if attribute.type == ir.AttributeType.GRAPHS else []
        for graph in graphs:
            inner = {v for n in ir.traversal.RecursiveGraphIterator(graph) for v in n.outputs} | set(graph.inputs)
            found += [
                v
                for n in ir.traversal.RecursiveGraphIterator(graph)
                for v in n.inputs
                if v is not None and v not in inner and v.name not in graph.initializers
            ]
    return found


def _value_info(name: str, array: np.ndarray) -> onnx.ValueInfoProto:
    return onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(array.dtype), array.shape)
