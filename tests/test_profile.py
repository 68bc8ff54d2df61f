"""Per-module ONNX Runtime profile: every kernel attributed to one module, totals add up."""

from __future__ import annotations

import json

import onnx_ir as ir
import pytest

import hiercompile
from hiercompile import functionize
from hiercompile._tools._profile import _KERNEL, OVERHEAD, _attribute, _typical_runs


def test_accounting_uses_the_same_typical_runs_for_every_figure(bert_export):
    """Synthetic profiler events: one run slowed down by load, and the rows still add up."""
    *_, out = bert_export
    retriever = hiercompile.HierarchyRetriever(out / "model.onnx")
    node_tags = {n: d["tags"][0] for n, d in retriever.graph.nodes(data=True)}
    a = sorted(node_tags)[0]
    b = next(n for n in sorted(node_tags) if node_tags[n] != node_tags[a])
    runs, kernels = [], []
    for k, (dur, ka, kb) in enumerate([(100, 10, 20), (110, 12, 30), (900, 300, 20), (105, 11, 25)]):
        ts = 1000 * k
        runs.append({"name": "model_run", "ts": ts, "dur": dur})
        kernels += [{"name": a + _KERNEL, "ts": ts + 1, "dur": ka}, {"name": b + _KERNEL, "ts": ts + 50, "dur": kb}]
    result = _attribute(retriever, {a: node_tags[a], b: node_tags[b]}, runs, kernels, runs=4)
    # the middle half by duration: the runs of 105 and 110 us; the loaded 900 us run and the quickest drop out
    assert result.run_ms == pytest.approx(0.1075)
    own = {m.tag: m.self_ms for m in result.modules}
    assert own[node_tags[a]] == pytest.approx(0.0115)
    assert own[node_tags[b]] == pytest.approx(0.0275)
    assert result.kernel_ms == pytest.approx(0.039)
    assert sum(own.values()) + result.overhead_ms == pytest.approx(result.run_ms, rel=1e-12)
    assert result.kernels == 2


def test_typical_runs_keep_the_middle_half():
    durations = [{"dur": d} for d in (5, 1, 9, 7, 3, 100, 6, 4)]
    assert [durations[i]["dur"] for i in _typical_runs(durations)] == [5, 7, 6, 4]
    assert _typical_runs([{"dur": 3}]) == [0]


@pytest.fixture(scope="module")
def bert_profile(bert_export):
    *_, out = bert_export
    return hiercompile.profile(out / "model.onnx", runs=30), out


def test_every_kernel_is_attributed_once_and_totals_add_up(bert_profile, bert_export):
    result, _ = bert_profile
    assert result.kernels > 0
    assert sum(m.ops for m in result.modules) == result.kernels  # each kernel in exactly one module
    assert result.unattributed == [] and result.unattributed_ms == 0.0
    root = result.modules[0]
    assert root.tag == "/BertModel"
    # the accounting adds up exactly (the same runs for every figure), however busy the machine
    assert root.subtree_ms == pytest.approx(result.kernel_ms, rel=1e-9)
    assert sum(m.self_ms for m in result.modules) + result.overhead_ms == pytest.approx(result.run_ms, rel=1e-9)
    assert result.overhead_ms >= 0
    ran = {m.tag for m in result.modules if m.ops}
    _, _, export_result, _ = bert_export
    assert ran <= {tag for tag, entry in export_result.hierarchy.items() if entry["num_ops"]}
    assert "/BertModel/BertEncoder/BertLayer.0/BertAttention/BertSelfAttention" in ran
    for m in result.modules:  # a subtree takes at least as long as its own ops
        assert m.subtree_ms >= m.self_ms - 1e-9


def test_functions_form_profiles_the_same_kernels_per_module(bert_profile, tmp_path):
    flat, out = bert_profile
    model = hiercompile.HierarchyRetriever(out / "model.onnx").model.clone()
    functionize(model)
    path = tmp_path / "functions.onnx"
    ir.save(model, path)
    functions = hiercompile.profile(path, runs=3)
    assert {m.tag: m.ops for m in functions.modules} == {m.tag: m.ops for m in flat.modules}


def test_cli_profile_writes_json_and_report_shows_it(bert_export, tmp_path, capsys):
    import shutil

    from hiercompile._cli import main

    *_, out = bert_export
    directory = tmp_path / "export"
    shutil.copytree(out, directory)
    assert main(["profile", str(directory / "model.onnx"), "--runs", "3", "--top", "3"]) == 0
    printed = capsys.readouterr().out
    assert OVERHEAD in printed and "BertSelfAttention" in printed
    saved = json.loads((directory / "profile.json").read_text())
    assert saved["runs"] == 3 and "/BertModel" in saved["modules"]
    assert main(["report", str(directory)]) == 0
    page = (directory / "report.html").read_text()
    assert '"subtree_ms"' in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")


def test_profile_rejects_inputs_that_do_not_fit(bert_export):
    import numpy as np

    *_, out = bert_export
    with pytest.raises(hiercompile.HiercompileError, match="profile step"):
        hiercompile.profile(out / "model.onnx", feeds={"input_ids": np.ones((1, 3), dtype=np.float32)})


