"""Errors and warnings of hiercompile: one error class per step, each message says what failed and what to do.

Public as :mod:`hiercompile.errors` (and from the top of the package); :func:`first_line` is
the package's own helper.

This module imports nothing heavy, so the command line can report a bad argument
without loading torch.
"""

from __future__ import annotations

__all__ = [
    "AttributesWarning",
    "BrokenModelWarning",
    "CaptureError",
    "CaptureWarning",
    "CarryError",
    "CompatError",
    "FallbackWarning",
    "FunctionsError",
    "HiercompileError",
    "InputError",
    "LowerError",
    "ModelLoadError",
    "NotTaggedError",
    "OptionWarning",
    "ProfileError",
    "QueryError",
    "RetagError",
    "SaveError",
    "StaleResultWarning",
    "TagError",
    "UnusedInputWarning",
    "ValidationError",
    "VerifyError",
]


class HiercompileError(Exception):
    """Base class of every error hiercompile raises on purpose."""


class ModelLoadError(HiercompileError):
    """The model could not be found or loaded (preset, local directory, hub id)."""


class InputError(HiercompileError):
    """An argument, the model or its example inputs are not usable."""


class CaptureError(HiercompileError):
    """torch.export could not capture the model."""


class TagError(HiercompileError):
    """An op could not be given a tag from its module stack."""


class LowerError(HiercompileError):
    """The dynamo ONNX exporter could not translate the captured graph."""


class CarryError(HiercompileError):
    """Tags could not be carried into the ONNX model, or the ONNX passes failed."""


class CompatError(HiercompileError):
    """A private part of torch, onnxscript, onnx-ir or transformers that hiercompile uses failed on
    the installed version; the message names the library, its version and what to do."""


class FunctionsError(HiercompileError):
    """A tagged model could not be rewritten into module functions."""


class SaveError(HiercompileError):
    """The artifacts could not be written."""


class NotTaggedError(HiercompileError):
    """An ONNX file does not carry hiercompile's metadata."""


class QueryError(HiercompileError):
    """A question about a tagged model names something the model does not have."""


class RetagError(HiercompileError):
    """A transformed model does not come from the tagged model it was given with."""


class VerifyError(HiercompileError):
    """Per-module verification could not run."""


class ValidationError(HiercompileError):
    """An exported model's outputs differ from PyTorch's beyond the tolerance (``--validate``)."""


class ProfileError(HiercompileError):
    """ONNX Runtime could not run or profile the model."""


class AttributesWarning(UserWarning):
    """The attribute form of the tags makes a model that ONNX tools reject."""


class BrokenModelWarning(UserWarning):
    """A model given to a tool is not a valid ONNX model (it calls a function it does not define)."""


class FallbackWarning(UserWarning):
    """The torch.compile backend runs a graph eagerly instead of in ONNX Runtime."""


class CaptureWarning(UserWarning):
    """The model was captured, but only by specializing something to the example inputs."""


class UnusedInputWarning(UserWarning):
    """An example input the captured graph never reads (a misspelled keyword, say)."""


class OptionWarning(UserWarning):
    """An option that cannot apply to this model or task, and does nothing."""


class StaleResultWarning(UserWarning):
    """A result file in an export folder belongs to another model than the folder's."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message, or its class name; a line that
    ends in a colon announces the next, which is joined to it (the cause, not just its heading)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
    head = lines[0]
    if head.endswith(":") and len(lines) > 1:
        head = f"{head} {lines[1].lstrip('- ')}"
    return head
