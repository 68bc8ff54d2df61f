"""The command line on the shipped preset, a local checkpoint directory, and the attribute form."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import bert_config, check_spec, run_onnx
from hiercompile.passes import HIERARCHY_KEY

from hiercompile._cli import YOUNG_THRESHOLD, main


def test_unknown_model_is_one_line_error(tmp_path, capsys):
    assert main(["export", "bert-huge", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "bert-tiny" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_the_command_exits_with_mains_code_and_what_an_exit_runs(tmp_path):
    """The command ends as any Python program does: main's status, atexit functions (a
    temporary folder's removal), flushed output; no private CPython call, no os._exit."""
    from importlib.metadata import entry_points

    assert [e.value for e in entry_points(group="console_scripts", name="hiercompile")] == ["hiercompile._cli:run"]
    code = (
        "import atexit, sys, tempfile\n"
        "left = tempfile.TemporaryDirectory()\n"
        "atexit.register(print, 'atexit ran')\n"
        "sys.stdout.write(left.name + ' buffered ')\n"
        "from hiercompile._cli import run\n"
        f"sys.argv = ['hiercompile', 'export', 'bert-huge', {str(tmp_path / 'out')!r}]\n"
        "run()\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": ""}  # stdout buffered, as when piped
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "error:" in proc.stderr and "Traceback" not in proc.stderr
    left, rest = proc.stdout.split(" buffered ")
    assert rest.strip() == "atexit ran"
    assert not Path(left).exists()  # weakref.finalize's cleanup ran
    source = Path(sys.modules["hiercompile._cli"].__file__).read_text()
    assert "os._exit" not in source and "_run_exitfuncs" not in source


@pytest.mark.parametrize("loads", [True, False], ids=["loaded", "failed-to-load"])
def test_export_loads_without_collections_then_freezes_what_it_loaded(tmp_path, monkeypatch, loads):
    import gc

    import hiercompile._hf as pretrained
    from hiercompile import InputError

    seen = []

    def export_pretrained(*args, on_loaded, **kwargs):
        seen.append(gc.isenabled())
        if loads:
            on_loaded("a model", True)
            seen.append(gc.isenabled())
            seen.append(gc.get_threshold()[0])
        raise InputError("stop here")

    monkeypatch.setattr(pretrained, "export_pretrained", export_pretrained)
    frozen = gc.get_freeze_count()
    thresholds = gc.get_threshold()
    try:
        assert main(["export", "bert-tiny", str(tmp_path / "out")]) == 1
        # imports and loading: no collection; the export: fewer collections of young objects
        assert seen == ([False, True, YOUNG_THRESHOLD] if loads else [False])
        assert thresholds[0] < YOUNG_THRESHOLD
        assert gc.isenabled() and gc.get_threshold() == thresholds  # as they were, whatever happened
        assert (gc.get_freeze_count() > frozen) is loads  # what was loaded is never scanned again
    finally:
        gc.unfreeze()


