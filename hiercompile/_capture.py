"""Stage 1: capture the model with torch.export, after checking the inputs fit it."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from ._errors import CaptureError, InputError


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


def capture(
    model: nn.Module, args: tuple, kwargs: dict[str, Any], dynamic_shapes: Any = None
) -> torch.export.ExportedProgram:
    """Capture ``model`` on the example inputs with ``torch.export.export(strict=False)``.

    Non-strict mode traces the real Python code, so any module the model calls is
    recorded in the ops' ``nn_module_stack``.
    """
    check_inputs(model, args, kwargs)
    try:
        return torch.export.export(model, args, kwargs, dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CaptureError(
            f"capture step (torch.export) failed for {type(model).__name__}: {first_line}; "
            "check that the model runs eagerly on the same inputs (see the chained error for details)"
        ) from e
