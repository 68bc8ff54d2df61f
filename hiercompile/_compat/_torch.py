"""torch's private names."""

from __future__ import annotations

__all__ = ["rnn_while_loops", "size_oblivious", "tree_leaves"]

import contextlib
import logging
from collections.abc import Iterator

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
    from torch.utils import _pytree

    return _pytree.tree_leaves(tree)
