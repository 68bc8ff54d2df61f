"""verify: every BERT tiny module matches; a corrupted module is named as the first divergence."""

from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir
import pytest
import torch

import hiercompile
from hiercompile import HierarchyRetriever, VerifyError, verify

TARGET = "/BertModel/BertEncoder/BertLayer.1/BertOutput"


def test_every_module_matches(bert_export):
    model, inputs, result, _ = bert_export
    report = verify(model, (), inputs, result.model)
    assert report.ok and report.first_divergence is None
    assert [c.tag for c in report.modules] == HierarchyRetriever(result.model).modules()
    assert all(c.status == "matched" for c in report.modules), [(c.tag, c.status) for c in report.modules]
    assert max(c.max_abs_diff for c in report.modules) < 1e-4


def test_corrupted_module_is_the_first_divergence(bert_export, tmp_path):
    model, inputs, _, out = bert_export
    retriever = HierarchyRetriever(out / "model.onnx")
    (name,) = [p for p in retriever.parameters_of(TARGET) if p.endswith("output.dense.bias")]
    value = retriever.model.graph.initializers[name]
    array = value.const_value.numpy().copy()
    array += np.linspace(-1, 1, array.size, dtype=array.dtype)  # uneven: LayerNorm cannot cancel it
    value.const_value = ir.tensor(array, name=name)
    report = verify(model, (), inputs, retriever.model)
    assert report.first_divergence == TARGET
    status = {c.tag: c.status for c in report.by_tag().values()}
    assert status[TARGET] == "diverged"
    assert status["/BertModel/BertEncoder/BertLayer.0"] == "matched"
    assert status["/BertModel/BertEncoder/BertLayer.1/BertAttention"] == "matched"


def test_model_mismatch_is_a_clear_error(bert_export):
    import torch

    *_, result, _ = bert_export
    with pytest.raises(VerifyError, match="modules differ"):
        verify(torch.nn.Sequential(torch.nn.Identity()), (torch.ones(1),), {}, result.model)


