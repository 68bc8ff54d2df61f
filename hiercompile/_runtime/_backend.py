"""``torch.compile(model, backend="hiercompile")``: tag what dynamo captured, run it in ONNX Runtime.

Dynamo hands the backend an FX graph whose ops carry ``nn_module_stack`` paths such as
``L['self'].stack.blocks[0]``. The backend finds the module those paths start from
(the compiled frame's ``self``), tags the ops with the same FX pass as
:func:`hiercompile.export`, replays the graph under ``torch.export`` so the tags ride
along in ``node.meta["custom"]``, and lowers it like any export. A graph that cannot
be lowered runs eagerly, with one warning: the user's program never breaks.

Dynamic graphs (``dynamic=True``, or dynamo's own after a shape change) take sizes
besides tensors: they become dynamic axes of the ONNX model, computed from the
tensors' shapes. Python numbers passed as 0-d tensors are baked in and checked on
every call.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.fx.traceback as fx_traceback
from torch import fx, nn

from .._artifacts import INDEX_FILE
from .._compat.torch import compiled_module_type, current_dynamo_frame, no_tracing_context
from .._errors import CaptureError, FallbackWarning, InputError, first_line
from .._exporter import ExportResult, export_program
from .._io import json_writer, write_files
from ..passes import KeepPredicate, ModuleHierarchy
from ..passes.fx_tag import tag_graph_module
from ._ort import TENSOR
from ._registry import Compiled, runtime_named

_ROOT_VARIABLE = re.compile(r"^L\['([^']+)'\]")


def module_path(dynamo_path: str) -> str:
    """``L['self'].stack.blocks[0]`` -> ``stack.blocks.0`` (relative to the frame's module)."""
    path = _ROOT_VARIABLE.sub("", dynamo_path)
    path = re.sub(r"\[(\d+)\]", r".\1", path)
    path = re.sub(r"\[['\"]([^'\"]+)['\"]\]", r".\1", path)
    path = re.sub(r"\._modules\.", ".", path)
    return path.lstrip(".")


def _frame_module(gm: fx.GraphModule) -> nn.Module:
    """The module whose forward the graph was captured in.

    Its module stacks start at a frame variable (``L['self']``), looked up in the frame.
    A frame resumed after a graph break may hold no reference to its module; then the
    module is found on the live call stack: the frame that called the resumed one runs
    the forward whose line the resumed frame starts at.
    """
    tx = current_dynamo_frame()
    if tx is None:
        raise InputError("hiercompile's backend was called outside dynamo; pass it to torch.compile")
    names = [
        m.group(1)
        for node in gm.graph.nodes
        for path, _ in (node.meta.get("nn_module_stack") or {}).values()
        if (m := _ROOT_VARIABLE.match(path))
    ]
    for name in [*names, "self"]:
        if isinstance(tx.f_locals.get(name), nn.Module):
            return tx.f_locals[name]
    resumed = re.search(r"_at_(\d+)$", tx.f_code.co_name)
    if resumed:
        line = int(resumed.group(1))
        for module in _modules_on_stack():
            if _forward_holds(type(module), tx.f_code.co_filename, line):
                return module
    raise InputError("cannot tell which nn.Module this graph ran in; use torch.compile on a module")


def _modules_on_stack() -> list[nn.Module]:
    """The ``self`` of every frame on the call stack that runs a module's method, innermost first."""
    found, frame = [], sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, nn.Module) and all(candidate is not m for m in found):
            found.append(candidate)
        frame = frame.f_back
    return found


def _forward_holds(cls: type, filename: str, line: int) -> bool:
    code = getattr(getattr(cls, "forward", None), "__code__", None)
    if code is None or code.co_filename != filename:
        return False
    lines = [n for _, _, n in code.co_lines() if n is not None]
    return bool(lines) and code.co_firstlineno <= line <= max(lines)


def _root_and_prefix(module: nn.Module) -> tuple[nn.Module, str]:
    """The module ``torch.compile`` was given, and ``module``'s path in it.

    A graph break inside a submodule resumes in that submodule's forward; its tags
    still start at the compiled model, whose ``OptimizedModule`` is on the call stack.
    """
    for candidate in _modules_on_stack():
        if isinstance(candidate, compiled_module_type()):
            for path, sub in candidate._orig_mod.named_modules():
                if sub is module:
                    return candidate._orig_mod, path
    return module, ""


