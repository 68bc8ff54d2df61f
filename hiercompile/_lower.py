"""Stage 3: lower the captured program to ONNX with the dynamo exporter."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import onnx_ir as ir
import torch

from ._errors import LowerError


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress prints, its optional-dependency and deprecation warnings."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def lower(program: torch.export.ExportedProgram) -> tuple[ir.Model, torch.export.ExportedProgram]:
    """Translate ``program`` to ONNX, unoptimized, and return the model and the decomposed program.

    Optimization is left to the tag-aware pipeline (:mod:`hiercompile._tag_onnx`), since
    the exporter's own common-subexpression elimination drops the merged nodes' metadata.
    The decomposed program is the one whose FX node names the ONNX nodes refer to.
    """
    try:
        with _quiet():
            onnx_program = torch.onnx.export(program, dynamo=True, optimize=False, verbose=False)
    except Exception as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise LowerError(
            f"lower step (torch.onnx dynamo exporter) failed: {first_line}; "
            "an op without an ONNX translation needs a custom translation (torch.onnx.export custom_translation_table)"
        ) from e
    return onnx_program.model, onnx_program.exported_program
