"""A task's files exported side by side, in forked processes: the same files as one after the other."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import run_ir
from torch import nn

import hiercompile
from hiercompile import InputError
from hiercompile._exporter import _parallel
from hiercompile._exporter._parallel import export_parts, side_by_side

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="processes are forked where POSIX has fork")


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


def _export(model: nn.Module, record: list | None = None):
    parent = os.getpid()

    def export_one(part: Part, progress) -> hiercompile.ExportResult:
        if part.name == "second" and os.getpid() != parent:
            warnings.warn("raised in a process of its own", UserWarning, stacklevel=1)
        result = hiercompile.export(model, (torch.randn(part.rows, 4),), progress=progress)
        result.pid = os.getpid()  # where it ran, for the test
        return result

    return export_one


def test_parts_side_by_side_are_the_parts_one_after_the_other():
    torch.manual_seed(0)
    model = Net().eval()
    calls = []
    with pytest.warns(UserWarning, match="raised in a process of its own"):
        side = export_parts(
            PARTS,
            _export(model),
            side=True,
            progress=lambda step, seconds: calls.append((step, seconds is None)),
            on_component=calls.append,
        )
    alone = export_parts(PARTS, _export(model), side=False)
    assert list(side) == list(alone) == ["first", "second", "third"]
    pids = [side[p.name].pid for p in PARTS]
    assert pids[0] == os.getpid() and len(set(pids)) == 3  # the first here, each other in a process
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
def test_an_error_in_a_process_is_raised_here():
    model = Net().eval()
    export = _export(model)

    def export_one(part, progress):
        if part.name == "third":
            raise InputError("the third part cannot be exported")
        return export(part, progress)

    with pytest.raises(InputError, match="the third part cannot be exported"):
        export_parts(PARTS, export_one, side=True)


@pytest.mark.filterwarnings("ignore:raised in a process of its own")
def test_a_process_that_ends_without_a_result_has_its_part_exported_here():
    model = Net().eval()
    parent = os.getpid()
    export = _export(model)

    def export_one(part, progress):
        if part.name == "second" and os.getpid() != parent:
            os._exit(3)  # killed, out of memory
        return export(part, progress)

    results = export_parts(PARTS, export_one, side=True)
    assert results["second"].pid == parent and results["third"].pid != parent


def test_which_tasks_go_side_by_side(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    model = Net()
    assert side_by_side(model, PARTS, streamed=False)
    assert not side_by_side(model, PARTS[:1], streamed=False)  # one file
    assert not side_by_side(model, PARTS, streamed=True)  # weights read from their files when written
    monkeypatch.setattr(_parallel, "SEND_BYTES", 16)
    assert not side_by_side(model, PARTS, streamed=False)  # each file would hold a copy sent back
    monkeypatch.undo()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert not side_by_side(model, PARTS, streamed=False)  # one core


def test_before_forking_the_tables_hold_the_ops_a_capture_registers():
    # in a fresh process: here, an earlier test has imported what a capture imports
    code = """
import torch, hiercompile
from hiercompile._exporter import _pretrained, _translations
_pretrained._before_forking()
ops, built = _translations.registered_ops(), _translations._torchlib_tables.cache_info().misses
model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()).eval()
hiercompile.export(model, (torch.randn(3, 4),), dynamic_shapes=({0: "batch_size"},))
print(built, _translations.registered_ops() - ops, _translations._torchlib_tables.cache_info().misses - built)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert out == ["1", "0", "0"]  # built once, before; the export registers no op and builds no table
