"""Errors of hiercompile: one class per stage, each message says what failed and what to do."""

from __future__ import annotations


class HiercompileError(Exception):
    """Base class of every error hiercompile raises on purpose."""


class ModelLoadError(HiercompileError):
    """The model could not be found or loaded (preset, local directory, hub id)."""


class InputError(HiercompileError):
    """The model or its example inputs are not usable."""


class CaptureError(HiercompileError):
    """torch.export could not capture the model."""


class TagError(HiercompileError):
    """An op could not be given a tag from its module stack."""


class LowerError(HiercompileError):
    """The dynamo ONNX exporter could not translate the captured graph."""


class CarryError(HiercompileError):
    """Tags could not be carried into the ONNX model, or the ONNX passes failed."""


class SaveError(HiercompileError):
    """The artifacts could not be written."""


class NotTaggedError(HiercompileError):
    """An ONNX file does not carry hiercompile's metadata."""


class QueryError(HiercompileError):
    """A question about a tagged model names something the model does not have."""


class VerifyError(HiercompileError):
    """Per-module verification could not run."""


class ProfileError(HiercompileError):
    """ONNX Runtime could not run or profile the model."""
