"""``hiercompile.quantize``: ONNX Runtime's quantizers, with the precision chosen by module.

ONNX Runtime's quantizers take node *names* (``nodes_to_exclude``, ``nodes_to_quantize``),
which change with every exporter and optimizer version. Here modules are chosen by tag
pattern, resolved to the export's node names through the tags, and the quantized model is
tagged again (:func:`hiercompile.retag`), so the result says, per module, what was quantized.

Rules:

1. A pattern names module tags (:func:`tags_matching`); a module stands for its subtree.
2. Each op takes the precision of the most specific pattern naming one of its modules (the
   deepest module; between patterns naming the same one, the later), else the default.
3. Precisions: ``dynamic`` (int8 weights, activations quantized at run time), ``static``
   and ``qdq`` (int8 weights and activations, ranges measured on calibration inputs;
   quantized ops, or float ops between QuantizeLinear/DequantizeLinear), ``int4``
   (``MatMulNBits``, 4-bit weights in blocks of 32), ``fp16`` (float16 weights and compute,
   float32 inputs and outputs) and ``float`` (left as exported). Several in one model are
   applied int4, static, qdq, dynamic, fp16, each to its own ops.
4. A pattern that names no module is an error, and so is a precision not in rule 3.
"""

from __future__ import annotations

__all__ = [
    "FLOAT",
    "MODES",
    "STATIC",
    "WEIGHT_OPS",
    "Policy",
    "QuantizeResult",
    "apply",
    "quantize",
    "read_calibration",
    "tags_matching",
    "weight_dtypes",
]

import collections
import dataclasses
import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from .._errors import InputError
from .._io import onnx_writer, write_files
from .._logs import quiet_loggers
from ..passes import RetagResult, get_tags, is_under
from . import MODES
from ._retag import retag
from ._retrieve import HierarchyRetriever, ModelSource, model_file

STATIC = ("static", "qdq")  # the precisions that need calibration inputs
FLOAT = "float"
# ops whose weights a quantizer stores in another precision, and the dtypes it stores them in
WEIGHT_OPS = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose", "Gather"})
_LOW = frozenset({ir.DataType.INT8, ir.DataType.UINT8, ir.DataType.INT4, ir.DataType.UINT4, ir.DataType.FLOAT16})
_ORT_LOGGERS = ("", "onnxruntime.quantization.matmul_nbits_quantizer")  # advice printed at every call


@dataclasses.dataclass
class QuantizeResult:
    """The quantized model, tagged; per module (primary tag) the ops whose weights were
    quantized and the weighted ops kept in float; the precision each module's ops took;
    the retag that tagged it."""

    model: ir.Model
    quantized: dict[str, int]
    kept: dict[str, int]
    retagged: RetagResult
    modes: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Policy:
    """Precision by module: ``default`` for every op no pattern names, ``modules`` pattern ->
    precision (rules 1-3). Written and read as JSON (``{"default": ..., "modules": {...}}``)
    or the same keys in TOML."""

    default: str = "dynamic"
    modules: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for where, mode in (("default", self.default), *self.modules.items()):
            if mode not in (*MODES, FLOAT):
                raise InputError(
                    f"policy: {where} -> {mode!r} is no precision; use one of {', '.join((*MODES, FLOAT))}"
                )

    @classmethod
    def read(cls, path: str | Path) -> Policy:
        """A policy file: ``.toml`` as TOML (Python 3.11 or later), anything else as JSON."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"policy {path}: no such file; `hiercompile sensitivity ... --policy {path}` writes one")
        try:
            if path.suffix == ".toml":
                import tomllib

                data = tomllib.loads(path.read_text(encoding="utf-8"))
            else:
                data = json.loads(path.read_text(encoding="utf-8"))
        except ImportError as e:
            raise InputError(f"policy {path}: TOML needs Python 3.11 or later; write it as JSON") from e
        except ValueError as e:
            raise InputError(f"policy {path} cannot be read: {e}") from e
        if not isinstance(data, dict) or set(data) - {"default", "modules"}:
            raise InputError(f'policy {path}: expected the keys "default" and "modules" only')
        return cls(data.get("default", "dynamic"), dict(data.get("modules", {})))

    def to_json(self) -> dict:
        return {"default": self.default, "modules": dict(self.modules)}

    def assign(self, retriever: HierarchyRetriever) -> dict[str, str]:
        """Each op's precision by name (rule 2); a pattern naming no module is an :class:`InputError`."""
        modules = retriever.modules()
        named: dict[str, str] = {}  # tag -> precision, the later pattern winning
        for pattern, mode in self.modules.items():
            tags = tags_matching(pattern, modules)
            if not tags:
                raise _names_nothing("policy", pattern, modules)
            named.update(dict.fromkeys(tags, mode))
        chosen = {}
        for node in retriever.model.graph:
            tags = get_tags(node)
            holders = [tag for tag in named if tags and is_under(tags[0], tag)]
            chosen[node.name] = named[max(holders, key=lambda t: t.count("/"))] if holders else self.default
        return chosen


