"""verify: every BERT tiny module matches; a corrupted module is named as the first divergence."""

from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir
import pytest

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
