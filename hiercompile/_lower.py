"""Stage 3: lower the captured program to ONNX with the dynamo exporter."""

from __future__ import annotations

import contextlib
import io
import logging
import re
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


def _describe(error: Exception) -> str:
    """One line: the innermost error, the FX op it happened at and the source line, and what to try."""
    text = "\n".join(str(e) for e in (error, error.__cause__) if e is not None)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    summary = next((line for line in lines if line.startswith("<class ")), lines[0] if lines else repr(error))
    summary = re.sub(r"\x1b\[[0-9;]*m", "", summary)
    at = re.search(r"While executing %(\S+) : .*?target=([\w.:]+)", text)
    code = re.findall(r"^\s{4}(\S.*)$", text, flags=re.M)
    where = f" at FX op {at.group(1)} ({at.group(2)})" if at else ""
    source = f", from `{code[-1]}`" if code and at else ""
    return (
        f"{summary}{where}{source}; this is a limitation of torch's exporter for this op: rewrite that line "
        "(e.g. call .contiguous() before .view/.reshape) or register a translation with torch.onnx's "
        "custom_translation_table"
    )


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
        raise LowerError(f"lower step (torch.onnx dynamo exporter) failed: {_describe(e)}") from e
    return onnx_program.model, onnx_program.exported_program
