"""Stage 3: lower the captured program to ONNX with the dynamo exporter."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import onnx_ir as ir
import torch

from .._compat import fast_paths
from .._compat import torch_onnx as fast
from .._compat.torch import OpOverload, custom_op_implementation
from .._errors import LowerError, first_line
from .._logs import quiet_loggers
from ..passes import ContiguousViewsPass, MetaWeightsPass
from ._arguments import name_axes
from ._decompose import decompose_ops

logger = logging.getLogger(__name__)


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


_STRIDES_CHANGED = re.compile(r"Cannot view a tensor with shape .* and strides")


@dataclasses.dataclass(frozen=True)
class Lowering:
    """The exporter's settings: opset, extra translations, and names for the dynamic axes."""

    opset_version: int | None = None
    custom_translation_table: Mapping[Callable, Callable] | None = None
    axis_names: Any = None  # dynamic shapes that name axes (see _arguments.name_axes)
    weights: Mapping[str, ir.TensorProtocol] | None = None  # values of what was captured on the meta device
    size_oblivious: bool = False  # captured so that sizes of 0 or 1 stay dynamic: decomposed so too


def lower(
    program: torch.export.ExportedProgram, lowering: Lowering | None = None
) -> tuple[ir.Model, torch.export.ExportedProgram]:
    """Translate ``program`` to ONNX, unoptimized, and return the model and the decomposed program.

    The ops without a translation are decomposed one at a time (:func:`._decompose.decompose_ops`);
    where that cannot be done, torch's exporter traces the whole program again to decompose it.

    Parameters captured on the meta device take their values from ``lowering.weights``
    (:class:`MetaWeightsPass`).
    Optimization is left to the tag-aware pipeline (:mod:`._carry`), since
    the exporter's own common-subexpression elimination drops the merged nodes' metadata.
    The decomposed program is the one whose FX node names the ONNX nodes refer to.

    Rules, applied when the exporter fails (other programs lower as they are, unchanged):

    1. It fails on a view whose strides its decompositions changed: the program's views
       get contiguous inputs (:class:`ContiguousViewsPass`, in place) and it is lowered again.
    2. It has no translation for an op of a library's own (``torch.library.custom_op``) that
       the caller did not translate either: every such op is decomposed through its Python
       implementation and the program lowered again; an op without one, or whose
       implementation cannot be traced, is a :class:`LowerError` that names it and says how
       to pass a translation.
    """
    lowering = lowering or Lowering()
    remedies = {"views", "custom ops"}
    tables, opset = _tables(lowering)
    decomposed = tables is not None and _decomposed_by_op(program, tables, lowering.size_oblivious)
    while True:
        try:
            with _quiet():
                onnx_program = fast.translate(program, tables, opset, decomposed, lowering.custom_translation_table)
            break
        except Exception as e:
            text = str(e)
            if "views" in remedies and _STRIDES_CHANGED.search(text):
                remedies.discard("views")  # rule 1: pytorch#136543
                ContiguousViewsPass()(program.graph_module)
            elif "custom ops" in remedies and (ops := _custom_ops(program, lowering)):
                remedies.discard("custom ops")  # rule 2
                program = _decompose(program, ops)
                decomposed = tables is not None and _decomposed_by_op(program, tables, lowering.size_oblivious)
            else:
                raise LowerError(f"lower step (torch.onnx dynamo exporter) failed: {_describe(e)}") from e
    reached = onnx_program.model.opset_imports.get("")
    if reached != opset:  # torch converts to an older opset where it can, and keeps its own where not
        raise LowerError(
            f"lower step: the model could not be converted to opset_version={opset} (ONNX's version converter "
            f"left it at {reached}: one of its ops has no form there); pass opset_version={reached} or newer"
        )
    name_axes(onnx_program.model, lowering.axis_names)
    if lowering.weights is not None:
        try:
            MetaWeightsPass(lowering.weights)(onnx_program.model)
        except ValueError as e:
            raise LowerError(
                f"lower step: {first_line(e)}; build such tensors from the inputs' device, "
                "or export the model with its weights loaded"
            ) from e
    return onnx_program.model, onnx_program.exported_program


def _custom_ops(program: torch.export.ExportedProgram, lowering: Lowering) -> list[OpOverload]:
    """The ops of libraries' own in the program (any namespace but aten's and prims') the caller does not translate."""
    translated = set(lowering.custom_translation_table or {})
    return sorted(
        {
            node.target
            for module in program.graph_module.modules()
            if isinstance(module, torch.fx.GraphModule)
            for node in module.graph.nodes
            if isinstance(node.target, OpOverload)
            and node.target.namespace not in ("aten", "prims")
            and node.target not in translated
        },
        key=str,
    )


def _decompose(program: torch.export.ExportedProgram, ops: list[OpOverload]) -> torch.export.ExportedProgram:
    """``program`` with each op replaced by the ops its Python implementation runs."""

    def fix(op: OpOverload) -> str:
        return (
            f"pass custom_translation_table={{torch.ops.{op.namespace}.{op._opname}.{op._overloadname}: "
            "an onnxscript function} to hiercompile.export"
        )

    table = {}
    for op in ops:
        implementation = custom_op_implementation(op)
        if implementation is None:
            raise LowerError(
                f"lower step: the op {op.name()} has no ONNX translation and no Python implementation "
                f"to export through; {fix(op)}"
            )
        table[op] = implementation
    try:
        with _quiet():
            return program.run_decompositions(table)
    except Exception as e:
        names = ", ".join(op.name() for op in ops)
        raise LowerError(
            f"lower step: {names} has no ONNX translation and its Python implementation cannot be traced "
            f"({first_line(e)}); {fix(ops[0])}"
        ) from e


def _tables(lowering: Lowering) -> tuple[fast.Tables | None, int]:
    """The translation table for ``lowering`` (the caller's translations included), what
    torch's exporter derives from it, and the opset; no table where the fast paths are off
    (torch's export builds its own)."""
    opset = lowering.opset_version or fast.default_opset()
    if not fast_paths() or not fast.usable():
        return None, opset
    table_opset = max(opset, fast.exporter_opset())  # older opsets: converted after, as torch does
    with _quiet():  # building the table warns of torchvision's ops when torchvision is missing
        if not lowering.custom_translation_table:
            return fast.torchlib_tables(table_opset), opset
        registry = fast.new_registry(table_opset)  # the caller's translations go into a table of its own
    for op, translation in lowering.custom_translation_table.items():
        registry.register_op(op, translation, is_complex=False)
    return fast.Tables.of(registry), opset


def _decomposed_by_op(program: torch.export.ExportedProgram, tables: fast.Tables, size_oblivious: bool = False) -> bool:
    """Whether the ops of ``program`` without a translation could be decomposed one at a time."""
    why_not = decompose_ops(program, tables.decompositions, tables.translated, size_oblivious=size_oblivious)
    if why_not:
        logger.info("lower: %s; torch's exporter decomposes the whole program", why_not)
    return why_not is None