class _Replay(nn.Module):
    """Runs a dynamo graph node by node, so torch.export copies each node's tag to what it records.

    The graph's parameters and buffers become this module's buffers (ONNX initializers);
    the user's tensors stay inputs.
    """

    def __init__(
        self,
        gm: fx.GraphModule,
        constants: dict[int, tuple[str, torch.Tensor]],
        sizes: dict[int, tuple[int, int]],
        arity: int,
    ) -> None:
        super().__init__()
        self._graph_module = [gm]  # a list: not a submodule, so not part of any module path
        self._constants = {index: name for index, (name, _) in constants.items()}
        self._sizes = sizes  # a size argument's position -> (the tensor argument's position, its dim)
        self._arity = arity
        for name, tensor in constants.values():  # nested holders: the buffer's state-dict name is `name`
            *parents, leaf = name.split(".")
            holder: nn.Module = self
            for part in parents:
                if part not in holder._modules:
                    holder.add_module(part, nn.Module())
                holder = holder._modules[part]
            holder.register_buffer(leaf, tensor.detach())

    def forward(self, *inputs: torch.Tensor) -> Any:
        given = iter(inputs)
        args: list[Any] = [
            self.get_buffer(self._constants[i]) if i in self._constants else None if i in self._sizes else next(given)
            for i in range(self._arity)
        ]
        for i, (tensor, dim) in self._sizes.items():  # symbolic sizes come from the tensors' shapes
            args[i] = args[tensor].shape[dim]
        with fx_traceback.preserve_node_meta():
            return fx.Interpreter(self._graph_module[0]).run(*args)


def _output_template(gm: fx.GraphModule) -> list[Any]:
    """The graph's outputs: ``_TENSOR`` where a tensor comes back, the constant value elsewhere."""
    (output,) = [n for n in gm.graph.nodes if n.op == "output"]
    values = output.args[0] if isinstance(output.args[0], tuple | list) else (output.args[0],)
    return [TENSOR if isinstance(v, fx.Node) else v for v in values]


def _placeholders(gm: fx.GraphModule) -> list[fx.Node]:
    """The graph's arguments, in calling order."""
    return list(gm.graph.find_nodes(op="placeholder"))


def _symbolic_sizes(
    gm: fx.GraphModule, example_inputs: list[Any]
) -> tuple[dict[int, tuple[int, int]], dict[int, dict[int, Any]]]:
    """Where a dynamic graph's size arguments come from, and which tensor dims are dynamic.

    With ``dynamic=True``, or after a shape change made dynamo mark dims dynamic, the
    graph takes ``SymInt`` arguments besides tensors. Each must be a dim of a tensor
    argument (``(tensor position, dim)``), so the ONNX model needs only the tensors;
    the dims with a symbolic size become dynamic axes for torch.export.
    """
    values = [n.meta.get("example_value") for n in _placeholders(gm)]
    dims: dict[Any, tuple[int, int]] = {}
    dynamic: dict[int, dict[int, Any]] = {}
    for i, value in enumerate(values):
        if isinstance(value, torch.Tensor):
            for d, size in enumerate(value.shape):
                if isinstance(size, torch.SymInt):
                    dims.setdefault(size.node.expr, (i, d))
                    dynamic.setdefault(i, {})[d] = torch.export.Dim.AUTO  # lets the graph specialize a dim
    sizes = {}
    for i, argument in enumerate(example_inputs):
        if isinstance(argument, torch.SymInt) and argument.node.expr in dims:
            sizes[i] = dims[argument.node.expr]
        elif not isinstance(argument, torch.Tensor):
            raise InputError(
                f"graph argument {i} ({type(argument).__name__}) is neither a tensor nor the size of one; "
                "this graph runs eagerly"
            )
    outputs = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    for node in outputs if isinstance(outputs, tuple | list) else (outputs,):
        if isinstance(node, fx.Node) and not isinstance(node.meta.get("example_value"), torch.Tensor):
            raise InputError("the graph returns a size, not only tensors; this graph runs eagerly")
    return sizes, dynamic


