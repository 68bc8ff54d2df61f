"""Give the weights of a model captured on the meta device their values, without reading them."""

from __future__ import annotations

__all__ = ["MetaWeightsPass"]

import logging
from collections.abc import Mapping

import onnx_ir as ir

logger = logging.getLogger(__name__)


def _is_meta(tensor: object) -> bool:
    """Whether ``tensor`` wraps a torch tensor on the meta device (no data: shape and dtype only)."""
    return bool(getattr(getattr(tensor, "raw", None), "is_meta", False))


def _transposed(tensor: ir.TensorProtocol, perm: list[int], name: str) -> ir.LazyTensor:
    def evaluate() -> ir.Tensor:
        try:
            return ir.Tensor(tensor.numpy().transpose(perm).copy(), dtype=tensor.dtype, name=name)
        finally:
            if isinstance(tensor, ir.ExternalTensor):
                tensor.release()  # its memory map goes: one weight in memory at a time

    shape = ir.Shape([tensor.shape[p] for p in perm])
    return ir.LazyTensor(evaluate, dtype=tensor.dtype, shape=shape, name=name)


class MetaWeightsPass(ir.passes.InPlacePass):
    """Set the initializers of a model lowered from the meta device to their values.

    ``values`` maps initializer names (the model's parameter and buffer names) to tensors
    that are read only when the model is written, such as ``ir.ExternalTensor``s into a
    safetensors file: the weights are copied from there into the external data file.

    Rules:

    1. An initializer named in ``values`` takes that value; dtype and shape must agree.
    2. A ``Transpose`` whose input is such a weight, used by it alone, becomes a weight
       that is transposed when it is written: constant folding (which folds such
       transposes whatever their size) would read the whole weight into memory.
    3. An initializer still on the meta device afterwards has no value to write: a
       :class:`ValueError` names it (a constant the model built on the meta device).
    """

    def __init__(self, values: Mapping[str, ir.TensorProtocol]) -> None:
        super().__init__()
        self.values = values

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        given = set()
        for name, value in graph.initializers.items():
            if name not in self.values:
                continue
            tensor = self.values[name]
            if value.const_value is not None and (
                tensor.dtype != value.const_value.dtype or tuple(tensor.shape) != tuple(value.const_value.shape)
            ):
                raise ValueError(
                    f"{name} is {value.const_value.dtype} {tuple(value.const_value.shape)} in the model, "
                    f"{tensor.dtype} {tuple(tensor.shape)} in the values given"
                )
            value.const_value = tensor
            given.add(name)
        transposed = 0
        for node in list(graph):
            weight = node.inputs[0] if node.op_type == "Transpose" and node.domain == "" and node.inputs else None
            if weight is None or weight.name not in given or len(weight.uses()) != 1:
                continue
            tensor = weight.const_value
            perm = node.attributes.get_ints("perm", list(reversed(range(len(tensor.shape)))))
            output = node.outputs[0]
            folded = ir.Value(name=output.name, const_value=_transposed(tensor, list(perm), output.name or ""))
            folded.type, folded.shape = output.type, output.shape
            ir.convenience.replace_all_uses_with(output, folded)
            graph.remove(node, safe=True)
            graph.initializers.pop(weight.name)
            graph.register_initializer(folded)
            transposed += 1
        empty = [name for name, value in graph.initializers.items() if _is_meta(value.const_value)]
        if empty:
            raise ValueError(
                f"{len(empty)} initializers have no data ({', '.join(empty[:3])}): the model made them on the "
                "meta device, and no value was given for them"
            )
        if given:
            logger.info("%d weights given their values, %d of them transposed when written", len(given), transposed)
        return ir.passes.PassResult(model, modified=bool(given))
