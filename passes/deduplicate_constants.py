"""Merge equal folded constants, but never two parameters that merely hold equal values."""

from __future__ import annotations

__all__ = ["DeduplicateConstantsPass"]

from collections.abc import Collection

import onnx_ir as ir


class DeduplicateConstantsPass(ir.passes.InPlacePass):
    """Merge initializers of the main graph that hold the same constant.

    onnx-ir's ``DeduplicateInitializersPass`` merges any equal initializers. In a
    freshly initialized model every norm weight is all ones, so it would make one
    weight that every norm in every module shares, and editing it would change them
    all. Folded constants (shapes, masks) are what should be shared.

    Rules:

    1. Initializers named in ``protected`` (the model's own parameters and buffers)
       are never merged.
    2. Other initializers with the same dtype, shape and content, of at most
       ``size_limit`` elements, are merged into the first of them.
    3. Graph inputs and outputs are never merged.
    """

    def __init__(self, protected: Collection[str], size_limit: int = 1024) -> None:
        super().__init__()
        self.protected = frozenset(protected)
        self.size_limit = size_limit

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        seen: dict[tuple, ir.Value] = {}
        modified = False
        for name, value in list(graph.initializers.items()):
            tensor = value.const_value
            if (
                name in self.protected
                or tensor is None
                or tensor.size > self.size_limit
                or tensor.dtype == ir.DataType.STRING
                or value.is_graph_input()
                or value.is_graph_output()
            ):
                continue
            first = seen.setdefault((tensor.dtype, tuple(tensor.shape), tensor.tobytes()), value)
            if first is not value:
                value.replace_all_uses_with(first)
                graph.initializers.pop(name)
                modified = True
        return ir.passes.PassResult(model, modified=modified)
