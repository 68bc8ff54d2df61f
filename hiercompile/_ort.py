"""ONNX Runtime sessions, made the same way by every tool."""

from __future__ import annotations

__all__ = ["CPU", "session"]

from collections.abc import Sequence
from pathlib import Path

import onnx_ir as ir
import onnxruntime as ort

CPU = ("CPUExecutionProvider",)


def session(
    model: ir.Model | str | Path,
    options: ort.SessionOptions | None = None,
    providers: Sequence[str] = CPU,
) -> ort.InferenceSession:
    """A session for an in-memory model (serialized, so under 2 GB) or a model file (any size)."""
    source = str(model) if isinstance(model, str | Path) else ir.to_proto(model).SerializeToString()
    return ort.InferenceSession(source, options, providers=list(providers))