def _scalar_positions(gm: fx.GraphModule) -> list[int]:
    """Arguments that are Python numbers dynamo passes as 0-d tensors (``dynamic=True`` does so
    for float attributes such as a norm's ``eps``); they are baked into the ONNX model."""
    return [i for i, n in enumerate(_placeholders(gm)) if getattr(n.meta.get("grapharg"), "pass_arg_as_tensor", False)]


def _bake_scalars(gm: fx.GraphModule, example_inputs: list[Any]) -> fx.GraphModule:
    """A copy of ``gm`` whose scalar arguments' ``.item()`` calls are their current values."""
    baked = fx.GraphModule(gm, copy.deepcopy(gm.graph))
    placeholders = _placeholders(baked)
    for i in _scalar_positions(gm):
        for user in list(placeholders[i].users):
            if user.op != "call_method" or user.target != "item":
                raise InputError(f"scalar argument {placeholders[i].name} is used as a tensor; this graph runs eagerly")
            user.replace_all_uses_with(example_inputs[i].item())
            baked.graph.erase_node(user)
    baked.recompile()
    return baked


class CompiledGraph:
    """What the backend gives dynamo for one graph: it runs the graph and holds its export.

    ``result`` is the graph's :class:`ExportResult`, or None when the graph runs eagerly.
    Dynamo keeps this object as long as the compiled code lives; nothing else does.
    """

    def __init__(self, result: ExportResult | None, run: Callable) -> None:
        self.result = result
        self._run = run

    def __call__(self, *args: Any) -> Any:
        return self._run(*args)


