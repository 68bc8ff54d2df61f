"""Stage 1: capture the model with torch.export, after checking the inputs fit it."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import io
import logging
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.fx.traceback as fx_traceback
from torch import nn

from .._errors import CaptureError, CaptureWarning, InputError, UnusedInputWarning, first_line
from .._logs import quiet_loggers

logger = logging.getLogger(__name__)


def check_inputs(model: object, args: tuple, kwargs: dict[str, Any]) -> None:
    """Raise :class:`InputError` unless ``model`` is an ``nn.Module`` whose forward takes ``args, kwargs``."""
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}; pass the model object itself")
    if not isinstance(args, tuple):
        raise InputError(
            f"args must be a tuple of example inputs, got {type(args).__name__}; wrap a single tensor as (x,)"
        )
    try:
        inspect.signature(model.forward).bind(*args, **kwargs)
    except TypeError as e:
        name = type(model).__name__
        raise InputError(
            f"the example inputs do not fit {name}.forward: {e}; pass args/kwargs that forward accepts"
        ) from e


@contextlib.contextmanager
def capture_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Run the block with ``model`` in training or eval mode, then restore each module's own mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


@dataclasses.dataclass
class Captured:
    """A captured program, which of torch's capture strategies produced it, and whether
    the lowering's decompositions already ran on it."""

    program: torch.export.ExportedProgram
    strategy: str
    decomposed: bool = False


def _export(strict: bool) -> Callable:
    def run(model: nn.Module, args: tuple, kwargs: dict, dynamic_shapes: Any) -> torch.export.ExportedProgram:
        return torch.export.export(model, args, kwargs, dynamic_shapes=dynamic_shapes, strict=strict)

    return run


def _decomposing(decompositions: dict) -> Callable:
    """Non-strict export straight to ATen ops, running ``decompositions`` as it traces:
    the program that ``torch.export.export`` and then ``run_decompositions(decompositions)``
    give, in one trace instead of two (torch.export's own split of the table: composite
    ops through the dispatcher, the others through the tracer)."""

    def run(model: nn.Module, args: tuple, kwargs: dict, dynamic_shapes: Any) -> torch.export.ExportedProgram:
        from torch.export import _trace
        from torch.export.exported_program import (
            _override_composite_implicit_decomp,
            _split_decomp_table_to_cia_and_python_decomp,
        )

        composite, table = _split_decomp_table_to_cia_and_python_decomp(dict(decompositions))
        to_aten = functools.partial(_trace._export_to_aten_ir, decomp_table=table)
        with _override_composite_implicit_decomp(composite), mock.patch.object(_trace, "_export_to_aten_ir", to_aten):
            return _trace._export(model, args, kwargs, dynamic_shapes, strict=False, pre_dispatch=False)

    return run


def _draft(model: nn.Module, args: tuple, kwargs: dict, dynamic_shapes: Any) -> torch.export.ExportedProgram:
    return torch.export.draft_export(model, args, kwargs, dynamic_shapes=dynamic_shapes)


