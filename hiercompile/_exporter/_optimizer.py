"""onnxscript's optimizer as a list of passes, with two tag-keeping replacements.

onnxscript's ``optimize_ir`` runs its passes together with an initializer deduplication and a
CSE that drop tags; the list is rebuilt here, with :class:`DeduplicateConstantsPass` and
:class:`MergeDuplicatesPass` in their place, from the folding and rewrite passes
:mod:`hiercompile._compat.onnxscript` provides.
"""

from __future__ import annotations

__all__ = ["FOLDING_LOGGER", "optimizer_passes"]

from collections.abc import Collection

import onnx_ir as ir
import onnx_ir.passes.common as common_passes

from .._compat.onnxscript import FOLDING_LOGGER, optimizer_parts
from ..passes import DeduplicateConstantsPass, MergeDuplicatesPass


def optimizer_passes(protected: Collection[str]) -> list[ir.passes.PassBase]:
    """onnxscript's ``optimize_ir`` pass list, with :class:`DeduplicateConstantsPass` for its
    initializer deduplication (``protected`` names the model's own parameters and buffers)
    and :class:`MergeDuplicatesPass` for its CSE."""
    folding, rewrite = optimizer_parts()
    return [
        common_passes.InlinePass(),
        ir.passes.PassManager(
            [
                folding,
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
