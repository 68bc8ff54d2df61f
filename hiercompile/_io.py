"""Atomic writing of artifacts: everything is staged, then renamed into place."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import onnx_ir as ir

from ._errors import SaveError

Writer = Callable[[Path], None]


def json_writer(obj: object) -> Writer:
    """A writer for one JSON file: UTF-8, sorted keys."""

    def write(path: Path) -> None:
        path.write_text(json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False), encoding="utf-8")

    return write


def onnx_writer(model: ir.Model) -> Writer:
    """A writer for one ONNX model file."""

    def write(path: Path) -> None:
        ir.save(model, path)

    return write


def load_onnx(path: str | Path) -> ir.Model:
    """Load an ONNX model so that saving it again writes each initializer's metadata once.

    onnx-ir 1.1 keeps a loaded initializer's metadata both in the original proto and
    in the tensor's ``metadata_props`` and writes both on save, doubling the
    ``hiercompile.tags`` entries at every load/save round trip. The proto's copy is
    dropped here; the tensor's copy stays the one to read and edit.
    """
    model = ir.load(path)
    for graph in model.graphs():
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.TensorProtoTensor):
                value.const_value.raw.ClearField("metadata_props")
    return model


@contextlib.contextmanager
def _staging(directory: Path) -> Iterator[Path]:
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".hiercompile-", dir=directory))
    except OSError as e:
        raise SaveError(f"cannot write to {directory}: {e.strerror or e}; choose a writable output directory") from e
    try:
        yield stage
    except BaseException:
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_files(directory: Path, files: dict[str, Writer]) -> list[Path]:
    """Write ``{file name: writer}`` into ``directory`` so that either all files appear or none.

    Every file is first written into a staging folder inside ``directory``; only when
    all succeeded are they renamed into place. A directory this call created is
    removed again on failure.
    """
    directory = Path(directory)
    with _staging(directory) as stage:
        for name, write in files.items():
            try:
                write(stage / name)
            except OSError as e:
                raise SaveError(f"cannot write {directory / name}: {e.strerror or e}") from e
        targets = []
        for name in files:
            os.replace(stage / name, directory / name)
            targets.append(directory / name)
    return targets
