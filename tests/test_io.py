from __future__ import annotations

import onnx
import onnx_ir as ir
import pytest
from hiercompile.passes import TagInitializersPass, get_tags, set_node_tags
from test_tag_initializers import TEXT

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
