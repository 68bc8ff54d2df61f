"""Dynamic shapes, external data through every reader, checkpoint directories."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from conftest import check_spec, run_onnx

import hiercompile
from hiercompile import InputError
from hiercompile._cli import main
from hiercompile._hf._models import dynamic_shapes_for, example_inputs


@pytest.mark.slow
def test_dynamic_batch_and_sequence(bert_tiny, bert_export, tmp_path):
    *_, static, _ = bert_export
    inputs = example_inputs(bert_tiny, batch=2, seq_len=8)
    result = hiercompile.export(
        bert_tiny, (), tmp_path, kwargs=inputs, dynamic_shapes=dynamic_shapes_for(inputs, ["batch", "seq"])
    )
    check_spec(tmp_path / "model.onnx", tmp_path)
    graph_input = onnx.load(tmp_path / "model.onnx").graph.input[0]
    assert [d.dim_param != "" for d in graph_input.type.tensor_type.shape.dim] == [True, True]
    for batch, seq in [(3, 5), (1, 19)]:
        feeds = example_inputs(bert_tiny, batch=batch, seq_len=seq)
        with torch.no_grad():
            want = bert_tiny(**feeds).last_hidden_state.numpy()
        np.testing.assert_allclose(run_onnx(tmp_path / "model.onnx", feeds)[0], want, atol=1e-4)
    assert set(result.hierarchy) == set(static.hierarchy)
    owners = {t for t, e in result.hierarchy.items() if e["num_ops"]}
    assert owners == {t for t, e in static.hierarchy.items() if e["num_ops"]}
    with pytest.raises(InputError, match="unknown dynamic axes"):
        dynamic_shapes_for(inputs, ["time"])


def test_image_height_and_width_on_request():
    from torch import nn

    class Convs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, pixel_values):
            return self.conv(pixel_values).mean(dim=(2, 3))

    inputs = {"pixel_values": torch.randn(2, 3, 8, 8)}
    shapes = dynamic_shapes_for(inputs, ["batch", "height", "width"])
    result = hiercompile.export(Convs().eval(), kwargs=inputs, dynamic_shapes=shapes)
    assert [str(d) for d in result.model.graph.inputs[0].shape] == ["batch", "3", "height", "width"]
    from conftest import run_ir

    (got,) = run_ir(result.model, {"pixel_values": np.ones((1, 3, 5, 7), dtype=np.float32)})
    assert got.shape == (1, 4)


@pytest.mark.slow
def test_forced_external_data_round_trips_through_every_reader(bert_tiny, tmp_path):
    out = tmp_path / "out"
    assert main(["export", "bert-tiny", str(out), "--external-data", "--functions", "--seq-len", "8"]) == 0
    assert (out / "model.onnx.data").is_file() and (out / "model.functions.onnx.data").is_file()
    assert (out / "model.onnx").stat().st_size < 1_000_000  # the weights are not inside
    check_spec(out / "model.onnx", out)
    check_spec(out / "model.functions.onnx")
    retriever = hiercompile.HierarchyRetriever(out / "model.onnx")
    assert "pooler.dense.weight" in retriever.parameters_of("/BertModel/BertPooler")
    assert hiercompile.HierarchyRetriever(out / "model.functions.onnx").modules() == retriever.modules()
    extracted = hiercompile.extract(out / "model.onnx", "/BertModel/BertPooler", tmp_path / "pooler.onnx")
    assert "pooler.dense.weight" in extracted.graph.initializers
    onnx.checker.check_model(onnx.load(tmp_path / "pooler.onnx"), full_check=True)
    assert main(["functionize", str(out / "model.onnx"), str(tmp_path / "f.onnx")]) == 0
    check_spec(tmp_path / "f.onnx")
    inputs = example_inputs(bert_tiny, seq_len=8)
    assert hiercompile.verify(bert_tiny, (), inputs, out / "model.onnx").ok
    flat = hiercompile.profile(out / "model.onnx", runs=2)
    functions = hiercompile.profile(out / "model.functions.onnx", runs=2)
    assert {m.tag: m.ops for m in flat.modules} == {m.tag: m.ops for m in functions.modules}
    assert flat.kernels > 0
