"""Stage 4: carry the tags into the ONNX model and optimize it without losing any.

The whole ONNX side is one declarative list of passes, in :func:`carry`: the tagging
passes around onnxscript's optimizer (:mod:`._optimizer`).
"""

from __future__ import annotations

__all__ = ["carry"]

import warnings

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common_passes

from .._errors import CarryError
from .._logs import quiet_loggers
from .._version import __version__
from ..passes import (
    CarryTagsPass,
    HierarchyMetadataPass,
    InheritTagsPass,
    NameInputsOutputsPass,
    NamespacePass,
    ScopedNamesPass,
    TagInitializersPass,
)
from ._optimizer import FOLDING_LOGGER, optimizer_passes
from ._options import GraphOptions


def carry(
    model: ir.Model,
    *,
    fx_tags: dict[str, str],
    fx_calls: dict[str, dict[str, int]] | None = None,
    hierarchy: dict[str, dict],
    root_tag: str,
    options: GraphOptions,
) -> None:
    """Tag ``model`` in place from ``fx_tags`` ({FX node name: tag}) and optimize it.

    ``fx_calls`` ({FX node name: {tag: k}}) marks ops of repeated module calls; ``options``
    say how the graph is written.
    """
    passes = ir.passes.Sequential(
        CarryTagsPass(fx_tags, fx_calls),
        *(optimizer_passes(protected=set(model.graph.initializers)) if options.optimize else []),
        CarryTagsPass(fx_tags, fx_calls),  # nodes the optimizer rebuilt from exporter nodes
        InheritTagsPass(fallback_tag=root_tag),  # nodes it made from nothing; then 100% or an error
        TagInitializersPass(fallback_tag=root_tag),
        HierarchyMetadataPass(hierarchy, __version__),
        NameInputsOutputsPass(options.input_names, options.output_names),
        *([common_passes.AddInitializersToInputsPass()] if options.keep_initializers_as_inputs else []),
        *(
            [ScopedNamesPass({tag: entry["module"] for tag, entry in hierarchy.items()})]
            if options.scoped_names
            else []
        ),
        *([NamespacePass()] if options.namespace else []),
    )
    try:
        # the folding logger warns about every op it declines to fold; numpy warns when it folds log(0)
        with quiet_loggers(FOLDING_LOGGER), np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            passes(model)
    except (ir.passes.PassError, ir.passes.InvariantError) as e:
        cause = e.__cause__ or e
        raise CarryError(
            f"carry step (tagging the ONNX model) failed: {cause}; "
            "this is a bug in hiercompile, please report it with the model's class"
        ) from e
