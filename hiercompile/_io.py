"""Atomic writing of artifacts: everything is staged, then renamed into place."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import onnx
import onnx_ir as ir

from ._errors import SaveError

Writer = Callable[[Path], None]


def json_writer(obj: object) -> Writer:
    """A writer for one JSON file: UTF-8, sorted keys."""

    def write(path: Path) -> None:
        path.write_text(json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False), encoding="utf-8")

    return write


LARGE_MODEL_BYTES = 2**31 - 2**26  # protobuf's 2 GB limit, with room for the graph itself


def initializer_bytes(model: ir.Model) -> int:
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


def onnx_writer(model: ir.Model, external_data: bool | None = None) -> Writer:
    """A writer for one ONNX model file; weights go to ``<file>.data`` beside it when
    ``external_data`` is true, or when None and they exceed protobuf's 2 GB limit."""

    def write(path: Path) -> None:
        external = initializer_bytes(model) > LARGE_MODEL_BYTES if external_data is None else external_data
        if not external:
            ir.save(model, path)
            return
        ir.save(model, path, external_data=f"{path.name}.data")
        _restore_initializer_metadata(model, path)

    return write


def _restore_initializer_metadata(model: ir.Model, path: Path) -> None:
    """Put back the initializer metadata (our tags) that onnx-ir 1.1 drops when it moves
    tensors to external data; the weights file is left as it is."""
    proto = onnx.load(str(path), load_external_data=False)
    for initializer in proto.graph.initializer:
        value = model.graph.initializers.get(initializer.name)
        if value is None or value.const_value is None or initializer.metadata_props:
            continue
        for key, text in value.const_value.metadata_props.items():
            entry = initializer.metadata_props.add()
            entry.key, entry.value = key, text
    onnx.save(proto, str(path))


def load_onnx(path: str | Path) -> ir.Model:
    """Load an ONNX model, its external weights into memory, ready to be changed and saved again.

    Two onnx-ir 1.1 behaviours are evened out: a loaded initializer's metadata is kept
    both in the original proto and in the tensor and written twice on save (the proto's
    copy is dropped here), and external tensors lose their metadata when loaded into
    memory (it is copied over from the file's entry).
    """
    model = ir.load(path)
    external = {
        v.name: dict(v.const_value.metadata_props)
        for v in model.graph.initializers.values()
        if isinstance(v.const_value, ir.ExternalTensor)
    }
    if external:
        model = ir.external_data.load_to_model(model)
    for graph in model.graphs():
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.TensorProtoTensor):
                value.const_value.raw.ClearField("metadata_props")
            if value.name in external:
                value.const_value.metadata_props.update(external[value.name])
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
    all succeeded are they, and any file a writer added beside its own (external
    weights), renamed into place. A directory this call created is removed again on failure.
    """
    directory = Path(directory)
    with _staging(directory) as stage:
        for name, write in files.items():
            try:
                write(stage / name)
            except OSError as e:
                raise SaveError(f"cannot write {directory / name}: {e.strerror or e}") from e
        targets = []
        for staged in sorted(stage.iterdir()):
            os.replace(staged, directory / staged.name)
            targets.append(directory / staged.name)
    return targets
