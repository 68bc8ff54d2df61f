"""``hiercompile.diff``: what changed, module by module, between two tagged models."""

from __future__ import annotations

import copy
import json

import onnxruntime as ort
import torch

import hiercompile
from hiercompile._tools._diff import diff
from hiercompile._tools._quantize import quantize


def test_a_quantized_module_shows_its_ops_and_weights_replaced_and_the_rest_unchanged(stack_export, tmp_path):
    _, _, out = stack_export
    quantize(out, tmp_path / "q.onnx", exclude=["/Stack/Block.1"])
    report = diff(out, tmp_path / "q.onnx", run=True)
    by_tag = {m.tag: m for m in report.modules}
    assert {m.tag for m in report.changed()} == {"/Stack/Block.0", "/Stack/Block.2"}
    for tag in ("/Stack/Block.0", "/Stack/Block.2"):
        assert by_tag[tag].removed == {"MatMul": 2} and by_tag[tag].added["MatMulInteger"] == 2
        assert by_tag[tag].weights["removed"] == 2 and by_tag[tag].weights["added"] >= 2
    assert by_tag["/Stack/Block.1"].summary() == "unchanged" and set(by_tag["/Stack/Block.1"].weights) == {"same"}
    assert report.retagged is None  # the quantized file is tagged already
    assert 1e-4 < by_tag["/Stack/Block.0"].max_abs_diff < 0.5  # int8: close, not equal


def test_a_tool_output_is_retagged_and_its_fusions_named_per_module(stack_export, tmp_path):
    _, _, out = stack_export
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(out / "model.onnx"), options, providers=["CPUExecutionProvider"])
    report = diff(out, tmp_path / "optimized.onnx", run=True)
    assert report.retagged is not None and report.retagged.coverage == 1.0
    changed = report.changed()
    assert changed and all("MatMul" in m.removed or "Gelu" in m.removed for m in changed)
    assert all(m.max_abs_diff is not None and m.max_abs_diff < 1e-5 for m in report.modules if m.after)
    same = diff(out, out / "model.onnx", run=True)  # a model against itself: nothing changed, no difference
    assert same.changed() == [] and all(not m.max_abs_diff for m in same.modules)


def test_two_exports_of_two_versions_show_the_module_whose_weights_changed(stack_export, tmp_path):
    model, x, out = stack_export
    second = copy.deepcopy(model)
    with torch.no_grad():
        second.blocks[2].down.weight.mul_(1.5)
    hiercompile.export(second, (x,), tmp_path / "v2")
    report = diff(out, tmp_path / "v2", run=True)
    (changed,) = report.changed()
    assert changed.tag == "/Stack/Block.2" and changed.weights == {"changed": 1, "same": 3}
    assert changed.summary() == "unchanged"  # the same ops; only a weight
    by_tag = {m.tag: m for m in report.modules}
    assert by_tag["/Stack/Block.0"].max_abs_diff == 0.0 < by_tag["/Stack/Block.2"].max_abs_diff


def test_diff_command(stack_export, tmp_path, capsys):
    from hiercompile._cli import main

    _, _, out = stack_export
    quantize(out, tmp_path / "q.onnx", only=["/Stack/Block.0"])
    argv = ["diff", str(out), str(tmp_path / "q.onnx"), "--run", "--json", str(tmp_path / "d.json")]
    assert main([*argv, "--node-data", str(tmp_path / "nd.json")]) == 0
    printed = capsys.readouterr()
    assert "/Stack/Block.0" in printed.out and "/Stack/Block.1" not in printed.out
    assert "MatMulInteger" in printed.out and "1 of 7 modules changed" in printed.err
    data = json.loads((tmp_path / "d.json").read_text())["modules"]
    assert data["/Stack/Block.0"]["removed"] == {"MatMul": 2} and data["/Stack/Block.1"]["added"] == {}
    results = json.loads((tmp_path / "nd.json").read_text())["main_graph"]["results"]
    assert max(results, key=lambda n: results[n]["value"]).startswith("/blocks.")
    assert main(["diff", str(out), str(tmp_path / "q.onnx"), "--dims", "batch=2"]) == 1  # --dims needs --run
    assert "add --run" in capsys.readouterr().err
    assert main(["diff", str(out), str(tmp_path / "absent.onnx")]) == 1
    assert "error:" in capsys.readouterr().err