def _names_nothing(option: str, pattern: str, modules: list[str]) -> InputError:
    return InputError(
        f"{option} {pattern!r} names no module of the model; `hiercompile inspect` lists them "
        f"(e.g. {modules[min(1, len(modules) - 1)]!r}; * is part of a segment, ** any segments)"
    )


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
    mode: str | None = None,
    exclude: Sequence[str] = (),
    only: Sequence[str] = (),
    policy: Policy | str | Path | None = None,
    calibration: str | Path | Mapping[str, np.ndarray] | None = None,
    source: ModelSource | None = None,
) -> QuantizeResult:
    """Quantize a hiercompile export with ONNX Runtime's quantizers in ``mode`` (``dynamic``,
    the default, ``static``, ``qdq``, ``int4`` or ``fp16``: rule 3), leaving out the modules ``exclude`` names and, with
    ``only``, quantizing only the modules it names (tag patterns, see :func:`tags_matching`;
    a module stands for its subtree); or by a :class:`Policy` (or its file), which names a
    precision per module. A pattern that names no module is an :class:`InputError`.
    ``calibration`` (``static`` and ``qdq``): inputs like the real ones, ``{input name: array}``
    with samples along the first axis, or an ``.npz`` file of them. ``source``: the export
    ``export`` was made from by another tool (optimized): it is retagged from it first, and
    the patterns resolve through those tags. The result is tagged; ``output``: write it there.
    """
    samples = read_calibration(calibration) if calibration is not None else None
    if policy is not None:
        if mode is not None or exclude or only:
            raise InputError("a policy names the precision of each module; leave out mode, exclude and only")
        policy = policy if isinstance(policy, Policy) else Policy.read(policy)
    else:
        mode = mode or "dynamic"
        if mode not in MODES:
            raise InputError(f"mode {mode!r}: use one of {', '.join(MODES)}")
        policy = Policy(FLOAT if only else mode, {**dict.fromkeys(only, mode), **dict.fromkeys(exclude, FLOAT)})
    if source is not None:
        export = retag(export, source).model  # tagged from the export it was made from
    retriever = HierarchyRetriever(export)
    modules = retriever.modules()
    for option, patterns in (("--exclude", exclude), ("--only", only)):
        for pattern in patterns:
            if not tags_matching(pattern, modules):
                raise _names_nothing(option, pattern, modules)
    chosen = policy.assign(retriever)
    if samples is not None and not set(chosen.values()) & set(STATIC):
        raise InputError("calibration applies to static and qdq quantization, which no module takes; leave it out")
    path = model_file(Path(export)) if isinstance(export, str | Path) else None
    with tempfile.TemporaryDirectory() as tmp:
        src = path if path is not None else Path(tmp) / "model.onnx"
        if path is None:
            ir.save(retriever.model, str(src))
        quantized = Path(tmp) / "quantized.onnx"
        apply(src, quantized, chosen, samples)
        result = retag(quantized, export)
    quantized_ops, kept = _counts(result.model)
    modes = {}
    for node in retriever.model.graph:
        if node.op_type in WEIGHT_OPS and get_tags(node):
            modes.setdefault(get_tags(node)[0], set()).add(chosen[node.name])
    if output is not None:
        output = Path(output)
        write_files(output.parent, {output.name: onnx_writer(result.model)})
    return QuantizeResult(
        result.model, quantized_ops, kept, result, {tag: "+".join(sorted(m)) for tag, m in modes.items()}
    )


