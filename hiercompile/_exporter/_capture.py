"""Stage 1: capture the model with torch.export, after checking the inputs fit it."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import logging
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.fx.traceback as fx_traceback
from torch import nn

from .._compat.torch import (
    DynamoUserError,
    no_fake_tensor_cache,
    no_stack_traces,
    rnn_while_loops,
    size_oblivious,
    tree_leaves,
)
from .._compat.transformers import register_caches
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
    """A captured program and which of torch's capture strategies produced it."""

    program: torch.export.ExportedProgram
    strategy: str


def _export(strict: bool) -> Callable:
    def run(model: nn.Module, args: tuple, kwargs: dict, dynamic_shapes: Any) -> torch.export.ExportedProgram:
        return torch.export.export(model, args, kwargs, dynamic_shapes=dynamic_shapes, strict=strict)

    return run


def _size_oblivious(model: nn.Module, args: tuple, kwargs: dict, dynamic_shapes: Any) -> torch.export.ExportedProgram:
    """Non-strict export where a dynamic dim whose example is 0 or 1 stays dynamic, as
    torch.onnx.export captures (batch 1 in the example, a dynamic batch asked for)."""
    sizes = [d for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) for d in t.shape]
    if dynamic_shapes is None or min(sizes, default=2) > 1:
        raise CaptureError("no dynamic dim has an example of size 0 or 1")  # nothing for this strategy to do
    with size_oblivious():
        return torch.export.export(model, args, kwargs, dynamic_shapes=dynamic_shapes, strict=False)


def _draft(model: nn.Module, args: tuple, kwargs: dict, dynamic_shapes: Any) -> torch.export.ExportedProgram:
    return torch.export.draft_export(model, args, kwargs, dynamic_shapes=dynamic_shapes)


SIZE_OBLIVIOUS = "non-strict, size-oblivious"
# tried in order, as torch.onnx.export does: non-strict traces the real Python code (every
# module call is on the ops' nn_module_stack); strict traces with dynamo; draft export
# specializes what the others cannot decide (a branch on a tensor's value) to the example
STRATEGIES: tuple[tuple[str, Callable], ...] = (
    ("non-strict", _export(strict=False)),
    (SIZE_OBLIVIOUS, _size_oblivious),
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
       where torch has that setting: the stacks are for reading, not for running.
    3. With dynamic shapes, fake tensors cache no op: each new entry is checked by
       building its output again from symbolic sizes, which costs more than the hits save.
    4. With dynamic shapes, ``nn.LSTM`` and ``nn.GRU`` run as a loop over the sequence, as
       under ``torch.onnx.export``, so their length stays dynamic.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(fx_traceback.preserve_node_meta())
        if not stack_traces:
            stack.enter_context(no_stack_traces())
        if dynamic:
            stack.enter_context(no_fake_tensor_cache())
            stack.enter_context(rnn_while_loops())
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
    except DynamoUserError as e:
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
    *,
    stack_traces: bool = True,
) -> Captured:
    """Capture ``model`` on the example inputs with ``torch.export``.

    Rules:

    1. The strategies of :data:`STRATEGIES` are tried in order; the first program is kept
       and the result says which strategy made it. The size-oblivious one applies only with
       dynamic shapes and an example size of 0 or 1.
    2. When torch rejects the dynamic shapes and suggests fixes, the same strategy runs
       again with the fixes applied.
    3. A program from draft export is unsound where torch had to specialize: a warning
       says where (a branch follows the example inputs).
    4. When every strategy fails, the error names the first (non-strict) failure, the
       user's line it happened at, torch's suggestions and what to do.
    5. An example input the program never reads (a misspelled keyword that ``**kwargs``
       swallowed) is a warning that names it.
    6. A transformers model's cache classes are pytrees torch.export takes and returns.
    7. Without ``stack_traces``, no op of the program keeps the source lines it ran at
       (the exporter's ``pkg.torch.onnx.stack_trace``), and where torch can, they are not
       recorded at all (:func:`_tracing`).
    """
    check_inputs(model, args, kwargs)
    register_caches(model)  # a transformers model may take or return its cache
    failures: list[BaseException] = []
    for name, run in STRATEGIES:
        try:
            with _quiet_torch(), _tracing(stack_traces, dynamic_shapes is not None):
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
