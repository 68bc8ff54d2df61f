"""Atomic writing of artifacts: everything is staged, then renamed into place."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
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
    _one_metadata_copy(model)
    for graph in model.graphs():
        for value in graph.initializers.values():
            if value.name in external:
                value.const_value.metadata_props.update(external[value.name])
    return model


def model_from_bytes(data: bytes) -> ir.Model:
    """An ``ir.Model`` from a serialized model, ready to be saved again (see :func:`load_onnx`)."""
    model = ir.from_proto(onnx.ModelProto.FromString(data))
    _one_metadata_copy(model)
    return model


def _one_metadata_copy(model: ir.Model) -> None:
    """onnx-ir 1.1 keeps a loaded initializer's metadata both in its proto and in the tensor,
    and writes both on save: the proto's copy goes."""
    for graph in model.graphs():
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.TensorProtoTensor):
                value.const_value.raw.ClearField("metadata_props")


STAGE_PREFIX = ".hiercompile-"
_OWNER = ".owner"  # in a staging folder: "host pid" of the process writing it
_REPLACED = ".replaced"  # in a staging folder: the files a run replaces, until it is done


def _abandoned(stage: Path) -> bool:
    """Whether a staging folder's process is gone (killed before it could clean up); one of
    another host, or without an owner yet, is never taken for abandoned."""
    try:
        host, pid = (stage / _OWNER).read_text(encoding="utf-8").split()
    except (OSError, ValueError):
        return False
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return False
    return False


@contextlib.contextmanager
def _staging(directory: Path) -> Iterator[Path]:
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob(f"{STAGE_PREFIX}*"):  # left by a run that was killed
            if old.is_dir() and _abandoned(old):
                shutil.rmtree(old, ignore_errors=True)
        stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=directory))
        (stage / _OWNER).write_text(f"{socket.gethostname()} {os.getpid()}", encoding="utf-8")
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


def _staged_files(stage: Path) -> list[Path]:
    """The files a run staged, subfolders included, relative to the staging folder."""
    return sorted(
        path.relative_to(stage)
        for path in stage.rglob("*")
        if path.is_file() and path.relative_to(stage).parts[0] not in (_OWNER, _REPLACED)
    )


def _move_in(stage: Path, directory: Path) -> list[Path]:
    """Rename every staged file into ``directory``; if any rename fails or is interrupted,
    the ones done are undone and the files they replaced put back."""
    replaced = stage / _REPLACED
    staged = _staged_files(stage)
    for relative in staged:  # never move a folder of the user's aside for a file
        for path in [*(directory / p for p in relative.parents[:-1]), directory / relative]:
            if path.exists() and path.is_dir() != (path != directory / relative):
                kind = "a folder" if path.is_dir() else "a file"
                raise SaveError(
                    f"cannot write {directory / relative}: {path} is {kind}; move it or choose another output"
                )
    done: list[tuple[Path, Path | None]] = []
    made: list[Path] = []
    try:
        for relative in staged:
            target = directory / relative
            for parent in reversed(target.relative_to(directory).parents[:-1]):
                if not (directory / parent).exists():
                    (directory / parent).mkdir()
                    made.append(directory / parent)
            old = None
            if target.exists():
                old = replaced / relative
                old.parent.mkdir(parents=True, exist_ok=True)
                os.replace(target, old)
            done.append((target, old))
            os.replace(stage / relative, target)
    except BaseException:
        for target, old in reversed(done):
            target.unlink(missing_ok=True)
            if old is not None:
                os.replace(old, target)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return [target for target, _ in done]


def write_files(directory: Path, files: dict[str, Writer]) -> list[Path]:
    """Write ``{file name: writer}`` into ``directory`` so that either all files appear or none.

    A name may hold a subfolder (``encoder_model/model.onnx``). Every file is first written
    into a staging folder inside ``directory``; only when all succeeded are they, and any
    file a writer added beside its own (external weights), renamed into place, and a
    failure or an interruption then puts back what they replaced. A directory this call
    created is removed again on failure. A staging folder that a killed run left behind is
    removed by the next run into the same directory.
    """
    directory = Path(directory)
    with _staging(directory) as stage:
        for name, write in files.items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            try:
                write(stage / name)
            except OSError as e:
                raise SaveError(f"cannot write {directory / name}: {e.strerror or e}") from e
        return _move_in(stage, directory)
