"""torch's private names, each with the versions it was checked on and what happens without it."""

from __future__ import annotations

__all__ = [
    "DynamoUserError",
    "HigherOrderOperator",
    "OpOverload",
    "OperatorBase",
    "always_decomposed",
    "compiled_module_type",
    "current_dynamo_frame",
    "custom_op_implementation",
    "detect_fake_mode",
    "fake_tensor_mode",
    "no_fake_tensor_cache",
    "no_stack_traces",
    "no_tracing_context",
    "python_dispatcher",
    "pytree",
    "rnn_while_loops",
    "size_oblivious",
    "tree_leaves",
]

import contextlib
import importlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch

from . import required

# torch's pytree module (torch 2.11 to 2.15; torch has no public one), or a CompatError
pytree = importlib.import_module(
    required("torch.utils._pytree", "__name__", "flattening inputs and caches as torch.export does")
)

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def rnn_while_loops() -> Iterator[None]:
    """Capture ``nn.LSTM`` and ``nn.GRU`` as a while loop over the sequence, so that a dynamic
    sequence length stays dynamic, as ``torch.onnx.export`` does under dynamic shapes.

    Private: ``torch.export._patches.register_{lstm,gru}_while_loop_decomposition``, checked on
    torch 2.13, 2.14 and 2.15. Without them an RNN's length follows the example input.
    """
    try:
        from torch.export._patches import (
            register_gru_while_loop_decomposition,
            register_lstm_while_loop_decomposition,
        )
    except ImportError:
        logger.debug("torch.export._patches is missing: LSTM/GRU lengths follow the example input")
        yield
        return
    with register_lstm_while_loop_decomposition(), register_gru_while_loop_decomposition():
        yield


def size_oblivious() -> contextlib.AbstractContextManager:
    """Let a dynamic dim whose example size is 0 or 1 stay dynamic, as ``torch.onnx.export``'s
    non-strict capture does (batch 1 in the example, a dynamic batch asked for).

    Private: ``torch.fx.experimental._config.backed_size_oblivious``, checked on torch 2.13,
    2.14 and 2.15. Without it torch specializes such a dim and the capture reports the conflict.
    """
    try:
        from torch.fx.experimental import _config
    except ImportError:
        _config = None
    if _config is None or not hasattr(_config, "backed_size_oblivious"):
        logger.debug("torch.fx.experimental._config.backed_size_oblivious is missing: 0/1 sizes specialize")
        return contextlib.nullcontext()
    return _config.patch(backed_size_oblivious=True)


def tree_leaves(tree: object) -> list:
    """The leaves of ``tree`` as torch flattens example inputs and outputs (a registered cache
    into its tensors): the order of an exported model's inputs.

    Private: ``torch.utils._pytree.tree_leaves``, checked on torch 2.11 to 2.15. torch has no
    public pytree module; it is what ``torch.export`` itself flattens with.
    """
    return pytree.tree_leaves(tree)


# The types of torch's operators (``torch._ops``, torch 2.11 to 2.15); without that module,
# the types of public objects that are such operators.
try:
    from torch._ops import HigherOrderOperator, OperatorBase, OpOverload
except ImportError:  # pragma: no cover - another torch
    OpOverload = type(torch.ops.aten.add.default)
    HigherOrderOperator = type(torch.ops.higher_order.cond)
    OperatorBase = next(c for c in OpOverload.__mro__ if c in HigherOrderOperator.__mro__ and c is not object)


def detect_fake_mode(values: list) -> Any:
    """The fake-tensor mode the values were made in (``torch._guards.detect_fake_mode``, torch
    2.11 to 2.15); without it, the mode a fake tensor among them carries."""
    try:
        from torch._guards import detect_fake_mode as detect
    except ImportError:  # pragma: no cover - another torch
        return next((v.fake_mode for v in values if hasattr(v, "fake_mode")), None)
    return detect(values)


def python_dispatcher() -> contextlib.AbstractContextManager | None:
    """torch's Python dispatcher, which tracing an op with symbolic sizes needs
    (``torch._dispatch.python.enable_python_dispatcher``, torch 2.11 to 2.15); None without it
    (the program is then decomposed by torch's public ``run_decompositions``)."""
    try:
        from torch._dispatch.python import enable_python_dispatcher
    except ImportError:  # pragma: no cover - another torch
        return None
    return enable_python_dispatcher()


