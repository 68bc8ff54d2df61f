"""``hiercompile.quantize`` and ``sensitivity``: ONNX Runtime's quantizers, the precision chosen by module."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx_ir as ir
import pytest
import torch
from conftest import llama_checkpoint
from hiercompile.passes import get_tags
from test_verify import Stack

import hiercompile
from hiercompile._ort import session
from hiercompile._tools._quantize import Policy, quantize, tags_matching, weight_dtypes
from hiercompile._tools._sensitivity import sensitivity

TAGS = ["/M", "/M/Layer.0", "/M/Layer.0/MLP", "/M/Layer.1", "/M/Layer.1/MLP", "/M/Head"]


def test_patterns_name_modules_by_their_tags():
    assert tags_matching("/M/Layer.0", TAGS) == ["/M/Layer.0"]
    assert tags_matching("/*/Layer.0/**", TAGS) == ["/M/Layer.0", "/M/Layer.0/MLP"]
    assert tags_matching("**/MLP", TAGS) == ["/M/Layer.0/MLP", "/M/Layer.1/MLP"]
    assert tags_matching("/M/Layer.*", TAGS) == ["/M/Layer.0", "/M/Layer.1"]
    assert tags_matching("/M/Layer", TAGS) == []


def _ops(result, kind: str) -> dict[str, str]:
    """Matrix products by the block they are in: their op type."""
    return {
        f"{get_tags(n)[0]}#{k}": n.op_type
        for k, n in enumerate(result.model.graph)
        if n.op_type in ("MatMul", "MatMulInteger") and get_tags(n)[0].startswith(kind)
    }


def test_an_excluded_module_keeps_exactly_its_matmuls_in_float(stack_export, tmp_path):
    model, x, out = stack_export
    result = quantize(out, tmp_path / "q.onnx", exclude=["/Stack/Block.1"])
    for block in ("/Stack/Block.0", "/Stack/Block.2"):
        assert set(_ops(result, block).values()) == {"MatMulInteger"}, block
        assert result.quantized[block] == 2 and block not in result.kept
    assert set(_ops(result, "/Stack/Block.1").values()) == {"MatMul"}
    assert result.kept == {"/Stack/Block.1": 2} and "/Stack/Block.1" not in result.quantized
    float_weights = [
        v.const_value.dtype
        for n in result.model.graph
        if n.op_type == "MatMul" and get_tags(n)[0] == "/Stack/Block.1"
        for v in n.inputs[1:]
        if v is not None and v.is_initializer()
    ]
    assert float_weights and all(d == ir.DataType.FLOAT for d in float_weights)
    assert result.retagged.coverage == 1.0 and (tmp_path / "q.onnx").is_file()
    # the excluded block adds no error of its own; the quantized ones do
    report = hiercompile.verify(model, (x,), onnx_model=tmp_path / "q.onnx", source=out)
    checks = report.by_tag()
    assert report.first_divergence == "/Stack/Block.0"
    assert checks["/Stack/Block.1"].status == "inherited" and checks["/Stack/Block.1"].own_abs_diff < 1e-5


def test_only_quantizes_the_modules_named_and_a_pattern_naming_nothing_is_an_error(stack_export, tmp_path):
    model, x, out = stack_export
    result = quantize(out, only=["**/Block.2"])
    assert result.quantized == {"/Stack/Block.2": 2}
    assert result.kept == {"/Stack/Block.0": 2, "/Stack/Block.1": 2}
    with torch.no_grad():
        want = model(x).numpy()
    got = session(result.model).run(None, {"x": x.numpy()})[0]
    assert np.abs(got - want).max() < 0.1  # int8 weights in one block: close, not equal
    with pytest.raises(hiercompile.InputError, match=r"--exclude '/Stack/Block.7' names no module"):
        quantize(out, exclude=["/Stack/Block.7"])


def test_quantize_command(stack_export, tmp_path, capsys):
    from hiercompile._cli import main

    _, _, out = stack_export
    assert main(["quantize", str(out), str(tmp_path / "q.onnx"), "--exclude", "**/Block.0"]) == 0
    printed = capsys.readouterr()
    assert re.search(r"/Stack/Block.0 │ float\s+│\s+0 │\s+2 │", printed.out)
    assert re.search(r"/Stack/Block.1 │ dynamic\s+│\s+2 │\s+0 │", printed.out)
    assert f"wrote {tmp_path / 'q.onnx'}: 4 ops quantized, tagged (100.0%)" in printed.err
    assert main(["quantize", str(out), str(out / "model.onnx")]) == 1  # the export's own file, without --force
    assert "error:" in capsys.readouterr().err
    assert main(["quantize", str(out), str(tmp_path / "r.onnx"), "--only", "/Nope"]) == 1
    assert "--only '/Nope' names no module" in capsys.readouterr().err


def _weights_by_block(result) -> dict[str, set]:
    """Per block: the op types of its weighted ops and the dtypes of the weights they read (int4
    weights come with float scales)."""
    found: dict[str, set] = {}
    for node in result.model.graph:
        dtypes = weight_dtypes(node)
        if dtypes and node.op_type not in ("Cast", "DequantizeLinear"):
            found.setdefault(get_tags(node)[0], set()).update({node.op_type, *dtypes})
    return found


@pytest.mark.parametrize(
    ("mode", "quantized", "atol"),
    [
        ("int4", {"MatMulNBits", ir.DataType.UINT8, ir.DataType.FLOAT}, 0.5),
        ("fp16", {"MatMul", ir.DataType.FLOAT16}, 1e-2),
    ],
)
def test_int4_and_fp16_keep_an_excluded_module_in_float(stack_export, tmp_path, mode, quantized, atol):
    model, x, out = stack_export
    result = quantize(out, tmp_path / "q.onnx", mode=mode, exclude=["/Stack/Block.1"])
    blocks = _weights_by_block(result)
    assert blocks["/Stack/Block.0"] == blocks["/Stack/Block.2"] == quantized
    assert blocks["/Stack/Block.1"] == {"MatMul", ir.DataType.FLOAT}  # its weights as exported
    assert result.kept == {"/Stack/Block.1": 2} and result.retagged.coverage == 1.0
    assert result.modes == {"/Stack/Block.0": mode, "/Stack/Block.1": "float", "/Stack/Block.2": mode}
    with torch.no_grad():
        want = model(x).numpy()
    got = session(tmp_path / "q.onnx").run(None, {"x": x.numpy()})[0]
    assert 0 < np.abs(got - want).max() < atol
    if mode == "int4":  # with fp16 neighbours, a float module's inputs arrive rounded to fp16 (counted as its own)
        checks = hiercompile.verify(model, (x,), onnx_model=tmp_path / "q.onnx", source=out).by_tag()
        assert checks["/Stack/Block.1"].own_abs_diff < 1e-5 < checks["/Stack/Block.0"].own_abs_diff


def test_a_policy_gives_each_module_the_precision_of_its_most_specific_pattern(stack_export, tmp_path):
    _, x, out = stack_export
    policy = {
        "default": "dynamic",
        "modules": {"/Stack/**": "int4", "/Stack/Block.1": "float", "**/Block.2": "fp16"},
    }
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    (tmp_path / "policy.toml").write_text(
        'default = "dynamic"\n[modules]\n"/Stack/**" = "int4"\n"/Stack/Block.1" = "float"\n"**/Block.2" = "fp16"\n'
    )
    for path in ("policy.json", "policy.toml"):
        result = quantize(out, policy=tmp_path / path)
        blocks = _weights_by_block(result)
        assert blocks["/Stack/Block.0"] == {"MatMulNBits", ir.DataType.UINT8, ir.DataType.FLOAT}, path
        assert blocks["/Stack/Block.1"] == {"MatMul", ir.DataType.FLOAT}, path
        assert blocks["/Stack/Block.2"] == {"MatMul", ir.DataType.FLOAT16}, path
        assert session(result.model).run(None, {"x": x.numpy()})[0].shape == (2, 5, 16)
    assert Policy.read(tmp_path / "policy.json") == Policy(policy["default"], policy["modules"])
    with pytest.raises(hiercompile.InputError, match=r"policy '/Stack/Block.9' names no module"):
        quantize(out, policy=Policy("dynamic", {"/Stack/Block.9": "float"}))
    with pytest.raises(hiercompile.InputError, match=r"'int3' is no precision"):
        Policy("dynamic", {"/Stack/Block.0": "int3"})
    with pytest.raises(hiercompile.InputError, match="leave out mode, exclude and only"):
        quantize(out, mode="int4", policy=tmp_path / "policy.json")
    with pytest.raises(hiercompile.InputError, match="no such file"):
        quantize(out, policy=tmp_path / "absent.json")


class Convs(torch.nn.Module):
    """A vision stack: a convolution per block."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.Hardswish()) for _ in range(3)
        )

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_an_excluded_convolution_stays_float(tmp_path):
    torch.manual_seed(0)
    model, x = Convs().eval(), torch.randn(1, 8, 12, 12)
    hiercompile.export(model, (x,), tmp_path / "export", keep=lambda m: m is model or type(m) is torch.nn.Sequential)
    result = quantize(tmp_path / "export", exclude=["/Convs/Sequential.1"])
    blocks = _weights_by_block(result)
    assert blocks["/Convs/Sequential.0"] == blocks["/Convs/Sequential.2"] == {"ConvInteger", ir.DataType.INT8}
    assert blocks["/Convs/Sequential.1"] == {"Conv", ir.DataType.FLOAT}
    with torch.no_grad():
        want = model(x).numpy()
    assert np.abs(session(result.model).run(None, {"x": x.numpy()})[0] - want).max() < 0.1


