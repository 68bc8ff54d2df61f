"""Bad input: one clear package error per case, and nothing left on disk."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hiercompile
from hiercompile._errors import CaptureError, InputError, ModelLoadError, SaveError
from hiercompile._io import json_writer, write_files
from hiercompile._models import load_model


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


def test_not_a_module(tmp_path):
    with pytest.raises(InputError, match=r"expected a torch\.nn\.Module, got function"):
        hiercompile.export(lambda x: x, (torch.ones(1),), output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_args_that_do_not_fit_forward(tmp_path):
    with pytest.raises(InputError, match=r"do not fit Tiny\.forward"):
        hiercompile.export(Tiny(), (torch.ones(1, 3), torch.ones(1)), output=tmp_path / "out")
    with pytest.raises(InputError, match="args must be a tuple"):
        hiercompile.export(Tiny(), torch.ones(1, 3))
    assert not (tmp_path / "out").exists()


def test_capture_failure_names_the_step_and_chains_the_cause(tmp_path):
    with pytest.raises(CaptureError, match=r"capture step \(torch.export\) failed for DataDependent") as info:
        hiercompile.export(DataDependent(), (torch.ones(2),), output=tmp_path / "out")
    assert info.value.__cause__ is not None
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
    assert isinstance(info.value, hiercompile.HiercompileError)


def test_unwritable_output_leaves_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SaveError, match="cannot write to"):
        hiercompile.export(Tiny(), (torch.ones(1, 3),), output=blocker / "out")
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
