"""onnxscript's optimizer as a list of passes, with two tag-keeping replacements.

onnxscript has no public API for its optimizer's pass list or its default rewrite
rules, only ``optimize_ir``, which runs them together with an initializer
deduplication and a CSE that drop tags. The list is rebuilt here from two private
names, the only place hiercompile touches onnxscript's internals; a version without
them fails with a line that says which versions work.
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
    return _constant_folding, rewriter.RewritePass(rules)


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
