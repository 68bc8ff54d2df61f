"""Extracted modules are valid models that reproduce the module's PyTorch output from its PyTorch inputs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hiercompile.passes import HIERARCHY_KEY, is_under

from hiercompile import QueryError, extract
from hiercompile._tools._verify import _tensors


def hooked_io(model, module, inputs):
    """The tensors ``module`` received (positional and keyword) and returned during ``model(**inputs)``."""
    seen = {}

    def hook(_m, args, kwargs, out):
        seen.setdefault("io", (_tensors(list(args)) + _tensors(kwargs), _tensors(out)))

    handle = module.register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        model(**inputs)
    handle.remove()
    return seen["io"]


def run_extracted(path, received):
    """Feed each graph input the received tensor of the same shape and dtype."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {}
    for graph_input in session.get_inputs():
        dtype = {"tensor(float)": np.float32, "tensor(bool)": np.bool_, "tensor(int64)": np.int64}[graph_input.type]
        matches = [
            t.numpy() for t in received if tuple(t.shape) == tuple(graph_input.shape) and t.numpy().dtype == dtype
        ]
        assert matches, f"no PyTorch input fits {graph_input.name} {graph_input.shape} {graph_input.type}"
        feeds[graph_input.name] = matches[0]
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))


@pytest.mark.parametrize(
    ("tag", "path"),
    [
        ("/BertModel/BertEncoder/BertLayer.0/BertAttention", "encoder.layer.0.attention"),
        ("/BertModel/BertEncoder/BertLayer.1", "encoder.layer.1"),
    ],
)
def test_extracted_bert_modules_reproduce_pytorch(bert_export, tmp_path, tag, path):
    model, inputs, _, out = bert_export
    target = tmp_path / "module.onnx"
    extract(out / "model.onnx", tag, target)
    proto = onnx.load(target)
    onnx.checker.check_model(proto, full_check=True)
    assert not [i for i in proto.graph.input if i.name in {t.name for t in proto.graph.initializer}]
    hierarchy = json.loads({p.key: p.value for p in proto.metadata_props}[HIERARCHY_KEY])
    assert all(is_under(t, tag) for t in hierarchy) and hierarchy[tag]["parent"] is None
    padded = {**inputs, "attention_mask": inputs["attention_mask"].clone()}
    padded["attention_mask"][0, -3:] = 0  # with padding, PyTorch hands the modules a real mask tensor
    received, returned = hooked_io(model, model.get_submodule(path), padded)
    got = run_extracted(target, received)
    expected = returned[0].numpy()
    best = min(float(np.abs(v - expected).max()) for v in got.values() if v.shape == expected.shape)
    assert best <= 1e-4


def test_layer_targeting_is_explicit(bert_export):
    *_, out = bert_export
    layer0 = extract(out / "model.onnx", "/BertModel/BertEncoder/BertLayer.0")
    layer1 = extract(out / "model.onnx", "/BertModel/BertEncoder/BertLayer.1")
    inits0 = set(layer0.graph.initializers)
    assert any(n.startswith("encoder.layer.0.") for n in inits0)
    assert not any(n.startswith("encoder.layer.1.") for n in inits0)
    assert any(n.startswith("encoder.layer.1.") for n in layer1.graph.initializers)
    with pytest.raises(QueryError, match="closest"):
        extract(out / "model.onnx", "/BertModel/BertEncoder/BertLayer")


@pytest.mark.slow
def test_vision_block(tmp_path):
    from transformers import ViTConfig, ViTModel

    import hiercompile

    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    model = ViTModel(config).eval()
    inputs = {"pixel_values": torch.randn(1, 3, 32, 32)}
    hiercompile.export(model, (), tmp_path / "vit", kwargs=inputs)
    block = next(m for m in model.modules() if type(m).__name__ == "ViTLayer")
    (tag,) = [info.tag for info in hiercompile.ModuleHierarchy(model) if info.module is block]
    extract(tmp_path / "vit" / "model.onnx", tag, tmp_path / "block.onnx")
    onnx.checker.check_model(onnx.load(tmp_path / "block.onnx"), full_check=True)
    received, returned = hooked_io(model, block, inputs)
    got = run_extracted(tmp_path / "block.onnx", received)
    expected = returned[0].numpy()
    assert min(float(np.abs(v - expected).max()) for v in got.values() if v.shape == expected.shape) <= 1e-4
