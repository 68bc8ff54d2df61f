"""``torch.onnx.export``'s arguments, read the way torch reads them.

:func:`hiercompile.export` takes ``torch.onnx.export``'s arguments with the same
meaning. This module checks them before any work and turns them into what the
stages take. Three helpers of torch's exporter do the conversions torch itself does
(``dynamic_axes`` into ``dynamic_shapes``, axis names given as strings into ``Dim``s,
and the names onto the ONNX inputs' dims); they are private to torch, so they are
used here only.
"""

from __future__ import annotations

import types

__all__ = ["Arguments", "name_axes", "output_names_of", "read_arguments"]

import dataclasses
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import onnx_ir as ir
import torch
from torch import nn

from .._compat.torch import pytree
from .._compat.torch_onnx import dims_from_axes, export_dims, rename_axes
from .._errors import CaptureWarning, InputError

# torch.onnx.export's arguments that only its TorchScript exporter or its own debugging
# tools read: accepted at their defaults, an error otherwise (what to use instead)
_UNSUPPORTED = types.MappingProxyType(
    {
        "report": (False, "it writes torch's export report; hiercompile's errors name the failing step"),
        "verify": (False, "use hiercompile.verify(model, args, kwargs, onnx_model) to compare every module"),
        "profile": (False, "use hiercompile.profile(path) to time every module in ONNX Runtime"),
        "dump_exported_program": (False, "use torch.export.export and torch.export.save"),
        "artifacts_dir": (".", "it is where torch's report goes"),
        "export_params": (True, "the weights are always part of the model"),
        "do_constant_folding": (True, "constants are always folded (onnxscript's optimizer)"),
        "custom_opsets": (None, "it belongs to the TorchScript exporter; pass custom_translation_table"),
        "operator_export_type": (None, "it belongs to the TorchScript exporter"),
        "autograd_inlining": (True, "it belongs to the TorchScript exporter"),
        "export_modules_as_functions": (False, "pass functions=True: every module instance becomes a function"),
        "dynamo": (True, "hiercompile always uses the dynamo exporter"),
    }
)


@dataclasses.dataclass
class Arguments:
    """The export's arguments after checking and conversion."""

    args: tuple
    kwargs: dict[str, Any]
    dynamic_shapes: Any  # for torch.export: axis names given as strings are Dims
    axis_names: Any  # the dynamic shapes as given, when they name axes (strings or named Dims)
    input_names: Sequence[str] | None
    output_names: Sequence[str] | None
    opset_version: int | None
    custom_translation_table: Mapping[Callable, Callable] | None
    training: bool


def _training(value: Any, model: nn.Module) -> bool:
    """``training`` as a bool, or as torch's ``TrainingMode`` (EVAL, TRAINING, PRESERVE)."""
    if isinstance(value, bool):
        return value
    name = getattr(value, "name", None)
    if name in ("EVAL", "TRAINING", "PRESERVE"):
        return {"EVAL": False, "TRAINING": True}.get(name, model.training)
    raise InputError(f"training must be a bool or torch.onnx.TrainingMode, got {value!r}")


def _check_names(what: str, names: Sequence[str] | None) -> None:
    if names is None:
        return
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise InputError(f"{what} must be a list of non-empty strings, got {names!r}")
    duplicates = sorted({n for n in names if list(names).count(n) > 1})
    if duplicates:
        raise InputError(f"{what} repeat {duplicates}; every input and output needs a name of its own")


