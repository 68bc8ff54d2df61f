"""onnxscript's optimizer as a list of passes, with two tag-keeping replacements.

onnxscript has no public API for its optimizer's pass list or its default rewrite
rules, only ``optimize_ir``, which runs them together with an initializer
deduplication and a CSE that drop tags. The list is rebuilt here from its private
names (the default rules, the constant folding pass, the rules' pattern and simple
matcher), the only place hiercompile touches onnxscript's internals; a version without
them fails with a line that says which versions work.

One change to the rules themselves: a rule is only tried at nodes of its pattern's
(first) output node's op and domain, where that op is fixed. onnxscript tries every
rule at every node (about 50 rules: 38,000 tries for a 2-block decoder, two thirds of
the optimizer's time), and for a rule whose pattern ends in several nodes
(``SlicesSplit``: two Slices of one tensor) its matcher indexes every node of the graph
at each try, which made the rewrite pass quadratic in the graph. The rules match the
same nodes either way: the matcher starts by comparing that output node's op type and
domain with the node it is tried at, and fails there on any other.
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
        from onnxscript.rewriter import _matcher

        rules = rewriter._DEFAULT_REWRITE_RULES
        _constant_folding.FoldConstantsPass  # noqa: B018 - checked to exist
        simple = _matcher.SimplePatternMatcher
    except (ImportError, AttributeError) as e:
        raise CarryError(
            f"carry step: onnxscript {onnxscript.__version__} lacks {e.name if isinstance(e, ImportError) else e}, "
            "which hiercompile's optimizer is built from; install a supported version: "
            f"pip install '{SUPPORTED_ONNXSCRIPT}'"
        ) from e
    return _constant_folding, rewriter.RewritePass([_tried_where_it_can_match(rule, simple) for rule in rules])


class _FirstOutputOp:
    """``rule``, tried only at nodes whose op type and domain are its pattern's (first) output node's."""

    def __init__(self, rule: object, domain: str, op_type: str) -> None:
        self._rule, self._domain, self._op_type = rule, domain, op_type

    def __getattr__(self, name: str) -> object:
        return getattr(self._rule, name)

    def try_rewrite(self, model: ir.Model, graph: object, node: ir.Node, **kwargs: object) -> object:
        if node.op_type != self._op_type or node.domain != self._domain:
            return None
        return self._rule.try_rewrite(model, graph, node, **kwargs)


def _tried_where_it_can_match(rule: object, simple: type) -> object:
    """``rule`` as :class:`_FirstOutputOp` where its matcher is onnxscript's ``simple`` one
    (which starts at the output node) and that node's op and domain are fixed strings."""
    pattern = getattr(rule, "_target_pattern", None)
    outputs = getattr(pattern, "output_nodes", [])
    op = outputs[0].op_identifier() if outputs else None
    if op is None or not isinstance(getattr(rule, "_matcher", None), simple):
        return rule
    return _FirstOutputOp(rule, op[0], op[1])


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
