"""torch's private names."""

from __future__ import annotations

__all__ = ["rnn_while_loops"]

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
