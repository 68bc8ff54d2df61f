"""onnxscript's optimizer, as separate passes (its private names).

onnxscript's public ``optimize_ir`` runs constant folding and the default rewrite rules
together with an initializer deduplication and a CSE that drop tags, so the carry stage
rebuilds its pass list with tag-keeping replacements for those two. The fast path takes
the folding pass and the rules from their private names (``onnxscript.optimizer.
_constant_folding``, ``onnxscript.rewriter._DEFAULT_REWRITE_RULES``, ``onnxscript.rewriter.
_matcher.SimplePatternMatcher``; checked on onnxscript 0.6 and 0.7), and tries each rule only
at nodes of its pattern's output op: onnxscript tries every rule at every node (about 50
rules, 38,000 tries for a 2-block decoder), and a rule whose pattern ends in several nodes
(``SlicesSplit``) indexes the whole graph at each try. The rules match the same nodes either
way: the matcher starts by comparing that output node's op type and domain.

Without those names, or with ``HIERCOMPILE_SAFE=1``: onnxscript's public ``fold_constants``
and ``rewrite``, each as a pass.
"""

from __future__ import annotations

__all__ = ["FOLDING_LOGGER", "optimizer_parts"]

import logging

import onnx_ir as ir

from . import fast_paths

logger = logging.getLogger(__name__)

FOLDING_LOGGER = "onnxscript.optimizer._constant_folding"  # the logger its folding warns on


def optimizer_parts() -> tuple[ir.passes.PassBase, ir.passes.PassBase]:
    """onnxscript's constant folding and default rewrite rules, as two passes."""
    if fast_paths():
        try:
            return _private_parts()
        except (ImportError, AttributeError) as e:
            logger.debug("onnxscript's private optimizer parts are missing (%s): its public functions run", e)
    return _PublicFolding(), _PublicRewrite()


def _private_parts() -> tuple[ir.passes.PassBase, ir.passes.PassBase]:
    from onnxscript import rewriter
    from onnxscript.optimizer import _constant_folding as folding
    from onnxscript.rewriter import _matcher

    simple = _matcher.SimplePatternMatcher
    fold = folding.FoldConstantsPass(
        shape_inference=True,
        input_size_limit=folding.DEFAULT_CONSTANT_FOLD_INPUT_SIZE_LIMIT,
        output_size_limit=folding.DEFAULT_CONSTANT_FOLD_OUTPUT_SIZE_LIMIT,
    )
    rules = [_tried_where_it_can_match(rule, simple) for rule in rewriter._DEFAULT_REWRITE_RULES]
    return fold, rewriter.RewritePass(rules)


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


class _PublicFolding(ir.passes.InPlacePass):
    """``onnxscript.optimizer.fold_constants`` as a pass."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        import onnxscript

        result = onnxscript.optimizer.fold_constants(model, onnx_shape_inference=True)
        return ir.passes.PassResult(model, modified=bool(getattr(result, "modified", True)))


class _PublicRewrite(ir.passes.InPlacePass):
    """``onnxscript.rewriter.rewrite`` (the default rules) as a pass."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        import onnxscript

        onnxscript.rewriter.rewrite(model)
        return ir.passes.PassResult(model, modified=False)
