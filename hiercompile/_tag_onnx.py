"""Stage 4: carry the tags into the ONNX model and optimize it without losing any.

The whole ONNX side is one declarative list of passes, in :func:`tag_onnx_model`.
It is onnxscript's optimizer (constant folding, rewrite rules, clean-ups) with the
tagging passes around it and two replacements: :class:`MergeDuplicatesPass` for its
common-subexpression elimination (it unions the tags of what it merges), and
:class:`DeduplicateConstantsPass` for its initializer deduplication (two parameters
that happen to be equal, like freshly initialized norms, stay apart).
"""

from __future__ import annotations

import logging

import onnx_ir as ir
import onnx_ir.passes.common as common_passes
from onnxscript import rewriter
from onnxscript.optimizer import _constant_folding

from ._errors import CarryError
from ._version import __version__
from .passes import (
    CarryTagsPass,
    DeduplicateConstantsPass,
    FunctionizePass,
    FunctionizeResult,
    HierarchyMetadataPass,
    InheritTagsPass,
    MergeDuplicatesPass,
    NamespacePass,
    ScopedNamesPass,
    TagInitializersPass,
)


def tag_onnx_model(
    model: ir.Model,
    *,
    fx_tags: dict[str, str],
    fx_calls: dict[str, dict[str, int]] | None = None,
    hierarchy: dict[str, dict],
    root_tag: str,
    optimize: bool = True,
    scoped_names: bool = True,
    namespace: bool = False,
) -> None:
    """Tag ``model`` in place from ``fx_tags`` ({FX node name: tag}) and optimize it.

    ``fx_calls`` ({FX node name: {tag: k}}) marks ops of repeated module calls.
    """
    optimizer = [
        common_passes.InlinePass(),
        ir.passes.PassManager(
            [
                _constant_folding.FoldConstantsPass(
                    shape_inference=True,
                    input_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_INPUT_SIZE_LIMIT,
                    output_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_OUTPUT_SIZE_LIMIT,
                ),
                rewriter.RewritePass(rewriter._DEFAULT_REWRITE_RULES),
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
        DeduplicateConstantsPass(protected=set(model.graph.initializers)),
        MergeDuplicatesPass(),
        common_passes.OutputFixPass(),
        common_passes.NameFixPass(),
    ]
    passes = ir.passes.Sequential(
        CarryTagsPass(fx_tags, fx_calls),
        *(optimizer if optimize else []),
        CarryTagsPass(fx_tags, fx_calls),  # nodes the optimizer rebuilt from exporter nodes
        InheritTagsPass(fallback_tag=root_tag),  # nodes it made from nothing; then 100% or an error
        TagInitializersPass(fallback_tag=root_tag),
        HierarchyMetadataPass(hierarchy, __version__),
        *([ScopedNamesPass({tag: entry["module"] for tag, entry in hierarchy.items()})] if scoped_names else []),
        *([NamespacePass()] if namespace else []),
    )
    folding_logger = logging.getLogger(_constant_folding.__name__)
    level = folding_logger.level
    folding_logger.setLevel(logging.ERROR)  # it warns about every op it declines to fold
    try:
        passes(model)
    except (ir.passes.PassError, ir.passes.InvariantError) as e:
        cause = e.__cause__ or e
        raise CarryError(
            f"carry step (tagging the ONNX model) failed: {cause}; "
            "this is a bug in hiercompile, please report it with the model's class"
        ) from e
    finally:
        folding_logger.setLevel(level)


def functionize(model: ir.Model) -> FunctionizeResult:
    """Rewrite a tagged model in place into nested module functions (SPEC §6), checked by onnx.checker."""
    try:
        result = FunctionizePass()(model)
        common_passes.CheckerPass(full_check=True)(model)
    except (ir.passes.PassError, ir.passes.InvariantError) as e:
        raise CarryError(f"functions step failed: {e.__cause__ or e}; use the flat model.onnx") from e
    return result