def test_a_result_is_written_only_for_a_model_file_it_can_be_tied_to(bert_export, tmp_path):
    from hiercompile._artifacts import HASH_KEY, file_sha256

    model, inputs, result, out = bert_export
    with pytest.raises(hiercompile.InputError, match="needs onnx_model as a path"):
        hiercompile.verify(model, (), inputs, result.model, output=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written that the report would drop as stale
    hiercompile.verify(model, (), inputs, out / "model.onnx", output=tmp_path / "v.json")
    assert json.loads((tmp_path / "v.json").read_text())[HASH_KEY] == file_sha256(out / "model.onnx")


class _WithAux(torch.nn.Module):
    """Returns its result and a side value that the model never reads."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        y = self.lin(x)
        return y, (y * 3).reshape(2, 2, 4)  # a different shape: nothing else in the model has it


class _Reads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = _WithAux()

    def forward(self, x):
        y, _unused = self.inner(x)
        return torch.relu(y)


def test_an_output_the_model_never_reads_is_unused_not_missing():
    torch.manual_seed(0)
    model = _Reads().eval()
    x = torch.randn(4, 4)
    report = verify(model, (x,))
    status = {c.tag: c.status for c in report.modules}
    assert status["/_Reads/_WithAux"] == "matched"  # its output that the model uses
    assert report.ok and report.summary() == "every module matched"


def test_an_output_no_op_makes_is_a_failure_never_every_module_matched():
    class Flat(torch.nn.Module):  # _WithAux's output, reshaped by its own op
        def __init__(self) -> None:
            super().__init__()
            self.inner = _WithAux()

        def forward(self, x):
            return self.inner(x)[0].reshape(2, 8)

    class Outer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.flat = Flat()

        def forward(self, x):
            return torch.relu(self.flat(x))

    torch.manual_seed(0)
    model, x = Outer().eval(), torch.randn(4, 4)
    exported = hiercompile.export(model, (x,)).model
    flat = "/Outer/Flat"
    (reshape,) = [n for n in exported.graph if n.op_type == "Reshape" and n.metadata_props["hiercompile.tag"] == flat]
    reshape.metadata_props["hiercompile.tag"] = "/Outer"  # as a wrong tag would: no op of Flat makes its output
    report = verify(model, (x,), onnx_model=exported)
    assert {c.tag: c.status for c in report.modules}[flat] == "not produced"
    assert not report.ok and report.first_divergence is None
    assert report.summary() == f"not produced by their own ops: {flat}"


@pytest.mark.slow
def test_swin_stages_and_t5_blocks_match():
    """Swin's stages return a reshaped copy the model never reads; T5's blocks return the position bias."""
    from transformers import SwinConfig, SwinModel, T5Config, T5EncoderModel

    torch.manual_seed(0)
    swin = SwinModel(
        SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4)
    ).eval()
    t5 = T5EncoderModel(T5Config(d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16, vocab_size=100)).eval()
    cases = [
        (swin, {"pixel_values": torch.randn(1, 3, 32, 32)}),
        (t5, {"input_ids": torch.randint(0, 100, (1, 16)), "attention_mask": torch.ones(1, 16, dtype=torch.long)}),
    ]
    for model, inputs in cases:
        report = verify(model, (), inputs)
        status = {c.tag: c.status for c in report.modules}
        assert report.ok, report.summary()
        assert not {s for s in status.values()} & {"not produced", "diverged"}
        stages = [t for t in status if t.rsplit("/", 1)[-1].startswith(("SwinStage", "T5Block"))]
        assert stages and all(status[t] == "matched" for t in stages), status


class Activation(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.gelu(x)


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.Linear(16, 64)
        self.act = Activation()
        self.down = torch.nn.Linear(64, 16)

    def forward(self, x):
        return x + self.down(self.act(self.up(x)))


class Stack(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(Block() for _ in range(3))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_a_quantized_module_is_the_first_divergence_by_its_own_error(tmp_path):
    """verify --from: the one module whose MatMuls were quantized is the first divergence; the
    modules after it (and its activation, fed by its quantized projection) only inherit."""
    from onnxruntime.quantization import quantize_dynamic

    torch.manual_seed(0)
    model, x = Stack().eval(), torch.randn(2, 5, 16)
    hiercompile.export(model, (x,), tmp_path / "export")
    retriever = HierarchyRetriever(tmp_path / "export")
    chosen = "/Stack/Block.1"
    nodes = [n for n in retriever.get_nodes_by_module(chosen) if retriever.model.graph.node(n).op_type == "MatMul"]
    assert len(nodes) == 2
    quantize_dynamic(str(tmp_path / "export" / "model.onnx"), str(tmp_path / "q.onnx"), nodes_to_quantize=nodes)
    before = (tmp_path / "q.onnx").read_bytes()

    report = verify(model, (x,), onnx_model=tmp_path / "q.onnx", source=tmp_path / "export")
    checks = report.by_tag()
    assert report.first_divergence == chosen and not report.ok
    assert checks[chosen].status == "diverged" and checks[chosen].own_abs_diff > 1e-3
    assert checks[chosen].inherited_abs_diff == 0.0  # its input is the source's
    for later in ("/Stack/Block.2", "/Stack/Block.2/Activation"):
        assert checks[later].status == "inherited", checks[later]
        assert checks[later].own_abs_diff < 1e-4 < checks[later].inherited_abs_diff
    assert checks["/Stack/Block.0"].status == "matched"
    assert (tmp_path / "q.onnx").read_bytes() == before  # verified as it is


def test_a_transformed_model_without_tags_says_what_to_do(tmp_path):
    torch.manual_seed(0)
    model, x = Stack().eval(), torch.randn(2, 5, 16)
    hiercompile.export(model, (x,), tmp_path / "export")
    bare = ir.load(str(tmp_path / "export" / "model.onnx"))
    bare.metadata_props.clear()
    ir.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(hiercompile.NotTaggedError, match=r"retag .* verify take --from"):
        verify(model, (x,), onnx_model=tmp_path / "bare.onnx")