def _check_opset(opset_version: Any) -> None:
    """An ONNX opset the installed onnx knows, from the oldest its version converter reaches."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if opset_version is None:
        return
    if isinstance(opset_version, bool) or not isinstance(opset_version, int) or not 7 <= opset_version <= newest:
        raise InputError(
            f"opset_version must be an ONNX opset from 7 to {newest} (the newest onnx {onnx.__version__} knows; "
            f"18 and newer always work, older ones when every op of the model exists there), got {opset_version!r}"
        )


def read_arguments(
    model: nn.Module | torch.export.ExportedProgram,
    args: Any,
    kwargs: dict[str, Any] | None,
    *,
    dynamic_shapes: Any,
    dynamic_axes: Mapping | None,
    input_names: Sequence[str] | None,
    output_names: Sequence[str] | None,
    opset_version: int | None,
    custom_translation_table: Mapping[Callable, Callable] | None,
    training: Any,
    unsupported: dict[str, Any],
) -> Arguments:
    """Check the arguments and convert them as ``torch.onnx.export`` does; raise :class:`InputError`."""
    for name, value in unsupported.items():
        if name not in _UNSUPPORTED:
            raise InputError(
                f"unknown argument {name!r}; hiercompile.export takes torch.onnx.export's arguments "
                "(see the Python API docs) and its own (keep, functions, attributes, namespace, ...)"
            )
        default, why = _UNSUPPORTED[name]
        if value != default and not (name == "operator_export_type" and getattr(value, "name", "") == "ONNX"):
            raise InputError(f"{name}={value!r} is not supported: {why}")
    _check_names("input_names", input_names)
    _check_names("output_names", output_names)
    _check_opset(opset_version)
    if isinstance(args, torch.Tensor):
        args = (args,)
    if isinstance(args, list):
        args = tuple(args)
    if not isinstance(args, tuple):
        raise InputError(f"args must be a tuple of example inputs, got {type(args).__name__}; wrap one as (x,)")
    kwargs = dict(kwargs or {})
    if args and isinstance(args[-1], dict) and not kwargs:  # torch.onnx's convention: a trailing dict is kwargs
        args, kwargs = args[:-1], dict(args[-1])
    if isinstance(model, torch.export.ExportedProgram):
        if dynamic_shapes is not None or dynamic_axes is not None:
            raise InputError(
                "dynamic_shapes and dynamic_axes are fixed in an ExportedProgram; pass them to torch.export.export"
            )
        return Arguments(
            args, kwargs, None, None, input_names, output_names, opset_version, custom_translation_table, False
        )
    if dynamic_shapes is None and dynamic_axes is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                dynamic_shapes, args, kwargs = dims_from_axes(
                    model, args, kwargs, dynamic_axes, input_names, set(output_names or ())
                )
        except (ValueError, TypeError) as e:
            raise InputError(f"dynamic_axes {dict(dynamic_axes)!r} cannot be read: {e}; pass dynamic_shapes") from e
    converted, named = export_dims(dynamic_shapes)
    return Arguments(
        args,
        kwargs,
        converted,
        dynamic_shapes if named else None,
        input_names,
        output_names,
        opset_version,
        custom_translation_table,
        _training(training, model),
    )


def name_axes(model: ir.Model, axis_names: Any) -> None:
    """Give the ONNX inputs' dynamic dims the names the dynamic shapes gave them (strings or
    named ``Dim``s), everywhere in the model, as torch.onnx.export does."""
    if axis_names is None:
        return
    if isinstance(axis_names, Mapping):  # by input name: inputs that are no tensors have no ONNX input
        mapping = {}
        inputs = {value.name: value for value in model.graph.inputs}
        for key, axes in _per_input(axis_names):
            value = inputs.get(key)
            if value is None or value.shape is None or not isinstance(axes, Mapping | list | tuple):
                continue
            for dim, axis in axes.items() if isinstance(axes, Mapping) else enumerate(axes):
                name = axis if isinstance(axis, str) else getattr(axis, "__name__", None)
                symbol = value.shape[dim]
                if not name:
                    continue
                if not isinstance(symbol, ir.SymbolicDim) or not symbol.value:
                    warnings.warn(
                        f"the axis name {name!r} (input {key!r}, dim {dim}) will not be used: torch made that "
                        f"dim static ({symbol}) while capturing; the model fixes it to the example's size",
                        CaptureWarning,
                        stacklevel=4,
                    )
                elif symbol.value in mapping:
                    if mapping[symbol.value] != name:  # as torch.onnx.export warns
                        warnings.warn(
                            f"the axis name {name!r} will not be used, since it shares the same shape constraints "
                            f"with another axis: {mapping[symbol.value]!r}",
                            UserWarning,
                            stacklevel=4,
                        )
                else:
                    mapping[symbol.value] = name
        rename_axes(model, axis_names, mapping)
    else:
        rename_axes(model, axis_names)


def _per_input(axis_names: Mapping) -> Iterator[tuple[str, Any]]:
    """(ONNX input name, its axes): an input given as a list or tuple of tensors (a cache)
    is flattened by torch into inputs ``<name>_0``, ``<name>_1``, … in that order."""
    for key, axes in axis_names.items():
        if isinstance(axes, list | tuple) and axes and all(isinstance(a, Mapping) or a is None for a in axes):
            yield from ((f"{key}_{k}", a) for k, a in enumerate(axes))
        else:
            yield key, axes


def output_names_of(spec: pytree.TreeSpec) -> list[str]:
    """Names for a program's outputs after the model's own: the keys of a dict or
    ``ModelOutput`` (``last_hidden_state``, ``logits``), joined by ``.`` when nested;
    positions of a tuple under ``output`` (``output.0``); ``output`` for a lone tensor."""

    def paths(node: pytree.TreeSpec) -> list[list[str]]:
        if node.is_leaf():
            return [[]]
        children = node.children()
        keys = node.context
        if hasattr(keys, "_fields"):  # a namedtuple's type
            keys = list(keys._fields)
        if not (
            isinstance(keys, list | tuple) and len(keys) == len(children) and all(isinstance(k, str) for k in keys)
        ):
            keys = [str(k) for k in range(len(children))]
        return [[key, *rest] for key, child in zip(keys, children, strict=True) for rest in paths(child)]

    names = [".".join(path) for path in paths(spec)]
    if names == [""]:
        return ["output"]
    return [f"output.{name}" if name.split(".")[0].isdigit() else name for name in names]
