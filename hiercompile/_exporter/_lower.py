"""Stage 3: lower the captured program to ONNX with the dynamo exporter."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import onnx_ir as ir
import torch

from .._errors import LowerError
from .._logs import quiet_loggers
from ._arguments import name_axes


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress prints, its optional-dependency and deprecation warnings."""
    with quiet_loggers("torch.onnx"), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


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


@dataclasses.dataclass(frozen=True)
class Lowering:
    """The exporter's settings: opset, extra translations, and names for the dynamic axes."""

    opset_version: int | None = None
    custom_translation_table: Mapping[Callable, Callable] | None = None
    axis_names: Any = None  # dynamic shapes that name axes (see _arguments.name_axes)


def lower(
    program: torch.export.ExportedProgram, lowering: Lowering | None = None
) -> tuple[ir.Model, torch.export.ExportedProgram]:
    """Translate ``program`` to ONNX, unoptimized, and return the model and the decomposed program.

    Optimization is left to the tag-aware pipeline (:mod:`._carry`), since
    the exporter's own common-subexpression elimination drops the merged nodes' metadata.
    The decomposed program is the one whose FX node names the ONNX nodes refer to.
    """
    lowering = lowering or Lowering()
    try:
        with _quiet():
            onnx_program = torch.onnx.export(
                program,
                dynamo=True,
                optimize=False,
                verbose=False,
                opset_version=lowering.opset_version,
                custom_translation_table=dict(lowering.custom_translation_table or {}) or None,
            )
    except Exception as e:
        raise LowerError(f"lower step (torch.onnx dynamo exporter) failed: {_describe(e)}") from e
    name_axes(onnx_program.model, lowering.axis_names)
    return onnx_program.model, onnx_program.exported_program
