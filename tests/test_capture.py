"""Capture: what torch.onnx.export sets up around torch.export is set up here too."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import run_onnx
from torch import nn

import hiercompile


class Encoder(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.rnn = getattr(nn, kind)(8, 16, num_layers=2, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y)


class Tagger(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.encoder = Encoder(kind)

    def forward(self, x):
        return self.encoder(x)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_rnn_with_a_dynamic_sequence_length_runs_at_other_lengths(tmp_path, kind):
    torch.manual_seed(0)
    model = Tagger(kind).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", hiercompile.CaptureWarning)  # no draft export, no advice to use torch.cond
        result = hiercompile.export(
            model, (torch.randn(2, 5, 8),), tmp_path / "m.onnx", dynamic_shapes=({0: "batch", 1: "seq"},)
        )
    assert result.coverage == 1.0
    assert {n.metadata_props["hiercompile.tag"] for n in result.model.graph if n.op_type == kind} == {"/Tagger/Encoder"}
    for shape in [(3, 9, 8), (1, 2, 8)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            want = model(x).numpy()
        (got,) = run_onnx(tmp_path / "m.onnx", {"x": x})
        np.testing.assert_allclose(got, want, atol=1e-5)