def always_decomposed(op: OpOverload) -> bool | None:
    """Whether torch decomposes ``op`` whatever the table says: a composite op that may alias
    or mutate its inputs (``torch._export.utils._is_cia_op`` and ``_check_valid_to_preserve``,
    torch 2.11 to 2.15); None without them (the program is then decomposed whole)."""
    try:
        from torch._export.utils import _check_valid_to_preserve, _is_cia_op
    except ImportError:  # pragma: no cover - another torch
        return None
    return _is_cia_op(op) and not _check_valid_to_preserve(op)


def no_fake_tensor_cache() -> contextlib.AbstractContextManager:
    """Fake tensors cache no op while capturing (``torch._dynamo.config``, torch 2.11 to 2.15):
    with symbolic sizes each new entry costs more than the hits save. Without it, a no-op."""
    config = getattr(getattr(torch, "_dynamo", None), "config", None)
    if config is None or not hasattr(config, "fake_tensor_cache_enabled"):
        logger.debug("torch._dynamo.config.fake_tensor_cache_enabled is missing: fake tensors cache ops")
        return contextlib.nullcontext()
    return config.patch(fake_tensor_cache_enabled=False)


@contextlib.contextmanager
def no_stack_traces() -> Iterator[None]:
    """The tracer takes no Python stack at each op (``torch.fx.config.do_not_emit_stack_traces``,
    a setting torch reads while tracing, torch 2.11 to 2.15; set for the capture and restored).
    Without that setting, a no-op."""
    config = torch.fx.config
    if not hasattr(config, "do_not_emit_stack_traces"):
        yield
        return
    before = config.do_not_emit_stack_traces
    config.do_not_emit_stack_traces = True
    try:
        yield
    finally:
        config.do_not_emit_stack_traces = before


class _NeverRaised(Exception):
    """Stands for an exception class another torch does not have."""


try:
    from torch._dynamo.exc import UserError as DynamoUserError  # torch 2.11 to 2.15
except ImportError:  # pragma: no cover - another torch
    DynamoUserError = _NeverRaised


def current_dynamo_frame() -> Any:
    """The frame dynamo is translating, in a ``torch.compile`` backend
    (``torch._dynamo.symbolic_convert.InstructionTranslator.current_tx``, torch 2.11 to 2.15)."""
    translator = required("torch._dynamo.symbolic_convert", "InstructionTranslator", "the torch.compile backend")
    return translator.current_tx()


def compiled_module_type() -> type:
    """The type ``torch.compile`` wraps a module in (``torch._dynamo.eval_frame.OptimizedModule``);
    without that name, the type of a module ``torch.compile`` returns."""
    try:
        from torch._dynamo.eval_frame import OptimizedModule
    except ImportError:  # pragma: no cover - another torch
        return type(torch.compile(torch.nn.Identity()))
    return OptimizedModule


def no_tracing_context() -> contextlib.AbstractContextManager:
    """A tracing context of its own (``torch._guards.tracing(None)``, torch 2.11 to 2.15), so an
    export inside a compile backend adds no guards to the user's frame."""
    return required("torch._guards", "tracing", "the torch.compile backend")(None)


def fake_tensor_mode(**options: Any) -> contextlib.AbstractContextManager:
    """torch's fake-tensor mode (``torch._subclasses.fake_tensor.FakeTensorMode``, torch 2.11 to 2.15)."""
    mode = required("torch._subclasses.fake_tensor", "FakeTensorMode", "exporting a model on the meta device")
    return mode(**options)


def custom_op_implementation(op: OpOverload) -> Callable | None:
    """The Python implementation of a ``torch.library.custom_op`` op (``torch._library.custom_ops.OPDEFS``,
    torch 2.11 to 2.15); None for another op, or without that table."""
    try:
        from torch._library.custom_ops import OPDEFS
    except ImportError:  # pragma: no cover - another torch
        return None
    definition = OPDEFS.get(op.name())
    return None if definition is None else definition._init_fn
