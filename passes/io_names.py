"""Names for the model's inputs and outputs: the user's, or the model's own output names."""

from __future__ import annotations

__all__ = ["NameInputsOutputsPass"]

import logging
from collections.abc import Sequence

import onnx_ir as ir

logger = logging.getLogger(__name__)

ORIGINAL_VALUE_NAME_KEY = "hiercompile.original_value_name"


def _all_values(graph: ir.Graph) -> list[ir.Value]:
    values = [*graph.inputs, *graph.initializers.values()]
    for node in ir.traversal.RecursiveGraphIterator(graph):
        values.extend(node.outputs)
    return values


class NameInputsOutputsPass(ir.passes.InPlacePass):
    """Rename the main graph's inputs and outputs.

    Rules:

    1. The k-th graph input is named ``input_names[k]`` and the k-th graph output
       ``output_names[k]``; with fewer names than values, the rest keep their names.
    2. Another value that already holds a wanted name is renamed ``<name>_<n>`` first,
       so names stay unique.
    3. A renamed input or output keeps its old name in ``hiercompile.original_value_name``.
    """

    def __init__(self, input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None) -> None:
        super().__init__()
        self.input_names = list(input_names or [])
        self.output_names = list(output_names or [])

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        wanted = dict(zip(graph.inputs, self.input_names, strict=False))
        wanted.update(zip(graph.outputs, self.output_names, strict=False))
        wanted = {value: name for value, name in wanted.items() if value.name != name}
        if not wanted:
            return ir.passes.PassResult(model, modified=False)
        values = _all_values(graph)
        taken = {v.name for v in values}
        names = set(wanted.values())
        for value in values:
            if value.name in names and value not in wanted:
                n = 1
                while f"{value.name}_{n}" in taken or f"{value.name}_{n}" in names:
                    n += 1
                taken.add(f"{value.name}_{n}")
                value.name = f"{value.name}_{n}"
        for value, name in wanted.items():
            logger.info("graph %s %s is named %s", "input" if value.is_graph_input() else "output", value.name, name)
            value.metadata_props.setdefault(ORIGINAL_VALUE_NAME_KEY, value.name or "")
            value.name = name
        return ir.passes.PassResult(model, modified=True)
