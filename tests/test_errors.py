"""Bad input: one clear package error per case, and nothing left on disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_ir
from torch import nn

import hiercompile
from hiercompile import CaptureError, InputError, ModelLoadError, SaveError
from hiercompile._hf._models import load_model
from hiercompile._io import json_writer, write_files


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        return self.lin(x)


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # torch.export cannot trace a branch on a tensor's value
            return x + 1
        return x - 1


class Untraceable(nn.Module):
    def forward(self, x):
        return x + (x.data_ptr() % 2)  # no capture strategy can trace a data pointer


def test_not_a_module(tmp_path):
    with pytest.raises(InputError, match=r"expected a torch\.nn\.Module, got function"):
        hiercompile.export(lambda x: x, (torch.ones(1),), f=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_args_that_do_not_fit_forward(tmp_path):
    with pytest.raises(InputError, match=r"do not fit Tiny\.forward"):
        hiercompile.export(Tiny(), (torch.ones(1, 3), torch.ones(1)), f=tmp_path / "out")
    with pytest.raises(InputError, match="args must be a tuple"):
        hiercompile.export(Tiny(), "x")
    assert not (tmp_path / "out").exists()


def test_capture_failure_names_the_step_and_chains_the_cause(tmp_path, capfd):
    with pytest.raises(
        CaptureError, match=r"capture step .* failed for Untraceable: Cannot access data pointer"
    ) as info:
        hiercompile.export(Untraceable(), (torch.ones(2),), f=tmp_path / "out")
    assert info.value.__cause__ is not None
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
    assert isinstance(info.value, hiercompile.HiercompileError)
    assert capfd.readouterr().err == ""  # torch's graphs and guard logs stay out of the terminal


def test_data_dependent_branch_is_captured_by_draft_export_with_a_warning(capfd):
    with pytest.warns(hiercompile.CaptureWarning, match=r"test_errors.py:\d+: `if x.sum\(\) > 0:.*torch.cond"):
        result = hiercompile.export(DataDependent(), (torch.ones(2),))
    assert result.capture_strategy == "draft"
    assert capfd.readouterr().err == ""
    (out,) = run_ir(result.model, {result.model.graph.inputs[0].name: np.ones(2, dtype=np.float32)})
    np.testing.assert_allclose(out, np.full(2, 2.0))  # the example's branch (x + 1)


def test_unwritable_output_leaves_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SaveError, match=r"cannot create .*/file/out: .*/file is a file"):
        hiercompile.export(Tiny(), (torch.ones(1, 3),), f=blocker / "out")
    assert blocker.read_text() == "not a directory"


def test_failed_write_leaves_no_partial_files(tmp_path):
    def broken(path):
        path.write_text("half")
        raise OSError(28, "No space left on device")

    target = tmp_path / "new"
    with pytest.raises(SaveError, match="No space left"):
        write_files(target, {"a.json": json_writer({"a": 1}), "b.json": broken})
    assert not target.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(SaveError):
        write_files(existing, {"a.json": json_writer({"a": 1}), "b.json": broken})
    assert list(existing.iterdir()) == []


def test_unknown_name_lists_presets_and_the_offline_alternative():
    with pytest.raises(ModelLoadError, match=r"not a preset \(bert-tiny.*save_pretrained"):
        load_model("no-such-org/no-such-model")
