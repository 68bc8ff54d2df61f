"""FX pass: give every ``view``/``reshape`` a contiguous input before the program is lowered.

torch's ONNX exporter decomposes the captured program again before it translates it.
The decompositions can change a tensor's strides (a fused kernel replaced by
matmuls and transposes), and a ``view`` recorded on the captured strides then fails
on the new ones ("Cannot view a tensor with shape … and strides …", pytorch#136543).
ONNX has no strides, so a contiguous copy before every view costs nothing in the
ONNX model (it becomes an ``Identity`` the optimizer removes) and makes every view
valid whatever the strides.
"""

from __future__ import annotations

__all__ = ["ContiguousViewsPass"]

import logging

import torch
from torch import fx
from torch.fx.passes.infra.pass_base import PassBase, PassResult

logger = logging.getLogger(__name__)

_VIEWS = (torch.ops.aten.view.default, torch.ops.aten.reshape.default)


class ContiguousViewsPass(PassBase):
    """Insert a contiguous ``clone`` before the input of every ``view`` and ``reshape``.

    Rules:

    1. For each ``aten.view`` / ``aten.reshape`` node of the graph and of its subgraphs,
       its tensor input is replaced by ``aten.clone(input, memory_format=contiguous_format)``.
    2. The clone takes the view's metadata (module stack, tags, source line), so it is
       tagged with the module the view ran in, and the input's value as a contiguous tensor.
    3. One clone per input value and view: an input viewed twice gets two clones (the
       optimizer removes the resulting ``Identity`` nodes either way).
    """

    def call(self, graph_module: fx.GraphModule) -> PassResult:
        inserted = 0
        for module in graph_module.modules():
            if not isinstance(module, fx.GraphModule):
                continue
            graph = module.graph
            for node in list(graph.nodes):
                if node.op != "call_function" or node.target not in _VIEWS or not isinstance(node.args[0], fx.Node):
                    continue
                source = node.args[0]
                with graph.inserting_before(node):
                    clone = graph.call_function(
                        torch.ops.aten.clone.default, (source,), {"memory_format": torch.contiguous_format}
                    )
                clone.meta = {k: v for k, v in node.meta.items() if k != "val"}
                if isinstance(source.meta.get("val"), torch.Tensor):
                    clone.meta["val"] = source.meta["val"].clone(memory_format=torch.contiguous_format)
                node.replace_input_with(source, clone)
                inserted += 1
            module.recompile()
        logger.info("made the inputs of %d views contiguous", inserted)
        return PassResult(graph_module, modified=inserted > 0)
