"""The tools users run on an ONNX model before they deploy it, each as ``tool(src, dst)``.

ONNX Runtime's graph optimizer (saved optimized model, three levels), its transformer
optimizer, dynamic and static quantization, the shape-inference pre-processing,
onnxslim, onnxsim, float16 conversion, the opset converter and onnxscript's optimizer. Used by
``benchmarks/retag.py`` (the table in docs/deployment.md) and ``tests/test_retag.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

Tool = Callable[[Path, Path], None]


def wrong_makers(model: ir.Model, source: ir.Model) -> list[tuple[str, str, str]]:
    """Nodes of a retagged model (functions inlined) that make a value the flat ``source`` made,
    by name, and are not on that value's maker's module: (node, its module, the maker's). A
    fusion may carry the maker among its tags. Empty: every value maker on its module."""
    from hiercompile.passes import InlineFunctionsPass, get_tags

    makers = {v.name: get_tags(n)[0] for n in source.graph for v in n.outputs if v.name and get_tags(n)}
    model = ir.from_proto(ir.to_proto(model))  # a copy (a tool may leave the nodes out of order)
    InlineFunctionsPass()(model)
    return [
        (node.name, get_tags(node)[0], makers[value.name])
        for node in model.graph
        for value in node.outputs
        if value.name in makers
        and get_tags(node)
        and get_tags(node)[0] != makers[value.name]
        and not (len(get_tags(node)) > 1 and makers[value.name] in get_tags(node))
    ]


def value_makers(model: ir.Model, source: ir.Model) -> int:
    """How many nodes of a retagged model (functions inlined) make a value the flat ``source`` made, by name."""
    from hiercompile.passes import InlineFunctionsPass, get_tags

    names = {v.name for n in source.graph for v in n.outputs if v.name and get_tags(n)}
    model = ir.from_proto(ir.to_proto(model))
    InlineFunctionsPass()(model)
    return sum(v.name in names for n in model.graph if get_tags(n) for v in n.outputs)


def _ort_optimized(level: str) -> Tool:
    def run(src: Path, dst: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{level}")
        options.optimized_model_filepath = str(dst)
        options.log_severity_level = 3
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])

    return run


def _transformers_optimizer(opt_level: int | None) -> Tool:
    def run(src: Path, dst: Path) -> None:
        from onnxruntime.transformers.optimizer import optimize_model

        kwargs = {} if opt_level is None else {"opt_level": opt_level}
        optimize_model(str(src), model_type="bert", num_heads=0, hidden_size=0, **kwargs).save_model_to_file(str(dst))

    return run


def _quantize_dynamic(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(src), str(dst))


def _pre_process_then_quantize(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    staged = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(staged))
    quantize_dynamic(str(staged), str(dst))
    staged.unlink()


def _quantize_static(src: Path, dst: Path) -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    session = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)

    def sample(arg) -> np.ndarray:
        shape = [d if isinstance(d, int) else 2 for d in arg.shape]
        if "int" in arg.type:
            dtype = np.int64 if "64" in arg.type else np.int32
            return rng.integers(0, 2, shape).astype(dtype)  # valid ids, mask values and token types alike
        return rng.standard_normal(shape).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{a.name: sample(a) for a in session.get_inputs()} for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(src), str(dst), Reader())


def _onnxslim(src: Path, dst: Path) -> None:
    import onnxslim

    onnxslim.slim(str(src), str(dst))


def _onnxsim(src: Path, dst: Path) -> None:
    import onnxsim

    simplified, ok = onnxsim.simplify(onnx.load(str(src)))
    assert ok, "onnxsim could not check its result"
    onnx.save(simplified, str(dst))


def _float16(src: Path, dst: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))


def _version_converter(src: Path, dst: Path) -> None:
    onnx.save(onnx.version_converter.convert_version(onnx.load(str(src)), 21), str(dst))


def _onnxscript_optimize(src: Path, dst: Path) -> None:
    import onnx_ir as ir
    import onnxscript

    model = ir.load(str(src))
    onnxscript.optimizer.optimize(model)
    ir.save(model, str(dst))


TOOLS: dict[str, Tool] = {
    "ORT optimized, BASIC": _ort_optimized("BASIC"),
    "ORT optimized, EXTENDED": _ort_optimized("EXTENDED"),
    "ORT optimized, ALL": _ort_optimized("ALL"),
    "onnxruntime.transformers.optimizer (bert)": _transformers_optimizer(None),
    "onnxruntime.transformers.optimizer, opt_level=0": _transformers_optimizer(0),
    "quantize_dynamic": _quantize_dynamic,
    "quant_pre_process, then quantize_dynamic": _pre_process_then_quantize,
    "quantize_static (calibration reader)": _quantize_static,
    "onnxslim": _onnxslim,
    "onnxsim": _onnxsim,
    "float16 (keep_io_types)": _float16,
    "onnx.version_converter to opset 21": _version_converter,
    "onnxscript optimize, again": _onnxscript_optimize,
}
TEXT_ONLY = {"onnxruntime.transformers.optimizer (bert)", "onnxruntime.transformers.optimizer, opt_level=0"}

# (model, form, tool) -> why retag cannot reach 99% there: the table says so, the test holds it
KNOWN_GAPS: dict[tuple[str, str, str], str] = {
    ("mobilenet", "functions", "ORT optimized, ALL"): (
        "the blocked layout (NCHWc) of inlined function bodies: reordered weights and values named by the tool alone"
    ),
    ("mobilenet", "functions", "quant_pre_process, then quantize_dynamic"): (
        "quantized ops of inlined bodies named after body values that repeat in every instance"
    ),
}
