"""The output folder: a run leaves only its own files, and results know which model they belong to."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

import hiercompile
from hiercompile._artifacts import file_sha256, read_manifest


class Small(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.lin = nn.Linear(width, width)

    def forward(self, x):
        return torch.relu(self.lin(x))


def test_reexport_removes_what_the_earlier_run_wrote(tmp_path):
    out = tmp_path / "out"
    x = torch.randn(2, 4)
    model = Small().eval()
    with pytest.warns(hiercompile.AttributesWarning):
        hiercompile.export(model, (x,), out, functions=True, attributes=True)
    hiercompile.verify(model, (x,), onnx_model=out / "model.onnx", output=out)
    hiercompile.profile(out, runs=1, output=out)
    hiercompile.report(out)
    (out / "notes.txt").write_text("the user's own file")
    first = read_manifest(out)
    assert {"model.functions.onnx", "model.attributes.onnx", "verify.json", "profile.json", "report.html"} <= set(
        first["files"]
    )

    hiercompile.export(Small(width=4).eval(), (x,), out)  # a new model, only the flat form this time
    assert sorted(p.name for p in out.iterdir()) == [
        "hierarchy.json",
        "manifest.json",
        "model.onnx",
        "module_dags.json",
        "notes.txt",
        "operations.json",
    ]
    manifest = read_manifest(out)
    assert manifest["model_sha256"] == file_sha256(out / "model.onnx") != first["model_sha256"]
    assert manifest["files"] == sorted(p.name for p in out.iterdir() if p.name not in ("manifest.json", "notes.txt"))


def test_a_new_artifact_is_one_row_of_the_table(tmp_path, monkeypatch):
    """A row added to the artifact table is written by every folder export, listed in the
    manifest, left out of a single-file output, and removed by a later run without it."""
    from hiercompile import _artifacts

    row = _artifacts.Artifact("params.json", "side", "parameters per module", lambda r: {"n": len(r.hierarchy)})
    table = _artifacts.ARTIFACTS
    monkeypatch.setattr(_artifacts, "ARTIFACTS", (*table, row))
    x = torch.randn(2, 4)
    out = tmp_path / "out"
    result = hiercompile.export(Small().eval(), (x,), out)
    assert json.loads((out / "params.json").read_text()) == {"n": len(result.hierarchy)}
    assert "params.json" in read_manifest(out)["files"]
    hiercompile.export(Small().eval(), (x,), tmp_path / "single.onnx")
    assert not (tmp_path / "params.json").exists()

    monkeypatch.setattr(_artifacts, "ARTIFACTS", table)
    hiercompile.export(Small().eval(), (x,), out)
    assert not (out / "params.json").exists()


def test_single_file_output_writes_the_other_forms_beside_it(tmp_path):
    target = tmp_path / "small.onnx"
    x = torch.randn(2, 4)
    with pytest.warns(hiercompile.AttributesWarning):
        hiercompile.export(Small().eval(), (x,), target, functions=True, attributes=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.attributes.onnx", "small.functions.onnx", "small.onnx"]
    hiercompile.export(Small().eval(), (x,), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.onnx"]


def test_save_options_without_output_are_an_error():
    with pytest.raises(hiercompile.InputError, match=r"functions apply when files are written.*result.save"):
        hiercompile.export(Small().eval(), (torch.randn(2, 4),), functions=True)


def test_report_leaves_out_results_of_another_model(tmp_path):
    out = tmp_path / "out"
    x = torch.randn(2, 4)
    model = Small().eval()
    hiercompile.export(model, (x,), out)
    hiercompile.verify(model, (x,), onnx_model=out, output=out)
    stamped = json.loads((out / "verify.json").read_text())
    assert stamped["model_sha256"] == file_sha256(out / "model.onnx")
    # the model file changes under the result (a copy of another export, say)
    other = tmp_path / "other"
    hiercompile.export(Small().eval(), (x,), other)
    os.replace(other / "model.onnx", out / "model.onnx")
    with pytest.warns(hiercompile.StaleResultWarning, match="verify.json was made for another model"):
        hiercompile.report(out)
    page = (out / "report.html").read_text()
    assert '"verify":null' in page


def test_output_checked_before_the_work(tmp_path, monkeypatch):
    from hiercompile._exporter import _export

    monkeypatch.setattr(_export, "capture", lambda *a, **k: pytest.fail("captured before the output was checked"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    x = torch.randn(2, 4)
    with pytest.raises(hiercompile.SaveError, match="is a file, not a folder"):
        hiercompile.export(Small(), (x,), blocker)
    with pytest.raises(hiercompile.SaveError, match="is a file; choose an output path outside it"):
        hiercompile.export(Small(), (x,), blocker / "sub" / "out")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(hiercompile.SaveError, match="is a folder; give a file name"):
        hiercompile.export(Small(), (x,), tmp_path / "dir.onnx")
    from hiercompile import _artifacts

    monkeypatch.setattr(_artifacts.os, "access", lambda path, mode: False)  # as for a user without rights
    with pytest.raises(hiercompile.SaveError, match=r"cannot write to .* \(permission denied\)"):
        hiercompile.export(Small(), (x,), tmp_path / "locked" / "out")