def apply(
    source: Path, target: Path, chosen: Mapping[str, str], calibration: Mapping[str, np.ndarray] | None = None
) -> None:
    """Quantize the model at ``source`` into ``target``, each node of ``chosen`` ({node name:
    precision}) in its precision (rule 3: int4, then static and qdq on ``calibration``, then
    dynamic, then fp16)."""
    by_mode: dict[str, set[str]] = collections.defaultdict(set)
    for name, mode in chosen.items():
        by_mode[mode].add(name)
    if any(by_mode[mode] for mode in STATIC) and calibration is None:
        raise InputError(
            "static and qdq quantization measure activation ranges on inputs like the real ones: pass "
            "calibration (--calibration FILE.npz: arrays named as the model's inputs, one sample per first-axis entry)"
        )
    model = onnx.load(str(source))
    with quiet_loggers(*_ORT_LOGGERS):
        if by_mode["int4"]:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            # nodes_to_include is not honoured by the default configuration: exclude the others
            others = [n.name for n in model.graph.node if n.name not in by_mode["int4"]]
            quantizer = MatMulNBitsQuantizer(model, block_size=32, is_symmetric=True, nodes_to_exclude=others)
            quantizer.process()
            model = quantizer.model.model
        for mode in STATIC:
            if by_mode[mode]:
                model = _static(model, target, by_mode[mode], mode, calibration)
        if by_mode["dynamic"]:
            from onnxruntime.quantization import quantize_dynamic

            staged = target.with_name("dynamic.onnx")
            onnx.save(model, str(staged))
            # a Gemm is turned into a MatMul named after it first
            names = sorted(by_mode["dynamic"] | {f"{n}_MatMul" for n in by_mode["dynamic"]})
            quantize_dynamic(str(staged), str(target), nodes_to_quantize=names)
            model = onnx.load(str(target))
        if by_mode["fp16"]:
            from onnxruntime.transformers.float16 import convert_float_to_float16

            blocked = [n.name for n in model.graph.node if n.name not in by_mode["fp16"]]
            model = convert_float_to_float16(model, keep_io_types=True, node_block_list=blocked)
    onnx.save(model, str(target))


def read_calibration(source: str | Path | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Calibration inputs: ``{input name: array}``, samples along the first axis (an ``.npz``
    file of such arrays, as ``numpy.savez`` writes it); every array holds the same number."""
    if not isinstance(source, Mapping):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"calibration {path}: no such file; write one with numpy.savez(path, input_name=samples)")
        with np.load(path) as data:
            source = {name: data[name] for name in data.files}
    counts = {name: len(array) for name, array in source.items()}
    if not counts or len(set(counts.values())) != 1:
        raise InputError(
            f"calibration: every input needs the same number of samples along its first axis, got {counts}"
        )
    return dict(source)


def _static(
    model: onnx.ModelProto, target: Path, nodes: set[str], mode: str, calibration: Mapping[str, np.ndarray]
) -> onnx.ModelProto:
    """ONNX Runtime's static quantization of ``nodes``: int8 weights and activations, the
    activations' ranges measured on ``calibration``; ``qdq`` keeps the float ops between
    QuantizeLinear/DequantizeLinear pairs, ``static`` makes quantized ops (QLinearMatMul)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Samples(CalibrationDataReader):
        def __init__(self) -> None:
            count = len(next(iter(calibration.values())))
            self.samples = iter([{name: array[k] for name, array in calibration.items()} for k in range(count)])

        def get_next(self) -> dict | None:
            return next(self.samples, None)

    staged = target.with_name(f"{mode}.onnx")
    onnx.save(model, str(staged))
    names = sorted(nodes | {f"{n}_MatMul" for n in nodes})
    fmt = QuantFormat.QDQ if mode == "qdq" else QuantFormat.QOperator
    quantize_static(str(staged), str(target), Samples(), quant_format=fmt, nodes_to_quantize=names)
    return onnx.load(str(target))


def weight_dtypes(node: ir.Node) -> list[ir.DataType]:
    """The dtypes of the weights ``node`` reads (initializers of two or more dims), directly or
    through the ``Cast`` or ``DequantizeLinear`` a tool put in front of it."""
    found = []
    for value in node.inputs:
        producer = value.producer() if value is not None else None
        if producer is not None and producer.op_type in ("Cast", "DequantizeLinear"):
            value = producer.inputs[0]
        if (
            value is not None
            and value.is_initializer()
            and value.const_value is not None
            and len(value.shape or ()) >= 2
        ):
            found.append(value.const_value.dtype)
    return found


def _counts(model: ir.Model) -> tuple[dict[str, int], dict[str, int]]:
    """Per primary tag: the ops that read a weight in a quantized precision, and the weighted
    ops that still read one in float32."""
    quantized: collections.Counter = collections.Counter()
    kept: collections.Counter = collections.Counter()
    for node in model.graph:
        if node.op_type in ("Cast", "DequantizeLinear"):
            continue
        weights = weight_dtypes(node)
        tag = (get_tags(node) or ["(untagged)"])[0]
        if any(dtype in _LOW for dtype in weights):
            quantized[tag] += 1
        elif node.op_type in WEIGHT_OPS and ir.DataType.FLOAT in weights:
            kept[tag] += 1
    return dict(quantized), dict(kept)