@pytest.fixture(scope="module")
def fragile_export(tmp_path_factory):
    """Block.1 of the stack made fragile: one weight 60, so int8 with one scale per tensor rounds
    the rest of that weight to a few levels."""
    torch.manual_seed(0)
    model, x = Stack().eval(), torch.randn(2, 5, 16)
    with torch.no_grad():
        model.blocks[1].up.weight[0, 0] = 60.0
    out = tmp_path_factory.mktemp("fragile")
    hiercompile.export(model, (x,), out)
    return model, x, out


@pytest.mark.parametrize("depth", [None, 1])
def test_sensitivity_finds_the_fragile_module_and_its_policy_meets_the_tolerance(fragile_export, tmp_path, depth):
    model, x, out = fragile_export
    seen = []
    report = sensitivity(
        out, depth=depth, atol=0.1, policy=tmp_path / "policy.json", progress=lambda *a: seen.append(a[:3])
    )
    assert report.modules[0].tag == "/Stack/Block.1"
    assert {row.tag for row in report.modules} == {f"/Stack/Block.{k}" for k in range(3)}
    assert all(row.ops == 2 for row in report.modules)
    assert report.modules[0].max_abs_diff > 4 * report.modules[1].max_abs_diff
    assert report.all_quantized[0] > 0.1 >= report.policy_error[0]
    assert report.policy == Policy(
        "float", {"/Stack/Block.1": "float", "/Stack/Block.2": "dynamic", "/Stack/Block.0": "dynamic"}
    )
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)] and report.runs == 3 + 1 + 1
    assert json.loads((tmp_path / "policy.json").read_text()) == report.policy.to_json()
    # the policy written is the one measured: quantized by it, the model meets the tolerance against PyTorch
    result = quantize(out, policy=tmp_path / "policy.json")
    with torch.no_grad():
        want = model(x).numpy()
    assert np.abs(session(result.model).run(None, {"x": x.numpy()})[0] - want).max() <= 0.1 + 1e-5
    assert result.kept == {"/Stack/Block.1": 2}


