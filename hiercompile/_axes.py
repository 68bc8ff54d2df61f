"""The names of a generative export's dynamic axes, as optimum names them.

The Hugging Face package writes them into the files it exports and the tools read them back
(``profile`` sizes its default inputs by them): a mask spans the cache and the new tokens,
``TOTAL = PAST + SEQUENCE``.
"""

from __future__ import annotations

__all__ = ["BATCH", "ENCODER_SEQUENCE", "PAST", "SEQUENCE", "TOTAL"]

BATCH, SEQUENCE, PAST = "batch_size", "sequence_length", "past_sequence_length"
ENCODER_SEQUENCE, TOTAL = "encoder_sequence_length", "total_sequence_length"
