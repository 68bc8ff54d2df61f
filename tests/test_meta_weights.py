from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
import torch
from conftest import run_ir
from hiercompile.passes import MetaWeightsPass

from hiercompile._exporter._weights import read_safetensors

TEXT = """
<ir_version: 10, opset_import: ["" : 20]>
g (float[2, 3] x) => (float[2, 4] y, float[2, 4] z)
    <float[4, 3] w = {0,0,0,0,0,0,0,0,0,0,0,0}, float[4] b = {0,0,0,0}, float[4, 3] tied = {0,0,0,0,0,0,0,0,0,0,0,0}> {
    wt = Transpose <perm: ints = [1, 0]> (w)
    xw = MatMul (x, wt)
    y = Add (xw, b)
    tt = Transpose <perm: ints = [1, 0]> (tied)
    t2 = Transpose <perm: ints = [1, 0]> (tied)
    a = MatMul (x, tt)
    c = MatMul (x, t2)
    z = Add (a, c)
}
"""


@pytest.fixture
def checkpoint(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    weights = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in [("w", (4, 3)), ("b", (4,))]}
    weights["tied"] = rng.standard_normal((4, 3)).astype(np.float32)
    save_file({"w": weights["w"], "b": weights["b"]}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({"tied": weights["tied"]}, tmp_path / "model-00002-of-00002.safetensors")
    return tmp_path, weights


def _model() -> ir.Model:
    return ir.from_onnx_text(TEXT)  # the weights are zeros until the pass gives them their values


def test_weights_take_their_values_and_a_transpose_is_folded_lazily(checkpoint, tmp_path):
    folder, weights = checkpoint
    model = _model()
    values = read_safetensors(folder)
    assert {n: (t.dtype, tuple(t.shape)) for n, t in values.items()} == {
        "w": (ir.DataType.FLOAT, (4, 3)),
        "b": (ir.DataType.FLOAT, (4,)),
        "tied": (ir.DataType.FLOAT, (4, 3)),
    }
    assert MetaWeightsPass(values)(model).modified
    ops = [n.op_type for n in model.graph]
    assert ops.count("Transpose") == 2  # the tied weight's two transposes stay: it has two users
    assert "w" not in model.graph.initializers  # w's only use was its transpose, now a weight of its own
    folded = model.graph.node(0).inputs[1]  # MatMul(x, w transposed)
    assert isinstance(folded.const_value, ir.LazyTensor) and tuple(folded.const_value.shape) == (3, 4)
    np.testing.assert_array_equal(folded.const_value.numpy(), weights["w"].T)
    ir.save(model, tmp_path / "out.onnx", external_data="out.onnx.data")  # copied from the files
    reloaded = ir.load(tmp_path / "out.onnx")
    np.testing.assert_array_equal(reloaded.graph.initializers["b"].const_value.numpy(), weights["b"])
    x = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    y, z = run_ir(ir.external_data.load_to_model(reloaded), {"x": x})
    np.testing.assert_allclose(y, x @ weights["w"].T + weights["b"], rtol=1e-6)
    np.testing.assert_allclose(z, 2 * x @ weights["tied"].T, rtol=1e-6)


def test_a_value_of_another_shape_is_refused(checkpoint):
    folder, _ = checkpoint
    values = read_safetensors(folder)
    with pytest.raises(ValueError, match=r"w is FLOAT \(4, 3\) in the model, FLOAT \(4,\) in the values given"):
        MetaWeightsPass({"w": values["b"]})(_model())


def test_an_initializer_left_on_the_meta_device_is_named():
    from torch.onnx._internal.exporter._core import TorchTensor

    model = _model()
    model.graph.initializers["b"].const_value = TorchTensor(torch.empty(4, device="meta"), name="b")
    with pytest.raises(ValueError, match=r"1 initializers have no data \(b\)"):
        MetaWeightsPass({})(model)
