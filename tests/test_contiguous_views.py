"""ContiguousViewsPass: a view whose strides the exporter's decompositions change still lowers."""

from __future__ import annotations

import numpy as np
import torch
from conftest import run_ir
from hiercompile.passes import TAG_KEY, ContiguousViewsPass, ModuleHierarchy
from hiercompile.passes.fx_tag import tag_graph_module
from torch import nn

import hiercompile


class Heads(nn.Module):
    """T5's pattern: attention output transposed, then viewed back into one dimension."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(8, 8)

    def forward(self, x):
        b, s, _ = x.shape
        q = self.q(x).view(b, s, 2, 4).transpose(1, 2)
        out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
        return out.transpose(1, 2).contiguous().view(b, s, 8)


def test_every_view_reads_a_contiguous_copy_tagged_like_the_view():
    model = Heads().eval()
    program = torch.export.export(model, (torch.randn(1, 3, 8),))
    tag_graph_module(program.graph_module, ModuleHierarchy(model))
    views = [
        n for n in program.graph.nodes if n.target in (torch.ops.aten.view.default, torch.ops.aten.reshape.default)
    ]
    result = ContiguousViewsPass()(program.graph_module)
    assert result.modified
    for view in views:
        clone = view.args[0]
        assert clone.target == torch.ops.aten.clone.default
        assert clone.kwargs["memory_format"] == torch.contiguous_format
        assert clone.meta["custom"][TAG_KEY] == view.meta["custom"][TAG_KEY] == "/Heads"
        assert clone.meta["val"].is_contiguous()
    x = torch.randn(1, 3, 8)
    torch.testing.assert_close(program.module()(x), model(x))  # same numbers


def test_model_that_lowering_cannot_view_exports_after_the_pass():
    from transformers import T5Config, T5Model

    torch.manual_seed(0)
    config = T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=100)
    model = T5Model(config).eval()
    inputs = {"input_ids": torch.randint(0, 100, (1, 6)), "decoder_input_ids": torch.randint(0, 100, (1, 6))}
    result = hiercompile.export(model, kwargs={**inputs, "use_cache": False})
    assert result.coverage == 1.0
    with torch.no_grad():
        want = model(**inputs, use_cache=False).last_hidden_state.numpy()
    got = run_ir(result.model, {k: v.numpy() for k, v in inputs.items()})[0]
    np.testing.assert_allclose(got, want, atol=1e-5)
