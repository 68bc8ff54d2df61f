"""The functions form (docs/tags.md, functions form): a tagged model rewritten into nested module functions, checked."""

from __future__ import annotations

__all__ = ["functionize"]

import onnx_ir as ir
import onnx_ir.passes.common as common_passes

from .._errors import FunctionsError
from ..passes import FunctionizePass, FunctionizeResult


def functionize(model: ir.Model) -> FunctionizeResult:
    """Rewrite a tagged model in place into nested module functions, checked by ``onnx.checker``."""
    try:
        result = FunctionizePass()(model)
        common_passes.CheckerPass(full_check=True)(model)
    except (ir.passes.PassError, ir.passes.InvariantError) as e:
        raise FunctionsError(
            f"functions step failed: {e.__cause__ or e}; "
            "use the flat model.onnx, and report this with the model's class"
        ) from e
    return result
