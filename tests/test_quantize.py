"""``hiercompile.quantize``: ONNX Runtime's dynamic quantization, modules chosen by tag pattern."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
import torch
from hiercompile.passes import get_tags
from test_verify import Stack

import hiercompile
from hiercompile._ort import session
from hiercompile._tools._quantize import quantize, tags_matching

TAGS = ["/M", "/M/Layer.0", "/M/Layer.0/MLP", "/M/Layer.1", "/M/Layer.1/MLP", "/M/Head"]


def test_patterns_name_modules_by_their_tags():
    assert tags_matching("/M/Layer.0", TAGS) == ["/M/Layer.0"]
    assert tags_matching("/*/Layer.0/**", TAGS) == ["/M/Layer.0", "/M/Layer.0/MLP"]
    assert tags_matching("**/MLP", TAGS) == ["/M/Layer.0/MLP", "/M/Layer.1/MLP"]
    assert tags_matching("/M/Layer.*", TAGS) == ["/M/Layer.0", "/M/Layer.1"]
    assert tags_matching("/M/Layer", TAGS) == []


@pytest.fixture(scope="module")
def stack_export(tmp_path_factory):
    torch.manual_seed(0)
    model, x = Stack().eval(), torch.randn(2, 5, 16)
    out = tmp_path_factory.mktemp("stack")
    hiercompile.export(model, (x,), out)
    return model, x, out


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
    assert "/Stack/Block.0 │             0 │                     2" in printed.out
    assert "/Stack/Block.1 │             2 │                     0" in printed.out
    assert f"wrote {tmp_path / 'q.onnx'}: 4 ops quantized, tagged (100.0%)" in printed.err
    assert main(["quantize", str(out), str(out / "model.onnx")]) == 1  # the export's own file, without --force
    assert "error:" in capsys.readouterr().err
    assert main(["quantize", str(out), str(tmp_path / "r.onnx"), "--only", "/Nope"]) == 1
    assert "--only '/Nope' names no module" in capsys.readouterr().err
