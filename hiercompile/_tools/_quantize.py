"""``hiercompile.quantize``: ONNX Runtime's dynamic quantization, chosen by module.

ONNX Runtime's quantizers take node *names* (``nodes_to_exclude``, ``nodes_to_quantize``),
which change with every exporter and optimizer version. Here modules are chosen by tag
pattern, resolved to the export's node names through the tags, and the quantized model is
tagged again (:func:`hiercompile.retag`), so the result says, per module, what was quantized.
"""

from __future__ import annotations

__all__ = ["QuantizeResult", "quantize", "tags_matching"]

import collections
import dataclasses
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import onnx_ir as ir

from .._errors import InputError
from .._io import onnx_writer, write_files
from ..passes import RetagResult, get_tags
from ._retag import retag
from ._retrieve import HierarchyRetriever, ModelSource, model_file

# the ops dynamic quantization replaces, and what it replaces them with
_QUANTIZED_OPS = frozenset({"MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "MatMulNBits"})


@dataclasses.dataclass
class QuantizeResult:
    """The quantized model, tagged; per module (primary tag) the ops quantized and the float
    matrix products kept; the retag that tagged it."""

    model: ir.Model
    quantized: dict[str, int]
    kept: dict[str, int]
    retagged: RetagResult


def tags_matching(pattern: str, tags: Sequence[str]) -> list[str]:
    """The module tags a pattern names: ``*`` is any part of one path segment, ``**`` any
    number of segments (``/*/Block.0/**``: that block and its subtree)."""
    below = pattern.endswith("/**")  # the module and its subtree
    regex = ""
    for part in re.split(r"(\*\*/?|\*)", pattern[:-3] if below else pattern):
        if part.startswith("**"):
            regex += "(?:.*/)?" if part.endswith("/") else ".*"
        elif part == "*":
            regex += "[^/]*"
        else:
            regex += re.escape(part)
    compiled = re.compile(regex + ("(?:/.*)?$" if below else "$"))
    return [tag for tag in tags if compiled.match(tag)]


def quantize(
    export: ModelSource,
    output: str | Path | None = None,
    *,
    exclude: Sequence[str] = (),
    only: Sequence[str] = (),
) -> QuantizeResult:
    """Quantize a hiercompile export with ONNX Runtime's dynamic quantization (int8 weights,
    activations quantized at run time), leaving out the modules ``exclude`` names and, with
    ``only``, quantizing only the modules it names (tag patterns, see :func:`tags_matching`;
    a module stands for its subtree). A pattern that names no module is an :class:`InputError`.
    The result is tagged; ``output``: write it there.
    """
    from onnxruntime.quantization import quantize_dynamic

    retriever = HierarchyRetriever(export)
    modules = retriever.modules()
    chosen = {}
    for option, patterns in (("exclude", exclude), ("only", only)):
        names = set()
        for pattern in patterns:
            tags = tags_matching(pattern, modules)
            if not tags:
                raise InputError(
                    f"--{option} {pattern!r} names no module of the model; `hiercompile inspect` lists them "
                    f"(e.g. {modules[min(1, len(modules) - 1)]!r}; * is part of a segment, ** any segments)"
                )
            names |= {n for tag in tags for n in retriever.get_nodes_by_module(tag)}
        chosen[option] = sorted(names | {f"{n}_MatMul" for n in names})  # a Gemm is turned into a MatMul first
    source = model_file(Path(export)) if isinstance(export, str | Path) else None
    with tempfile.TemporaryDirectory() as tmp:
        src = source if source is not None else Path(tmp) / "model.onnx"
        if source is None:
            ir.save(retriever.model, str(src))
        quantized = Path(tmp) / "quantized.onnx"
        quantize_dynamic(
            str(src),
            str(quantized),
            nodes_to_exclude=chosen["exclude"],
            nodes_to_quantize=chosen["only"] or None,
        )
        result = retag(quantized, export)
    model = result.model
    counts: dict[str, collections.Counter] = {"quantized": collections.Counter(), "kept": collections.Counter()}
    for node in model.graph:
        tag = (get_tags(node) or ["(untagged)"])[0]
        if node.op_type in _QUANTIZED_OPS:
            counts["quantized"][tag] += 1
        elif node.op_type in ("MatMul", "Gemm", "Conv") and any(
            v is not None and v.is_initializer() for v in node.inputs[1:]
        ):
            counts["kept"][tag] += 1
    if output is not None:
        output = Path(output)
        write_files(output.parent, {output.name: onnx_writer(model)})
    return QuantizeResult(model, dict(counts["quantized"]), dict(counts["kept"]), result)
