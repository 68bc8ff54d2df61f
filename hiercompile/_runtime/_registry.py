"""The runtimes a compiled graph's ONNX model runs in, by name.

A runtime is one file: a :class:`Runtime` subclass that says where a graph runs (or why it
runs eagerly instead) and makes the callable that runs it. hiercompile's own are in
:data:`RUNTIMES`; another package adds one under the ``hiercompile.runtimes`` entry point
(``name = "package.module:RuntimeClass"``), as torch.compile's backends join dynamo.
"""

from __future__ import annotations

__all__ = ["RUNTIMES", "Compiled", "Runtime", "runtime_named"]

import abc
import dataclasses
import importlib
import importlib.metadata
import types
from collections.abc import Callable, Sequence
from typing import Any

import onnx_ir as ir
import torch

from .._errors import InputError

ENTRY_POINTS = "hiercompile.runtimes"
RUNTIMES = types.MappingProxyType(
    {
        "ort": "hiercompile._runtime._ort:OrtRuntime",
        "eager": "hiercompile._runtime._eager:EagerRuntime",
    }
)


@dataclasses.dataclass(frozen=True)
class Compiled:
    """A graph dynamo captured, exported: the tagged model and how to call it with the graph's
    arguments (the positions of the model's inputs among them, the outputs' template, the
    Python numbers baked in, and the graph's own code to run instead)."""

    model: ir.Model
    user_positions: list[int]
    template: list[Any]
    scalars: dict[int, torch.Tensor]
    eager: Callable


class Runtime(abc.ABC):
    """Where a compiled graph runs and how."""

    @abc.abstractmethod
    def placement(self, example_inputs: list[Any], providers: Sequence[str] | None) -> Any:
        """Where the graph runs (handed to :meth:`load`), or a string saying why it runs eagerly."""

    @abc.abstractmethod
    def load(self, compiled: Compiled, placement: Any) -> Callable:
        """The callable that runs ``compiled`` there, with the graph's arguments."""


def runtime_named(name: str) -> Runtime:
    """The runtime called ``name``: hiercompile's own, or one another package registered."""
    path = RUNTIMES.get(name)
    if path is None:
        found = [e for e in importlib.metadata.entry_points(group=ENTRY_POINTS) if e.name == name]
        if not found:
            known = sorted({*RUNTIMES, *(e.name for e in importlib.metadata.entry_points(group=ENTRY_POINTS))})
            raise InputError(
                f"runtime must be one of {', '.join(map(repr, known))} (or one registered under the "
                f"{ENTRY_POINTS!r} entry point), got {name!r}"
            )
        return found[0].load()()
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)()
