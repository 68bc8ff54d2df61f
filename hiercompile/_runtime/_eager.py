"""The ``eager`` runtime: the graph's own code runs; the export only writes its artifacts."""

from __future__ import annotations

__all__ = ["EagerRuntime"]

from collections.abc import Callable, Sequence
from typing import Any

from ._registry import Compiled, Runtime


class EagerRuntime(Runtime):
    """Runs every graph as dynamo captured it (differentiable, on any device)."""

    def placement(self, example_inputs: list[Any], providers: Sequence[str] | None) -> Any:
        return None

    def load(self, compiled: Compiled, placement: Any) -> Callable:
        return compiled.eager
