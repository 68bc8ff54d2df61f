from __future__ import annotations

import onnx
import onnx_ir as ir
import pytest
from hiercompile.passes import TagInitializersPass, get_tags, set_node_tags
from test_tag_initializers import TEXT

from hiercompile._errors import SaveError
from hiercompile._io import load_onnx, onnx_writer, write_files


def _saved(tmp_path):
    model = ir.from_onnx_text(TEXT)
    for node in model.graph:
        set_node_tags(node, ["/M"])
    TagInitializersPass(fallback_tag="/M")(model)
    write_files(tmp_path, {"m.onnx": onnx_writer(model)})
    return tmp_path / "m.onnx"


def test_load_save_round_trip_keeps_one_copy_of_initializer_tags(tmp_path):
    path = _saved(tmp_path)
    for _ in range(2):
        model = load_onnx(path)
        assert get_tags(model.graph.initializers["w"]) == ["/M"]
        write_files(tmp_path, {"m.onnx": onnx_writer(model)})
    (w,) = [i for i in onnx.load(path).graph.initializer if i.name == "w"]
    assert [p.key for p in w.metadata_props] == ["hiercompile.tags"]


def test_write_files_replaces_and_leaves_no_staging(tmp_path):
    write_files(tmp_path, {"a.txt": lambda p: p.write_text("1")})
    write_files(tmp_path, {"a.txt": lambda p: p.write_text("2")})
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "2"


def test_onnx_writer_rejects_nothing_silently(tmp_path):
    with pytest.raises(Exception):  # noqa: B017 - any failure must surface, not write half a file
        write_files(tmp_path / "x", {"m.onnx": lambda p: (_ for _ in ()).throw(ValueError("boom"))})
    assert not (tmp_path / "x").exists()


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _text(content):
    def write(path):
        path.write_text(content)

    return write


def _interrupted(path):
    path.write_text("half")
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    "failure", [KeyboardInterrupt(), OSError(28, "No space left on device")], ids=["ctrl-c", "full"]
)
def test_files_in_subfolders_appear_together_or_not_at_all(tmp_path, monkeypatch, failure):
    """A several-file export (encoder_model/, decoder_model/): a failure while the files are
    renamed into place undoes the renames done and puts back the files they replaced."""
    from hiercompile import _io

    out = tmp_path / "out"
    write_files(out, {"encoder_model/a": _text("old a"), "decoder_model/b": _text("old b"), "top": _text("old")})
    (out / "encoder_model" / "mine.txt").write_text("the user's")
    before = _tree(out)
    renames = []
    real = _io.os.replace

    def failing(src, dst):
        renames.append(dst)
        if len(renames) == 4:  # two old files moved aside, one new moved in: then the failure
            raise failure
        real(src, dst)

    monkeypatch.setattr(_io.os, "replace", failing)
    new = {
        "encoder_model/a": _text("new a"),
        "decoder_model/b": _text("new b"),
        "extra/c": _text("c"),
        "top": _text(""),
    }
    with pytest.raises(type(failure)):
        write_files(out, new)
    monkeypatch.setattr(_io.os, "replace", real)
    assert _tree(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["decoder_model", "encoder_model", "top"]  # no staging left
    # an interruption while writing the staged files leaves nothing either
    with pytest.raises(KeyboardInterrupt):
        write_files(out, {"encoder_model/a": _text("x"), "decoder_model/b": _interrupted})
    assert _tree(out) == before and not list(out.glob(".hiercompile-*"))


def test_a_file_is_never_written_over_a_folder_of_the_users(tmp_path):
    (tmp_path / "m.onnx").mkdir()
    (tmp_path / "m.onnx" / "keep.txt").write_text("mine")
    with pytest.raises(SaveError, match=r"m\.onnx is a folder"):
        write_files(tmp_path, {"m.onnx": _text("x")})
    assert (tmp_path / "m.onnx" / "keep.txt").read_text() == "mine"


def test_a_staging_folder_a_killed_run_left_is_removed_by_the_next_run(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import sys, time\n"
        "from hiercompile._io import write_files\n"
        "def slow(path):\n"
        "    path.write_bytes(b'x' * 1000)\n"
        "    print('staged', flush=True)\n"
        "    time.sleep(60)\n"
        "write_files(__import__('pathlib').Path(sys.argv[1]), {'model.onnx': slow})\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "staged"
    (left,) = tmp_path.glob(".hiercompile-*")
    running = tmp_path / ".hiercompile-running"  # another live run's stage (this process) is never touched
    running.mkdir()
    (running / ".owner").write_text(f"{__import__('socket').gethostname()} {__import__('os').getpid()}")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    time.sleep(0.1)
    assert left.is_dir()  # kill -9: no cleanup ran
    write_files(tmp_path, {"other.json": _text("{}")})
    assert not left.exists() and running.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hiercompile-running", "other.json"]