class Backend:
    """A ``torch.compile`` backend; see :func:`backend` for the options.

    All its state is its own: the graphs it compiled, held weakly, so a compiled model
    and its ONNX sessions are freed with the model (or by ``torch._dynamo.reset()``).
    """

    def __init__(
        self,
        output_dir: str | Path | None = None,
        runtime: str = "ort",
        keep: KeepPredicate | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        self._runtime = runtime_named(runtime)
        if isinstance(providers, str) or not all(isinstance(p, str) for p in providers or ()):
            raise InputError(f"providers must be a list of provider names, got {providers!r}")
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.runtime = runtime
        self.keep = keep
        self.providers = list(providers) if providers else None
        self._graphs: list[weakref.ref[CompiledGraph]] = []

    @property
    def results(self) -> list[ExportResult | None]:
        """The export of each graph still compiled, in order; None for a graph that runs eagerly."""
        return [graph.result for ref in self._graphs if (graph := ref()) is not None]

    def __call__(self, gm: fx.GraphModule, example_inputs: list[Any], **_: Any) -> CompiledGraph:
        index = self._next_index()
        placement = self._runtime.placement(example_inputs, self.providers)
        if isinstance(placement, str):
            return self._eager(gm, index, placement)
        try:
            result, user_positions = self._export(gm, example_inputs)
            entry = {"status": "onnx", "modules": len(result.hierarchy), "ops": result.graph.number_of_nodes()}
            if self.output_dir is not None:
                folder = self.output_dir / f"graph_{index}"
                result.save(folder)
                entry["directory"] = folder.name
            scalars = {i: example_inputs[i].clone() for i in _scalar_positions(gm)}
            compiled = Compiled(result.model, user_positions, _output_template(gm), scalars, gm.forward)
            run = self._runtime.load(compiled, placement)
        except Exception as e:  # whatever fails, the user's program runs on, eagerly
            return self._eager(gm, index, first_line(e))
        self._record(index, entry)
        return self._keep(CompiledGraph(result, run))

    def _eager(self, gm: fx.GraphModule, index: int, reason: str) -> CompiledGraph:
        """The graph runs eagerly (its own code, differentiable), with one warning that says why."""
        warnings.warn(f"hiercompile: a graph runs eagerly: {reason}", FallbackWarning, stacklevel=3)
        self._record(index, {"status": "eager fallback", "reason": reason})
        return self._keep(CompiledGraph(None, gm.forward))

    def _keep(self, graph: CompiledGraph) -> CompiledGraph:
        self._graphs.append(weakref.ref(graph))
        return graph

    def _index(self) -> list[dict]:
        path = self.output_dir / INDEX_FILE if self.output_dir is not None else None
        return json.loads(path.read_text(encoding="utf-8"))["graphs"] if path and path.is_file() else []

    def _next_index(self) -> int:
        """Graphs are numbered in the output folder's index (several compiles can share one folder)."""
        return max([len(self._graphs) - 1, *(g["index"] for g in self._index())], default=-1) + 1

    def _export(self, gm: fx.GraphModule, example_inputs: list[Any]) -> tuple[ExportResult, list[int]]:
        sizes, dynamic = _symbolic_sizes(gm, example_inputs)
        frame_module = _frame_module(gm)
        root, prefix = _root_and_prefix(frame_module)
        for node in gm.graph.nodes:  # ops run in the frame's own forward carry no stack
            if node.op in ("call_function", "call_method", "call_module") and not node.meta.get("nn_module_stack"):
                node.meta["nn_module_stack"] = {"frame": ("L['self']", type(frame_module))}

        def normalize(path: str) -> str:
            return ".".join(p for p in (prefix, module_path(path)) if p)

        hierarchy = ModuleHierarchy(root, self.keep)
        tag_graph_module(gm, hierarchy, normalize_path=normalize)
        owned = {id(t): name for name, t in [*root.named_parameters(), *root.named_buffers()]}
        constants = {i: (owned[id(t)], t) for i, t in enumerate(example_inputs) if id(t) in owned}
        constants |= {i: (f"_scalar_{i}", example_inputs[i]) for i in _scalar_positions(gm)}
        user_positions = [i for i in range(len(example_inputs)) if i not in constants and i not in sizes]
        replay = _Replay(_bake_scalars(gm, example_inputs), constants, sizes, len(example_inputs))
        shapes = (tuple(dynamic.get(i) for i in user_positions),) if dynamic else None  # forward(*inputs)
        # export in a tracing context of its own: inside dynamo's, its symbolic sizes would become
        # guards on the user's frame that name the replay's arguments
        with no_tracing_context():
            try:
                program = torch.export.export(
                    replay, tuple(example_inputs[i] for i in user_positions), dynamic_shapes=shapes, strict=False
                )
            except Exception as e:
                raise CaptureError(f"capture step (replaying the dynamo graph) failed: {e}") from e
            if dynamic:
                # without example inputs torch adds no shape-guard module when it decomposes the program;
                # that module's code names the replay's *inputs as L['inputs'][0] and fails. Guards check
                # PyTorch-side calls, which an ONNX model never makes.
                program.example_inputs = None
            return export_program(program, hierarchy, normalize_path=normalize), user_positions

    def _record(self, index: int, entry: dict) -> None:
        if self.output_dir is None:
            return
        graphs = [g for g in self._index() if g["index"] != index] + [{"index": index, **entry}]
        write_files(self.output_dir, {INDEX_FILE: json_writer({"graphs": graphs})})


def backend(**options: Any) -> Backend:
    """A backend for ``torch.compile(model, backend=hiercompile.backend(...))``.

    Options: ``output_dir`` (each captured graph's tagged model and side files in
    ``graph_N/``, plus ``index.json``), ``runtime`` (``"ort"``, the default, runs the
    ONNX model in ONNX Runtime; ``"eager"`` only writes the artifacts; another package adds
    one under the ``hiercompile.runtimes`` entry point, see ``_runtime/_registry.py``), ``keep``, and
    ``providers`` (ONNX Runtime's execution providers; default: the CPU's for tensors on
    the CPU, CUDA's for tensors on a GPU, see :func:`where_to_run`).
    """
    return Backend(**options)


def hiercompile_backend(gm: fx.GraphModule, example_inputs: list[Any], options: dict | None = None) -> Callable:
    """The entry point behind ``backend="hiercompile"``; ``options`` as for :func:`backend`.

    Each graph gets a backend of its own: graphs of one model are numbered through
    the output folder's ``index.json``, and nothing outlives the compiled code.
    """
    return Backend(**(options or {}))(gm, example_inputs)