def test_sensitivity_command(fragile_export, tmp_path, capsys):
    from hiercompile._cli import main

    _, _, out = fragile_export
    policy = tmp_path / "p.json"
    nd = tmp_path / "nd.json"
    assert main(["sensitivity", str(out), "--atol", "0.1", "--policy", str(policy), "--node-data", str(nd)]) == 0
    printed = capsys.readouterr()
    results = json.loads(nd.read_text())["main_graph"]["results"]
    worst = max(results, key=lambda name: results[name]["value"])
    assert worst.startswith("/blocks.1/") and "Model Explorer node data" in printed.err
    rows = [line for line in printed.out.splitlines() if "/Stack/Block" in line]
    assert rows[0].startswith("│ /Stack/Block.1") and len(rows) == 3
    assert "[3/3] /Stack/Block." in printed.err and "keeping 1 of 3 modules in float" in printed.err
    modules = json.loads(policy.read_text())["modules"]
    assert modules == {"/Stack/Block.0": "dynamic", "/Stack/Block.1": "float", "/Stack/Block.2": "dynamic"}
    assert main(["quantize", str(out), str(tmp_path / "q.onnx"), "--policy", str(policy)]) == 0
    assert re.search(r"/Stack/Block.1 │ float", capsys.readouterr().out)
    assert main(["sensitivity", str(out), "--policy", str(tmp_path / "r.json")]) == 1
    assert (
        "error: --policy writes the modules to keep in float until the output meets --atol" in capsys.readouterr().err
    )


@pytest.fixture(scope="module")
def decoder_export(tmp_path_factory):
    """A decoder with its cache (text-generation-with-past), as the command exports it."""
    folder = tmp_path_factory.mktemp("decoder")
    llama_checkpoint(folder / "checkpoint")
    hiercompile.export_pretrained(str(folder / "checkpoint"), folder / "out")
    return folder / "out"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dynamic", "int4", "fp16"])
