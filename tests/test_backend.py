"""torch.compile(backend="hiercompile"): same tags as export, graph breaks, eager fallback, entry point."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import warnings

import onnx_ir as ir
import pytest
import torch
from torch import nn

import hiercompile
from hiercompile import FallbackWarning
from hiercompile._runtime._backend import module_path
from hiercompile._runtime._eager import EagerRuntime
from hiercompile._runtime._ort import where_to_run


@torch.library.custom_op("hiercompile_test::twice", mutates_args=())
def twice(x: torch.Tensor) -> torch.Tensor:
    return x * len(x.nonzero().tolist())  # data-dependent: no translation, and no traceable implementation


@twice.register_fake
def _(x):
    return torch.empty_like(x)


class Gate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        y = torch.relu(self.lin(x))
        if y.sum().item() > 0:  # data-dependent: dynamo breaks the graph here
            return y * 2
        return y - 1


class Net(nn.Module):
    def __init__(self, custom: bool = False) -> None:
        super().__init__()
        self.pre = nn.Linear(4, 4)
        self.gate = Gate()
        self.custom = custom

    def forward(self, x):
        x = torch.sigmoid(self.pre(x))
        if self.custom:
            x = twice(x)  # no ONNX translation
        return self.gate(x) + 1


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_module_paths():
    assert module_path("L['self'].encoder.layer[0].attention") == "encoder.layer.0.attention"
    assert module_path("L['self']") == ""
    assert module_path("L['model'].blocks['a']") == "blocks.a"


@pytest.mark.slow
def test_bert_tiny_matches_eager_and_export(bert_export, tmp_path):
    model, inputs, exported, _ = bert_export
    compiled = torch.compile(model, backend="hiercompile", options={"output_dir": str(tmp_path)})
    with torch.no_grad():
        got, want = compiled(**inputs), model(**inputs)
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.pooler_output, want.pooler_output, atol=1e-4, rtol=1e-4)
    index = json.loads((tmp_path / "index.json").read_text())
    assert [g["status"] for g in index["graphs"]] == ["onnx"]
    compiled_hierarchy = json.loads((tmp_path / "graph_0" / "hierarchy.json").read_text())
    assert set(compiled_hierarchy) == set(exported.hierarchy)
    counts = {t: e["num_ops"] for t, e in compiled_hierarchy.items()}
    assert counts == {t: e["num_ops"] for t, e in exported.hierarchy.items()}
    assert "encoder.layer.0.attention.self.query.bias" in json.loads(
        (tmp_path / "graph_0" / "operations.json").read_text()
    )


@pytest.mark.slow
@pytest.mark.parametrize("dynamic", [True, None], ids=["dynamic", "shape-change"])
def test_dynamic_shapes_stay_in_onnx(bert_tiny, bert_export, dynamic):
    """dynamic=True, or a shape change (dynamo then marks dims dynamic), lowers a dynamic graph, no fallback."""
    _, _, exported, _ = bert_export
    backend = hiercompile.backend()
    compiled = torch.compile(bert_tiny, backend=backend, dynamic=dynamic)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        for batch, seq in [(2, 16), (3, 9), (1, 20)]:
            inputs = {"input_ids": torch.randint(0, 1000, (batch, seq)), "attention_mask": torch.ones(batch, seq)}
            with torch.no_grad():
                got, want = compiled(**inputs), bert_tiny(**inputs)
            torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=1e-4, rtol=1e-4)
    assert all(result is not None for result in backend.results)
    last = backend.results[-1]
    assert any(isinstance(d, ir.SymbolicDim) for v in last.model.graph.inputs for d in v.shape)
    assert {t: e["num_ops"] > 0 for t, e in last.hierarchy.items()} == {
        t: e["num_ops"] > 0 for t, e in exported.hierarchy.items()
    }


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4)
        self.scale = 0.5

    def forward(self, x):
        return self.norm(x) * self.scale


def test_dynamic_float_attributes_are_baked_and_checked_per_call():
    model = Scaled().eval()
    backend = hiercompile.backend()
    compiled = torch.compile(model, backend=backend, dynamic=True)
    x = torch.randn(3, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))
        assert backend.results[0] is not None  # eps and scale were baked into the ONNX model
        model.scale = 2.0  # dynamo passes the new value without recompiling; ONNX Runtime's model has 0.5
        torch.testing.assert_close(compiled(x), model(x))  # so this call runs eagerly
    assert len(backend.results) == 1


@pytest.mark.slow
def test_graph_break_gives_two_tagged_graphs(tmp_path):
    torch.manual_seed(0)
    model = Net().eval()
    x = torch.randn(2, 4)
    backend = hiercompile.backend(output_dir=tmp_path)
    with torch.no_grad():
        got = torch.compile(model, backend=backend)(x)
        torch.testing.assert_close(got, model(x), atol=1e-5, rtol=1e-5)
    graphs = json.loads((tmp_path / "index.json").read_text())["graphs"]
    assert len(graphs) >= 2 and all(g["status"] == "onnx" for g in graphs)
    tags = [set(json.loads((tmp_path / g["directory"] / "hierarchy.json").read_text())) for g in graphs]
    assert all(t == {"/Net", "/Net/Gate"} for t in tags)  # the resumed frame is tagged within the whole model
    owners = [
        {op["tags"][0] for op in json.loads((tmp_path / g["directory"] / "operations.json").read_text()).values()}
        for g in graphs
    ]
    assert "/Net/Gate" in set().union(*owners)
    assert all(r is not None for r in backend.results)


@pytest.mark.slow
def test_lowering_failure_falls_back_to_eager_with_one_warning(tmp_path):
    torch.manual_seed(0)
    model = Net(custom=True).eval()
    x = torch.randn(2, 4)
    backend = hiercompile.backend(output_dir=tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = torch.compile(model, backend=backend)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), model(x))
            torch.testing.assert_close(compiled(x), model(x))
    fallbacks = [w for w in caught if issubclass(w.category, FallbackWarning)]
    assert len(fallbacks) == 1
    assert "runs eagerly" in str(fallbacks[0].message)
    statuses = [g["status"] for g in json.loads((tmp_path / "index.json").read_text())["graphs"]]
    assert "eager fallback" in statuses


def test_eager_runtime_only_writes_artifacts(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval()
    x = torch.randn(3, 4)
    backend = hiercompile.backend(output_dir=tmp_path, runtime="eager")
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, backend=backend)(x), model(x))
    assert (tmp_path / "graph_0" / "model.onnx").is_file()
    with pytest.raises(hiercompile.HiercompileError, match="runtime must be"):
        hiercompile.backend(runtime="tvm")


def test_entry_point_registers_without_importing_hiercompile():
    code = (
        "import sys, torch; names = torch._dynamo.list_backends(); "
        "print('hiercompile' in names, 'hiercompile' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert out == ["True", "False"]


def test_compiled_graphs_are_released_with_the_model(tmp_path):
    import gc
    import weakref

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval()
    backend = hiercompile.backend()
    compiled = torch.compile(model, backend=backend)
    with torch.no_grad():
        compiled(torch.randn(3, 4))
    (result,) = backend.results
    alive = weakref.ref(result)
    del result
    assert alive() is not None  # dynamo's compiled code holds the graph
    del compiled
    torch._dynamo.reset()
    gc.collect()
    assert alive() is None and backend.results == []


def test_string_backend_numbers_graphs_through_the_output_folder(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(2, 4)
    for _ in range(2):  # two compiles into one folder
        torch._dynamo.reset()
        model = nn.Sequential(nn.Linear(4, 4)).eval()
        with torch.no_grad():
            torch.compile(model, backend="hiercompile", options={"output_dir": str(tmp_path)})(x)
    graphs = json.loads((tmp_path / "index.json").read_text())["graphs"]
    assert [g["index"] for g in graphs] == [0, 1]
    assert (tmp_path / "graph_0" / "model.onnx").is_file() and (tmp_path / "graph_1" / "model.onnx").is_file()


def test_a_failure_of_any_kind_falls_back(monkeypatch):
    from hiercompile._runtime import _backend

    def broken(*args, **kwargs):
        raise KeyError("an op's stack names no module")  # what tag_fx_graph once let escape

    monkeypatch.setattr(_backend, "export_program", broken)
    model = nn.Sequential(nn.Linear(4, 4)).eval()
    x = torch.randn(2, 4)
    with pytest.warns(FallbackWarning, match="runs eagerly: .an op's stack names no module"), torch.no_grad():
        torch.testing.assert_close(torch.compile(model, backend=hiercompile.backend())(x), model(x))


def test_training_runs_eagerly_with_one_warning_and_eager_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    reference = copy.deepcopy(model)
    x = torch.randn(3, 4, requires_grad=True)
    backend = hiercompile.backend()
    with pytest.warns(FallbackWarning, match="gradients are needed .* torch.no_grad"):
        loss = torch.compile(model, backend=backend)(x).sum()
    loss.backward()
    x_ref = x.detach().clone().requires_grad_()
    reference(x_ref).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    assert backend.results == [None]
    with torch.no_grad():  # the same model for inference: ONNX Runtime
        torch.compile(model, backend=backend)(x)
    assert backend.results[-1] is not None


@pytest.mark.parametrize(
    ("device", "requested", "available", "expected"),
    [
        ("cpu", None, ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
        (
            "cuda:0",
            None,
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"],
        ),
        ("cuda:0", None, ["CPUExecutionProvider"], "offers no provider for it .* install onnxruntime-gpu"),
        ("cpu", ["OpenVINOExecutionProvider"], ["CPUExecutionProvider"], "offers no OpenVINOExecutionProvider"),
        (
            "cpu",
            ["XnnpackExecutionProvider"],
            ["XnnpackExecutionProvider", "CPUExecutionProvider"],
            ["XnnpackExecutionProvider"],
        ),
    ],
)
def test_where_a_graph_runs(device, requested, available, expected):
    """The placement logic on fake devices and provider lists (a CPU machine has neither GPU nor CUDA provider)."""
    fake = torch._subclasses.FakeTensorMode(allow_non_fake_inputs=True)
    with fake, torch.no_grad():
        tensors = [torch.empty(2, 3, device=device), torch.empty(3, device=device)]
    placement = where_to_run(tensors, requested, available)
    if isinstance(expected, str):
        assert isinstance(placement, str) and re.search(expected, placement)
    else:
        assert placement == (expected, torch.device(device))


def test_tensors_on_several_devices_run_eagerly():
    fake = torch._subclasses.FakeTensorMode(allow_non_fake_inputs=True)
    with fake:
        tensors = [torch.empty(2, device="cuda:0"), torch.empty(2, device="cpu")]
    assert "several devices (cpu, cuda:0)" in where_to_run(tensors, None, ["CUDAExecutionProvider"])


class CountingRuntime(EagerRuntime):
    """A runtime of another package: runs the graph's own code and counts the calls."""

    calls = 0

    def load(self, compiled, placement):
        def run(*args):
            CountingRuntime.calls += 1
            return compiled.eager(*args)

        return run


def test_a_runtime_joins_by_its_entry_point(monkeypatch, tmp_path):
    import importlib.metadata

    from hiercompile._runtime import _registry

    point = importlib.metadata.EntryPoint("counting", "test_backend:CountingRuntime", _registry.ENTRY_POINTS)
    real = importlib.metadata.entry_points
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda group=None: [point] if group == _registry.ENTRY_POINTS else real()
    )
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval(), torch.randn(3, 4)
    backend = hiercompile.backend(output_dir=tmp_path, runtime="counting")
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, backend=backend)(x), model(x))
    assert CountingRuntime.calls == 1 and (tmp_path / "graph_0" / "model.onnx").is_file()
    with pytest.raises(hiercompile.InputError, match=r"one of 'counting', 'eager', 'ort'.*got 'tvm'"):
        hiercompile.backend(runtime="tvm")