def test_profile_needs_at_least_one_run(bert_export):
    *_, out = bert_export
    with pytest.raises(hiercompile.HiercompileError, match="runs must be >= 1"):
        hiercompile.profile(out / "model.onnx", runs=0)


def test_a_provider_onnxruntime_lacks_is_one_line(bert_export):
    import onnxruntime as ort

    *_, out = bert_export
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(hiercompile.ProfileError, match=r"offers no CUDAExecutionProvider .* onnxruntime-gpu"):
        hiercompile.profile(out, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_a_model_tagged_in_part_profiles_its_untagged_kernels_in_their_own_row(tmp_path):
    """What retag could not tag (or a tool added) is listed, never a traceback."""
    import torch

    from hiercompile._io import onnx_writer, write_files

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(8, 8)

        def forward(self, x):
            return torch.tanh(self.lin(x)) * 3

    model = hiercompile.export(Net().eval(), (torch.randn(4, 8),)).model
    (tanh,) = [n for n in model.graph if n.op_type == "Tanh"]
    tanh.metadata_props.pop("hiercompile.tag")
    write_files(tmp_path, {"m.onnx": onnx_writer(model)})
    retriever = hiercompile.HierarchyRetriever(tmp_path / "m.onnx")
    assert retriever.untagged == [tanh.name]
    report = hiercompile.profile(tmp_path / "m.onnx", runs=2)  # ORT's graph is retagged: structure may reach it
    assert set(report.unattributed) <= {tanh.name}
    assert report.kernels == sum(m.ops for m in report.modules) + len(report.unattributed)


def test_the_trace_nests_each_kernel_in_the_spans_of_its_module_and_its_ancestors(bert_profile):
    """Chrome's trace format: complete events ("X") with microsecond ``ts``/``dur``, one track;
    module spans nest as the modules do, each kernel inside exactly its module's chain."""
    from hiercompile.passes import ancestors

    result, _ = bert_profile
    trace = result.to_trace()
    events = json.loads(json.dumps(trace))["traceEvents"]  # plain JSON
    assert all(e["ph"] == "X" and e["pid"] == e["tid"] == 1 and e["dur"] >= 0 for e in events)
    (run,) = [e for e in events if e["cat"] == "run"]
    spans = [e for e in events if e["cat"] == "module"]
    kernels = [e for e in events if e["cat"] == "kernel"]
    assert kernels and spans and len(kernels) == result.kernels

    def holds(outer, inner) -> bool:
        return outer["ts"] <= inner["ts"] and inner["ts"] + inner["dur"] <= outer["ts"] + outer["dur"]

    # every pair of intervals nests or is disjoint: the spans draw as a tree
    boxes = [run, *spans, *kernels]
    for a in boxes:
        for b in boxes:
            overlap = a["ts"] < b["ts"] + b["dur"] and b["ts"] < a["ts"] + a["dur"]
            assert not overlap or holds(a, b) or holds(b, a) or a["dur"] == 0 or b["dur"] == 0
    for kernel in kernels:
        assert holds(run, kernel)
        around = sorted({s["args"]["module"] for s in spans if holds(s, kernel)}, key=len)
        assert around == list(reversed(ancestors(kernel["args"]["module"])))
    assert sum(k["dur"] for k in kernels) <= run["dur"]


def test_profile_and_verify_write_model_explorer_node_data(bert_export, tmp_path, capsys):
    """The node data loads into Model Explorer's own classes (strictly: no field it does not
    know), names nodes of the model, and carries each module's figure."""
    dacite = pytest.importorskip("dacite")
    ndb = pytest.importorskip("model_explorer.node_data_builder")
    from hiercompile.passes import get_tags

    from hiercompile._cli import main

    *_, out = bert_export
    assert main(["profile", str(out / "model.onnx"), "--runs", "3", "--json", str(tmp_path / "p.json"),
                 "--node-data", str(tmp_path / "nd.json"), "--trace", str(tmp_path / "trace.json")]) == 0  # fmt: skip
    data = json.loads((tmp_path / "nd.json").read_text())
    graph = dacite.from_dict(ndb.GraphNodeData, data["main_graph"], config=dacite.Config(strict=True))
    model = ndb.ModelNodeData(graphsData={"main_graph": graph})
    theirs = json.loads(model.to_json_string())["main_graph"]  # Model Explorer's writer adds its defaults
    assert {key: theirs[key] for key in data["main_graph"]} == data["main_graph"]
    onnx_model = ir.load(out / "model.onnx")
    owner = {n.name: get_tags(n)[0] for n in onnx_model.graph}
    assert set(graph.results) <= set(owner) and len(graph.results) == len(owner)
    times = json.loads((tmp_path / "p.json").read_text())["modules"]
    for tag in ("/BertModel/BertEncoder/BertLayer.0/BertIntermediate", "/BertModel/BertPooler"):
        shares = [r.value for name, r in graph.results.items() if owner[name] == tag]
        assert sum(shares) == pytest.approx(times[tag]["self_ms"])  # a module's nodes add up to its time
    assert json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
    printed = capsys.readouterr().err
    assert "Model Explorer node data" in printed and "ui.perfetto.dev" in printed