def test_a_decoder_with_its_cache_keeps_an_excluded_block_in_float(decoder_export, mode):
    from hiercompile._tools._profile import example_feeds

    result = quantize(decoder_export, mode=mode, exclude=["**/LlamaDecoderLayer.1/**"])
    layer = "/LlamaForCausalLM/LlamaModel/LlamaDecoderLayer"
    assert {t: n for t, n in result.kept.items() if t.startswith(layer)} == {
        f"{layer}.1/LlamaAttention": 4,
        f"{layer}.1/LlamaMLP": 3,
    }
    assert result.quantized[f"{layer}.0/LlamaAttention"] == 4 and result.quantized[f"{layer}.0/LlamaMLP"] == 3
    assert result.retagged.coverage == 1.0
    reference = session(decoder_export / "model.onnx")
    feeds = example_feeds(reference, {}, 2)  # a cache of 2 positions and 2 new tokens
    want = reference.run(["logits"], feeds)[0].ravel()
    got = session(result.model).run(["logits"], feeds)[0].ravel()
    assert np.dot(want, got) / np.linalg.norm(want) / np.linalg.norm(got) > 0.98


@pytest.mark.slow
def test_sensitivity_on_a_decoder_meets_its_tolerance(decoder_export):
    report = sensitivity(decoder_export, mode="int4", depth=3, min_cosine=0.999)
    layer = "/LlamaForCausalLM/LlamaModel/LlamaDecoderLayer"
    assert {row.tag for row in report.modules} == {
        f"{layer}.{k}/{m}" for k in (0, 1) for m in ("LlamaAttention", "LlamaMLP")
    }
    assert report.policy_error[1] >= 0.999 > report.all_quantized[1]
    kept = [tag for tag, mode in report.policy.modules.items() if mode == "float"]
    assert kept == [row.tag for row in report.modules[: len(kept)]]  # the worst first


@pytest.mark.parametrize(("mode", "quantized_op"), [("static", "QLinearMatMul"), ("qdq", "MatMul")])
def test_static_and_qdq_calibrate_on_the_samples_given_and_keep_an_excluded_module_float(
    stack_export, tmp_path, mode, quantized_op
):
    model, x, out = stack_export
    samples = np.random.default_rng(0).standard_normal((8, 2, 5, 16)).astype(np.float32)
    np.savez(tmp_path / "calibration.npz", x=samples)
    result = quantize(out, mode=mode, exclude=["/Stack/Block.1"], calibration=tmp_path / "calibration.npz")
    blocks = _weights_by_block(result)
    assert blocks["/Stack/Block.0"] == blocks["/Stack/Block.2"] == {quantized_op, ir.DataType.INT8}
    assert blocks["/Stack/Block.1"] == {"MatMul", ir.DataType.FLOAT}
    assert result.kept == {"/Stack/Block.1": 2} and result.retagged.coverage == 1.0
    with torch.no_grad():
        want = model(x).numpy()
    assert 0 < np.abs(session(result.model).run(None, {"x": x.numpy()})[0] - want).max() < 0.2
    with pytest.raises(hiercompile.InputError, match="pass calibration"):
        quantize(out, mode=mode)
    with pytest.raises(hiercompile.InputError, match="calibration applies to static and qdq"):
        quantize(out, mode="dynamic", calibration=tmp_path / "calibration.npz")  # never silently ignored
    with pytest.raises(hiercompile.InputError, match="calibration applies to static and qdq"):
        sensitivity(out, mode="int4", calibration=tmp_path / "calibration.npz")
    np.savez(tmp_path / "uneven.npz", x=samples, y=samples[:3])
    with pytest.raises(hiercompile.InputError, match="the same number of samples"):
        quantize(out, mode=mode, calibration=tmp_path / "uneven.npz")


def test_each_module_tried_alone_reports_the_error_its_own_ops_make(fragile_export):
    """With every other module in float, the values leaving a module differ by its own ops
    alone: the fragile block's are far off, and a block after it, alone, adds little."""
    _, _, out = fragile_export
    report = sensitivity(out)
    own = {row.tag: row.own_abs_diff for row in report.modules}
    assert own["/Stack/Block.1"] > 10 * max(own["/Stack/Block.0"], own["/Stack/Block.2"])
    assert all(value is not None and value > 0 for value in own.values())


def test_an_encoder_after_onnx_runtime_quantized_by_pattern_through_its_retagged_tags(bert_export, tmp_path):
    """An encoder the optimizer already rewrote (MatMul+Add into Gemm, LayerNorm fusions): the
    patterns resolve through the tags retag gives it, and the excluded layer keeps float weights."""
    import onnxruntime as ort

    *_, out = bert_export
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(out / "model.onnx"), options, providers=["CPUExecutionProvider"])
    result = quantize(tmp_path / "optimized.onnx", exclude=["**/BertLayer.1/**"], source=out)
    layer = "/BertModel/BertEncoder/BertLayer"
    kept = {tag for tag in result.kept if tag.startswith(layer)}
    quantized = {tag for tag in result.quantized if tag.startswith(layer)}
    assert kept and all(tag.startswith(f"{layer}.1/") for tag in kept)
    assert quantized and all(tag.startswith(f"{layer}.0/") for tag in quantized)
    assert result.retagged.coverage == 1.0