# tried in order, as torch.onnx.export does: non-strict traces the real Python code (every
# module call is on the ops' nn_module_stack); strict traces with dynamo; draft export
# specializes what the others cannot decide (a branch on a tensor's value) to the example
STRATEGIES: tuple[tuple[str, Callable], ...] = (
    ("non-strict", _export(strict=False)),
    ("strict", _export(strict=True)),
    ("draft", _draft),
)
# torch's loggers that print graphs and guard failures while a strategy is tried
_TORCH_LOGGERS = (
    "torch._dynamo",
    "torch._export",
    "torch.export",
    "torch.fx.experimental.symbolic_shapes",
    "torch._functorch",
    "torch._subclasses",
)


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    """Keep torch's logs and the graphs it prints on a failed attempt out of the terminal."""
    with (
        quiet_loggers(*_TORCH_LOGGERS),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        yield


@contextlib.contextmanager
def _tracing(stack_traces: bool, dynamic: bool) -> Iterator[None]:
    """torch's tracer settings for one capture.

    1. The ops of a ``torch.cond`` branch or a scan body keep their module stacks
       (``preserve_node_meta``).
    2. Without ``stack_traces``, the tracer does not take the Python stack at every op,
       where torch has that setting (an eighth to a quarter of a capture).
    3. With dynamic shapes, fake tensors cache no op: each new entry is checked by
       building its output again from symbolic sizes, which costs more than the hits save
       (a decoder with its cache: 0.7 s of a 3.5 s capture).
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(fx_traceback.preserve_node_meta())
        if not stack_traces and hasattr(torch.fx.config, "do_not_emit_stack_traces"):
            stack.enter_context(mock.patch.object(torch.fx.config, "do_not_emit_stack_traces", True))
        if dynamic:
            stack.enter_context(torch._dynamo.config.patch(fake_tensor_cache_enabled=False))
        yield


def _traced(program: torch.export.ExportedProgram, stack_traces: bool) -> torch.export.ExportedProgram:
    """``program``, without the source lines of its ops (subgraphs included) unless ``stack_traces``."""
    if not stack_traces:
        for module in program.graph_module.modules():
            if isinstance(module, torch.fx.GraphModule):
                for node in module.graph.nodes:
                    node.meta.pop("stack_trace", None)
    return program


def _with_refined_shapes(run: Callable, model: nn.Module, args: tuple, kwargs: dict, dynamic_shapes: Any):
    """Run a strategy; when torch rejects the dynamic shapes and suggests fixes (``Dim("seq")``
    without the model's maximum of 512), run it again with them, as torch.onnx.export does."""
    try:
        return run(model, args, kwargs, dynamic_shapes)
    except torch._dynamo.exc.UserError as e:
        if dynamic_shapes is None:
            raise
        try:
            refined = torch.export.dynamic_shapes.refine_dynamic_shapes_from_suggested_fixes(e.msg, dynamic_shapes)
        except Exception:
            raise e from None
        return run(model, args, kwargs, refined)


def _user_code(error: BaseException) -> str:
    """Where in the user's code torch stopped (``file:line: code``), from torch's own message."""
    text = str(error)
    found = re.search(r'File "([^"]+)", line (\d+), in \w+\n\s+(\S.*)', text)
    return f"{Path(found.group(1)).name}:{found.group(2)}: `{found.group(3).strip()}`" if found else ""


def _guidance(error: BaseException) -> str:
    """What to do, from the kind of failure and torch's own suggestions."""
    text = str(error)
    parts = []
    fixes = re.search(r"Suggested fixes:\s*\n((?:\s+.+\n?)+)", text)
    if fixes:
        parts.append(
            "torch suggests: " + "; ".join(line.strip() for line in fixes.group(1).splitlines() if line.strip())
        )
    if isinstance(error, torch.fx.experimental.symbolic_shapes.GuardOnDataDependentSymNode) or (
        "data-dependent" in text.lower()
    ):
        parts.append(
            "the model branches on a tensor's value: write that branch with torch.cond (both branches are "
            "exported), or make it depend on shapes or Python values"
        )
    return "; ".join(parts) or "check that the model runs eagerly on the same inputs (see the chained error)"


def capture(
    model: nn.Module,
    args: tuple,
    kwargs: dict[str, Any],
    dynamic_shapes: Any = None,
    decompositions: dict | None = None,
    *,
    stack_traces: bool = True,
) -> Captured:
    """Capture ``model`` on the example inputs with ``torch.export``.

    Rules:

    1. The strategies of :data:`STRATEGIES` are tried in order; the first program is kept
       and the result says which strategy made it. Given the lowering's ``decompositions``,
       a non-strict capture that runs them as it traces comes first (one trace where
       capture and lowering take two); when it fails, the strategies follow as without.
    2. When torch rejects the dynamic shapes and suggests fixes, the same strategy runs
       again with the fixes applied.
    3. A program from draft export is unsound where torch had to specialize: a warning
       says where (a branch follows the example inputs).
    4. When every strategy fails, the error names the first (non-strict) failure, the
       user's line it happened at, torch's suggestions and what to do.
    5. An example input the program never reads (a misspelled keyword that ``**kwargs``
       swallowed) is a warning that names it.
    6. Without ``stack_traces``, no op of the program keeps the source lines it ran at
       (the exporter's ``pkg.torch.onnx.stack_trace``), and where torch can, they are not
       recorded at all (:func:`_tracing`).
    """
    check_inputs(model, args, kwargs)
    tracing = functools.partial(_tracing, stack_traces, dynamic_shapes is not None)
    if decompositions is not None:
        try:
            with _quiet_torch(), tracing():
                program = _with_refined_shapes(_decomposing(decompositions), model, args, kwargs, dynamic_shapes)
        except Exception as e:
            logger.info("capture: decomposing while tracing failed (%s); capturing first, decomposing after", e)
        else:
            _tie_shared_weights(program, model)
            _warn_unused_inputs(program)
            return Captured(_traced(program, stack_traces), "non-strict", decomposed=True)
    failures: list[BaseException] = []
    for name, run in STRATEGIES:
        try:
            with _quiet_torch(), tracing():
                program = _with_refined_shapes(run, model, args, kwargs, dynamic_shapes)
        except Exception as e:
            failures.append(e)
            continue
        if name == "draft":
            warnings.warn(
                f"{type(model).__name__} was captured by torch.export.draft_export after non-strict and strict "
                f"export failed ({first_line(failures[0])} at {_user_code(failures[0]) or 'an unknown line'}); "
                "that decision follows the example inputs in the ONNX model; write the branch with torch.cond",
                CaptureWarning,
                stacklevel=3,
            )
        _warn_unused_inputs(program)
        return Captured(_traced(program, stack_traces), name)
    first = failures[0]
    where = _user_code(first)
    raise CaptureError(
        f"capture step (torch.export; non-strict, strict and draft export) failed for {type(model).__name__}: "
        f"{first_line(first)}{f' at {where}' if where else ''}; {_guidance(first)}"
    ) from first


def _tie_shared_weights(program: torch.export.ExportedProgram, model: nn.Module) -> None:
    """One weight under several names (tied embeddings) is read through one input of the
    program, as ``torch.export.export`` has it: the trace that decomposes gives each name
    an input of its own, which would store the weight once per name. The others stay,
    unread, as they do in torch.export's own program."""
    owners: dict[int, list[torch.fx.Node]] = {}
    tensors = {
        **dict(model.named_parameters(remove_duplicate=False)),
        **dict(model.named_buffers(remove_duplicate=False)),
    }
    placeholders = {node.name: node for node in program.graph.find_nodes(op="placeholder")}
    for spec in program.graph_signature.input_specs:
        if spec.target in tensors and spec.arg.name in placeholders:
            owners.setdefault(id(tensors[spec.target]), []).append(placeholders[spec.arg.name])
    for *others, kept in (nodes for nodes in owners.values() if len(nodes) > 1):
        for node in others:
            node.replace_all_uses_with(kept)
            logger.info("capture: %s reads the weight of %s, the same tensor", kept.name, node.name)
    program.graph_module.recompile()


def _warn_unused_inputs(program: torch.export.ExportedProgram) -> None:
    user_inputs = [
        spec.arg.name
        for spec in program.graph_signature.input_specs
        if spec.kind == torch.export.graph_signature.InputKind.USER_INPUT and hasattr(spec.arg, "name")
    ]
    placeholders = {node.name: node for node in program.graph.find_nodes(op="placeholder")}
    unused = [
        name
        for name in user_inputs
        if name in placeholders
        and not placeholders[name].users
        and isinstance(placeholders[name].meta.get("val"), torch.Tensor)  # Python values are constants
    ]
    if unused:
        warnings.warn(
            f"the model never reads the example input(s) {', '.join(unused)}: a misspelled keyword? "
            "The ONNX model takes them and ignores them",
            UnusedInputWarning,
            stacklevel=3,
        )
