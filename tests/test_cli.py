"""The command line on the shipped preset, a local checkpoint directory, and the attribute form."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from conftest import bert_config, check_spec, run_onnx
from hiercompile.passes import HIERARCHY_KEY

from hiercompile._cli import main


def test_unknown_model_is_one_line_error(tmp_path, capsys):
    assert main(["export", "bert-huge", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "bert-tiny" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_sizes(tmp_path, capsys):
    assert main(["export", "bert-tiny", str(tmp_path / "out"), "--seq-len", "0"]) == 1
    assert "must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_export_preset_and_strip_attributes(tmp_path):
    out = tmp_path / "out"
    exe = shutil.which("hiercompile")
    cmd = [exe] if exe else [sys.executable, "-m", "hiercompile"]
    proc = subprocess.run(
        [*cmd, "export", "bert-tiny", str(out), "--attributes", "--functions", "--seq-len", "8"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "random weights" in proc.stderr and "coverage: 100.0%" in proc.stderr
    assert "reject" in proc.stderr  # the attribute form's warning
    assert sorted(p.name for p in out.iterdir()) == [
        "hierarchy.json",
        "manifest.json",
        "model.attributes.onnx",
        "model.functions.onnx",
        "model.onnx",
        "module_dags.json",
        "operations.json",
    ]
    check_spec(out / "model.onnx", out)
    check_spec(out / "model.functions.onnx")
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(onnx.load(out / "model.attributes.onnx"), full_check=True)
    stripped = tmp_path / "stripped.onnx"
    assert main(["strip-attributes", str(out / "model.attributes.onnx"), str(stripped)]) == 0
    assert onnx.load(stripped).SerializeToString() == onnx.load(out / "model.onnx").SerializeToString()


@pytest.mark.slow
def test_local_checkpoint_directory_uses_its_weights(tmp_path):
    from transformers import BertForSequenceClassification

    torch.manual_seed(1)
    model = BertForSequenceClassification(bert_config()).eval()
    model.save_pretrained(tmp_path / "ckpt")
    assert main(["export", str(tmp_path / "ckpt"), str(tmp_path / "out"), "--seq-len", "8"]) == 0
    meta = {p.key: p.value for p in onnx.load(tmp_path / "out" / "model.onnx").metadata_props}
    assert "/BertForSequenceClassification/BertModel/BertPooler" in json.loads(meta[HIERARCHY_KEY])
    from hiercompile._exporter._models import example_inputs

    inputs = example_inputs(model, seq_len=8)
    with torch.no_grad():
        expected = model(**inputs).logits.numpy()
    np.testing.assert_allclose(run_onnx(tmp_path / "out" / "model.onnx", inputs)[0], expected, atol=1e-4)


def test_missing_onnx_file(tmp_path, capsys):
    assert main(["strip-attributes", str(tmp_path / "nope.onnx"), str(tmp_path / "x.onnx")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_inspect_extract_verify(bert_export, tmp_path, capsys):
    *_, out = bert_export
    assert main(["inspect", str(out / "model.onnx"), "--depth", "1"]) == 0
    text = capsys.readouterr().out
    assert "BertEmbeddings ops 7/7" in text
    assert "BertLayer.0" not in text  # depth 2 is cut
    assert main(["inspect", str(out / "model.onnx"), "--module", "/BertModel/BertPooler"]) == 0
    assert "BertPooler ops 3/3" in capsys.readouterr().out
    target = tmp_path / "pooler.onnx"
    assert main(["extract", str(out / "model.onnx"), "/BertModel/BertPooler", str(target)]) == 0
    onnx.checker.check_model(onnx.load(target), full_check=True)
    assert main(["extract", str(out / "model.onnx"), "/BertModel/Pooler", str(tmp_path / "x.onnx")]) == 1
    assert "closest: /BertModel/BertPooler" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
    assert main(["functionize", str(out / "model.onnx"), str(tmp_path / "f.onnx")]) == 0
    assert "18 module calls of 10 functions" in capsys.readouterr().err.replace("\n", " ")
    onnx.checker.check_model(onnx.load(tmp_path / "f.onnx"), full_check=True)


@pytest.mark.slow
def test_verify_command_exports_then_matches(tmp_path, capsys):
    assert main(["verify", "bert-tiny", str(tmp_path / "v"), "--seq-len", "8"]) == 0
    captured = capsys.readouterr()
    assert "every module matched" in captured.err
    assert (tmp_path / "v" / "model.onnx").is_file()
    assert main(["verify", "bert-tiny", str(tmp_path / "v"), "--seq-len", "8"]) == 0  # reuses the file
    assert "exporting" not in capsys.readouterr().err
    statuses = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert statuses["modules"]["/BertModel/BertPooler"]["status"] == "matched"
    assert statuses["first_divergence"] is None


def test_export_with_namespace_and_report(tmp_path):
    out = tmp_path / "out"
    assert main(["export", "bert-tiny", str(out), "--namespace", "--report", "--seq-len", "8"]) == 0
    assert (out / "report.html").is_file()
    check_spec(out / "model.onnx", out)
    model = onnx.load(out / "model.onnx")
    for node in model.graph.node:
        props = {p.key: p.value for p in node.metadata_props}
        if "hiercompile.tag" in props:
            assert props["namespace"] == props["hiercompile.tag"][1:]
            assert props["hiercompile.original_namespace"].startswith(": transformers.")  # the exporter's


def test_unreachable_hub_fails_without_network_retries(monkeypatch, tmp_path):
    from hiercompile import ModelLoadError, _sources

    monkeypatch.setattr(_sources, "_cached_config", lambda name: None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")  # .invalid never resolves
    with pytest.raises(ModelLoadError, match=r"not a preset \(bert-tiny\).*hub is out of reach.*save_pretrained"):
        _sources.resolve("someone/some-model")
