"""A task's files exported side by side on request, in spawned processes: the same files as one after the other."""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np
import pytest
import torch
from conftest import run_ir
from torch import nn

import hiercompile
from hiercompile import InputError
from hiercompile._hf._parallel import export_parts


class Scale(nn.Module):
    def forward(self, x):
        return x * 2


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.scale = Scale()

    def forward(self, x):
        return self.scale(self.lin(x)).relu()


@dataclasses.dataclass
class Part:
    name: str
    rows: int


PARTS = [Part("first", 2), Part("second", 3), Part("third", 5)]


def _net() -> Net:
    torch.manual_seed(0)
    return Net().eval()


def _export_rows(rows: int, name: str, parent: int) -> hiercompile.ExportResult:
    """What a process of its own runs: it builds the model again, as the package's jobs load it."""
    if name == "second" and os.getpid() != parent:
        warnings.warn("raised in a process of its own", UserWarning, stacklevel=1)
    if name == "third" and os.getpid() != parent and os.environ.get("HIERCOMPILE_TEST_FAIL") == "error":
        raise InputError("the third part cannot be exported")
    if name == "second" and os.getpid() != parent and os.environ.get("HIERCOMPILE_TEST_FAIL") == "exit":
        os._exit(3)  # killed, out of memory
    result = hiercompile.export(_net(), (torch.randn(rows, 4),))
    result.pid = os.getpid()  # where it ran, for the test
    return result


def _here(part: Part, progress) -> hiercompile.ExportResult:
    return _export_rows(part.rows, part.name, os.getpid())


def _remote(part: Part) -> tuple:
    return _export_rows, (part.rows, part.name, os.getpid())


def test_parts_side_by_side_are_the_parts_one_after_the_other(monkeypatch):
    def no_fork():
        raise AssertionError("a process was forked")

    monkeypatch.setattr(os, "fork", no_fork)  # spawned, never forked from a process whose thread pools run
    calls = []
    with pytest.warns(UserWarning, match="raised in a process of its own"):
        side = export_parts(
            PARTS,
            _here,
            jobs=3,
            remote=_remote,
            progress=lambda step, seconds: calls.append((step, seconds is None)),
            on_component=calls.append,
        )
    alone = export_parts(PARTS, _here, jobs=1, remote=_remote)
    assert list(side) == list(alone) == ["first", "second", "third"]
    pids = [side[p.name].pid for p in PARTS]
    assert pids[0] == os.getpid() and os.getpid() not in pids[1:]  # the first here, the others in processes
    model = _net()
    for part in PARTS:
        assert side[part.name].operations == alone[part.name].operations
        assert side[part.name].hierarchy == alone[part.name].hierarchy
        x = np.random.default_rng(0).standard_normal((part.rows, 4)).astype(np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(run_ir(side[part.name].model, {"x": x})[0], want, atol=1e-6)
    components = [c for c in calls if isinstance(c, str)]
    assert components == ["first", "second", "third"]  # reported in order, each with its steps
    second = calls[calls.index("second") + 1 : calls.index("third")]
    assert [step for step, _ in second[::2]] == list(side["second"].timings)


@pytest.mark.filterwarnings("ignore:raised in a process of its own")
def test_an_error_in_a_process_is_raised_here(monkeypatch):
    monkeypatch.setenv("HIERCOMPILE_TEST_FAIL", "error")
    with pytest.raises(InputError, match="the third part cannot be exported"):
        export_parts(PARTS, _here, jobs=2, remote=_remote)


def test_a_process_that_ends_without_a_result_has_its_part_exported_here(monkeypatch):
    monkeypatch.setenv("HIERCOMPILE_TEST_FAIL", "exit")
    results = export_parts(PARTS, _here, jobs=2, remote=_remote)
    assert list(results) == ["first", "second", "third"]
    assert results["second"].pid == os.getpid()


def test_jobs_that_cannot_help_are_a_warning_and_bad_jobs_an_error(monkeypatch):
    from hiercompile._hf import _pretrained
    from hiercompile._hf._models import LoadedModel

    loaded = LoadedModel(Net(), "a model", random_weights=True)
    assert _pretrained._checked_jobs(2, loaded, PARTS) == 2
    with pytest.warns(hiercompile.OptionWarning, match="nothing to export side by side"):
        assert _pretrained._checked_jobs(2, loaded, PARTS[:1]) == 1  # one file
    monkeypatch.setattr(_pretrained, "SEND_BYTES", 16)
    with pytest.warns(hiercompile.OptionWarning, match="each process would send back a copy"):
        assert _pretrained._checked_jobs(2, loaded, PARTS) == 1
    for bad in (0, -1, True, 1.5):
        with pytest.raises(InputError, match="jobs must be a whole number of processes"):
            _pretrained._checked_jobs(bad, loaded, PARTS)


@pytest.mark.slow
def test_a_seq2seq_task_exports_the_same_files_with_jobs(tmp_path):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    folder = tmp_path / "t5"
    config = T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=100, decoder_start_token_id=0)
    T5ForConditionalGeneration(config).eval().save_pretrained(folder)
    alone = hiercompile.export_pretrained(str(folder), tmp_path / "alone")
    side = hiercompile.export_pretrained(str(folder), tmp_path / "side", jobs=2, validate_outputs=True)
    assert list(side.results) == list(alone.results) == ["encoder_model", "decoder_model", "decoder_with_past_model"]
    for name in alone.results:
        assert (tmp_path / "side" / name / "model.onnx").read_bytes() == (
            tmp_path / "alone" / name / "model.onnx"
        ).read_bytes()
