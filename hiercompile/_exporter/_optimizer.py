"""onnxscript's optimizer as a list of passes, with two tag-keeping replacements.

onnxscript has no public API for its optimizer's pass list or its default rewrite
rules, only ``optimize_ir``, which runs them together with an initializer
deduplication and a CSE that drop tags. The list is rebuilt here from two private
names, the only place hiercompile touches onnxscript's internals; a version without
them fails with a line that says which versions work.

One change to the rules themselves: a rule whose pattern ends in several nodes
(``SlicesSplit``: two Slices of one tensor) is only tried at nodes of its first output
node's op. onnxscript's matcher indexes every node of the graph each time it tries such
a rule at a node, which makes the rewrite pass quadratic in the graph (three quarters of
the optimizer's time on a 48-block model); the rule matches the same nodes either way,
since the node it is tried at must be that first output node.
"""

from __future__ import annotations

__all__ = ["SUPPORTED_ONNXSCRIPT", "optimizer_passes"]

from collections.abc import Collection

import onnx_ir as ir
import onnx_ir.passes.common as common_passes

from .._errors import CarryError
from ..passes import DeduplicateConstantsPass, MergeDuplicatesPass

SUPPORTED_ONNXSCRIPT = "onnxscript>=0.7,<0.8"
FOLDING_LOGGER = "onnxscript.optimizer._constant_folding"


def _private_parts():
    """onnxscript's constant folding module and default rewrite rules, or a clear error."""
    import onnxscript
    from onnxscript import rewriter

    try:
        from onnxscript.optimizer import _constant_folding

        rules = rewriter._DEFAULT_REWRITE_RULES
        _constant_folding.FoldConstantsPass  # noqa: B018 - checked to exist
    except (ImportError, AttributeError) as e:
        raise CarryError(
            f"carry step: onnxscript {onnxscript.__version__} lacks {e.name if isinstance(e, ImportError) else e}, "
            "which hiercompile's optimizer is built from; install a supported version: "
            f"pip install '{SUPPORTED_ONNXSCRIPT}'"
        ) from e
    return _constant_folding, rewriter.RewritePass([_tried_where_it_can_match(rule) for rule in rules])


class _FirstOutputOp:
    """``rule``, tried only at nodes whose op is ``op`` (the first output node of its pattern)."""

    def __init__(self, rule: object, op: tuple[str, str, str]) -> None:
        self._rule, self._op = rule, op

    def __getattr__(self, name: str) -> object:
        return getattr(self._rule, name)

    def try_rewrite(self, model: ir.Model, graph: object, node: ir.Node, **kwargs: object) -> object:
        if node.op_identifier() != self._op:
            return None
        return self._rule.try_rewrite(model, graph, node, **kwargs)


def _tried_where_it_can_match(rule: object) -> object:
    pattern = getattr(rule, "_target_pattern", None)
    outputs = getattr(pattern, "output_nodes", [])
    op = outputs[0].op_identifier() if len(outputs) > 1 else None
    return _FirstOutputOp(rule, op) if op is not None else rule


def optimizer_passes(protected: Collection[str]) -> list[ir.passes.PassBase]:
    """onnxscript's ``optimize_ir`` pass list, with :class:`DeduplicateConstantsPass` for its
    initializer deduplication (``protected`` names the model's own parameters and buffers)
    and :class:`MergeDuplicatesPass` for its CSE."""
    folding, rewrite = _private_parts()
    return [
        common_passes.InlinePass(),
        ir.passes.PassManager(
            [
                folding.FoldConstantsPass(
                    shape_inference=True,
                    input_size_limit=folding.DEFAULT_CONSTANT_FOLD_INPUT_SIZE_LIMIT,
                    output_size_limit=folding.DEFAULT_CONSTANT_FOLD_OUTPUT_SIZE_LIMIT,
                ),
                rewrite,
                common_passes.RemoveUnusedNodesPass(),
                common_passes.RemoveUnusedFunctionsPass(),
                common_passes.RemoveUnusedOpsetsPass(),
            ],
            steps=2,
            early_stop=True,
        ),
        common_passes.RemoveUnusedNodesPass(),
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common_passes.LiftSubgraphInitializersToMainGraphPass(),
        DeduplicateConstantsPass(protected=protected),
        MergeDuplicatesPass(),
        common_passes.OutputFixPass(),
        common_passes.NameFixPass(),
    ]