def test_bad_sizes(tmp_path, capsys):
    assert main(["export", "bert-tiny", str(tmp_path / "out"), "--seq-len", "0"]) == 1
    assert "must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_export_preset_and_strip_attributes(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            *(sys.executable, "-X", "importtime", "-m", "hiercompile", "export", "bert-tiny", str(out)),
            *("--attributes", "--functions", "--seq-len", "8"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "random weights" in proc.stderr and "coverage: 100.0%" in proc.stderr
    assert "reject" in proc.stderr  # the attribute form's warning
    assert not re.search(r"\|\s+onnxruntime$", proc.stderr, flags=re.M)  # loaded only to validate
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",  # the preset's configuration, beside the model as from a checkpoint
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
    traces = [p.value for n in onnx.load(out / "model.onnx").graph.node for p in n.metadata_props]
    assert not any("modeling_bert.py" in value for value in traces)  # no source lines unless --stack-traces
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
    from hiercompile._hf._models import example_inputs

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
    assert "18 module calls of 11 functions" in capsys.readouterr().err.replace("\n", " ")
    onnx.checker.check_model(onnx.load(tmp_path / "f.onnx"), full_check=True)


@pytest.mark.slow
def test_verify_command_exports_then_matches(tmp_path, capsys):
    assert main(["verify", "bert-tiny", str(tmp_path / "v"), "--seq-len", "8"]) == 0
    captured = capsys.readouterr()
    assert "every module matched" in captured.err
    assert f"wrote {tmp_path / 'v' / 'verify.json'}" in captured.err
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
    from hiercompile import ModelLoadError
    from hiercompile._hf import _sources

    monkeypatch.setattr(_sources, "_cached_config", lambda name: None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")  # .invalid never resolves
    with pytest.raises(ModelLoadError, match=r"not a preset \(bert-tiny\).*hub is out of reach.*save_pretrained"):
        _sources.resolve("someone/some-model")


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The command line in a fresh interpreter; it reports whether torch was loaded."""
    code = (
        "import sys; from hiercompile._cli import main; rc = main(sys.argv[1:]); "
        "print('torch loaded' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def test_version_and_help_list_the_presets():
    proc = _cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("hiercompile 0.")
    text = " ".join(_cli("export", "--help").stdout.split())
    assert "a preset (bert-tiny)" in text and "batch, seq, height, width" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "0"], "--batch and --seq-len must be at least 1, got 0 and 16"),
        (["--seq-len", "100000"], "--seq-len 100000 is beyond the model's position limit of 512"),
        (["--dynamic", "batch,time"], "--dynamic: unknown axes ['time']; choose from batch, seq, height, width"),
    ],
)
def test_bad_arguments_fail_before_torch_loads(tmp_path, args, message):
    proc = _cli("export", "bert-tiny", str(tmp_path / "out"), *args)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: {message}") and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout.strip() == "no torch"
    assert not (tmp_path / "out").exists()


def test_bad_model_names_and_outputs_fail_before_torch_loads(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    (tmp_path / "empty_dir").mkdir()
    cases = [
        (["bert-huge", str(tmp_path / "o")], r"'bert-huge' is not a preset \(bert-tiny\) nor a folder"),
        ([str(tmp_path / "empty_dir"), str(tmp_path / "o")], r"empty_dir has no config.json: pass a folder written"),
        (["bert-tiny", str(blocker)], r"file is a file, not a folder"),
        (["bert-tiny", str(blocker / "out")], r"cannot create .*file/out: .*file is a file"),
    ]
    for args, message in cases:
        proc = _cli("export", *args)
        assert proc.returncode == 1, proc.stderr
        assert re.fullmatch(f"error: .*{message}.*", proc.stderr.strip()), proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout.strip() == "no torch"


def test_tagged_model_readers_name_what_is_wrong(tmp_path, bert_export, capsys):
    *_, out = bert_export
    empty = tmp_path / "empty.onnx"
    empty.touch()
    assert main(["inspect", str(empty)]) == 1
    assert "empty.onnx is empty (0 bytes), not an ONNX model" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path)]) == 1
    assert "is a folder without model.onnx" in capsys.readouterr().err
    assert main(["inspect", str(out), "--depth", "0"]) == 0  # an export folder stands for its model.onnx
    assert "/BertModel ops" in capsys.readouterr().out


def test_ctrl_c_exits_130_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    from hiercompile._exporter import _result

    def interrupted(obj):
        def write(path):
            path.write_text("half")
            raise KeyboardInterrupt

        return write

    monkeypatch.setattr(_result, "json_writer", interrupted)  # Ctrl-C while the files are written
    assert main(["export", "bert-tiny", str(tmp_path / "out"), "--seq-len", "8"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_names_shapes_and_dynamic_axes_in_the_summary(tmp_path):
    options = ["--dynamic", "batch,seq", "--stack-traces"]
    proc = subprocess.run(
        [sys.executable, "-m", "hiercompile", "export", "bert-tiny", str(tmp_path / "o"), *options],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "60"},  # a pipe: no wrapping, whatever the terminal's width
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert (
        "inputs: input_ids [batch, seq] INT64; attention_mask [batch, seq] INT64; token_type_ids [batch, seq] INT64"
        in lines
    )
    assert "outputs: last_hidden_state [batch, seq, 128] FLOAT; pooler_output [batch, 128] FLOAT" in lines
    assert "dynamic axes: batch, seq" in lines and "mode: eval" in lines
    model = onnx.load(tmp_path / "o" / "model.onnx")
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert dims == {name: ["batch", "seq"] for name in ("input_ids", "attention_mask", "token_type_ids")}
    assert [o.name for o in model.graph.output] == ["last_hidden_state", "pooler_output"]
    traces = [p.value for n in model.graph.node for p in n.metadata_props if p.key == "pkg.torch.onnx.stack_trace"]
    in_model = [value for value in traces if "modeling_bert.py" in value]  # each op's source lines, as torch writes
    assert len(in_model) > len(traces) / 2 == len(model.graph.node) / 2
    proc = subprocess.run(
        [sys.executable, "-m", "hiercompile", "inspect", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "60"},
    )
    tag = "/BertModel/BertEncoder/BertLayer.0/BertAttention/BertSelfAttention ops"
    assert any(tag in line for line in proc.stdout.splitlines()), proc.stdout  # full tags, not wrapped


def test_doctor_prints_versions_and_the_private_names_in_use(capsys, monkeypatch):
    from importlib import metadata

    import hiercompile._compat as compat

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in ("torch", "transformers", "onnx", "onnxscript", "onnx-ir", "onnxruntime"):
        assert f"\n{name} {metadata.version(name)}\n" in out
    for entry in compat.PRIVATE_NAMES:
        assert f"{entry.module}.{entry.attribute}: present" in out
    monkeypatch.setattr(compat, "available", lambda entry: entry.library != "transformers")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "register_cache_pytrees_for_model: MISSING, so torch.export fails naming the cache class" in out
