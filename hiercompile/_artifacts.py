"""The output folder: the one place that names its files, writes a run, and tells whose results are there.

An export writes a set of files at once and records them, with the model file's
SHA-256, in ``manifest.json``. Whatever an earlier run wrote there and this run does
not write again is removed, so a folder never holds another run's files beside the
new model. Results about a model (``verify.json``, ``profile.json``) carry the hash of
the model they were made for; a reader is told when it no longer matches.
"""

from __future__ import annotations

__all__ = [
    "ARTIFACTS",
    "ATTRIBUTES_FILE",
    "DAGS_FILE",
    "FUNCTIONS_FILE",
    "HIERARCHY_FILE",
    "INDEX_FILE",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "OPERATIONS_FILE",
    "PROFILE_FILE",
    "REPORT_FILE",
    "VERIFY_FILE",
    "Artifact",
    "Output",
    "add_files",
    "check_not_top",
    "file_sha256",
    "names_of",
    "read_manifest",
    "read_result",
    "write_result",
]

import dataclasses
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._errors import InputError, SaveError, StaleResultWarning
from ._io import Writer, json_writer, write_files
from ._version import __version__

MODEL_FILE = "model.onnx"
FUNCTIONS_FILE = "model.functions.onnx"
ATTRIBUTES_FILE = "model.attributes.onnx"
HIERARCHY_FILE = "hierarchy.json"
DAGS_FILE = "module_dags.json"
OPERATIONS_FILE = "operations.json"
VERIFY_FILE = "verify.json"
PROFILE_FILE = "profile.json"
REPORT_FILE = "report.html"
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.json"


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A file an export folder may hold.

    Attributes:
        name: its name in a folder (a model form's ``model`` is the stem of a single ``.onnx`` output).
        kind: ``"model"`` (an ONNX file), ``"side"`` (a JSON file every folder export writes,
            made from the result), ``"result"`` (written later by a tool about the model) or
            ``"record"`` (kept by the writer itself).
        about: what it holds.
        make: for a model or side file, what the export result gives to write (an ``ir.Model``
            or JSON data); None for files written elsewhere.
        option: the :class:`SaveOptions` field that asks for it (None: always written).
    """

    name: str
    kind: str
    about: str
    make: Callable[[Any], Any] | None = None
    option: str | None = None


ARTIFACTS: tuple[Artifact, ...] = (
    Artifact(MODEL_FILE, "model", "the tagged model", lambda result: result.model),
    Artifact(FUNCTIONS_FILE, "model", "the functions form", lambda result: result.functions_model(), "functions"),
    Artifact(
        ATTRIBUTES_FILE, "model", "tags as node attributes", lambda result: result.attributes_model(), "attributes"
    ),
    Artifact(HIERARCHY_FILE, "side", "the module tree", lambda result: result.hierarchy),
    Artifact(DAGS_FILE, "side", "each module's DAG", lambda result: result.dags_json()),
    Artifact(OPERATIONS_FILE, "side", "every node's op type, values and tags", lambda result: result.operations),
    Artifact(VERIFY_FILE, "result", "hiercompile verify's per-module errors"),
    Artifact(PROFILE_FILE, "result", "hiercompile profile's per-module times"),
    Artifact(REPORT_FILE, "result", "hiercompile report's page"),
    Artifact(MANIFEST_FILE, "record", "the files of the run and the model's SHA-256"),
    Artifact(INDEX_FILE, "record", "the torch.compile backend's list of graphs"),
)
"""Every file hiercompile writes into an export folder: saving, the Hugging Face package, the
report and the removal of an earlier run's files all read this table, so a new file is one row."""


def names_of(kind: str) -> tuple[str, ...]:
    """The names of the artifacts of one kind, in the table's order."""
    return tuple(artifact.name for artifact in ARTIFACTS if artifact.kind == kind)


HASH_KEY = "model_sha256"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks (weights in external data are not part of it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _check_writable(directory: Path) -> None:
    """Raise :class:`SaveError` unless ``directory`` is, or can be made, a writable folder."""
    if directory.exists() and not directory.is_dir():
        raise SaveError(f"{directory} is a file, not a folder; choose a new or existing folder for the output")
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise SaveError(f"cannot create {directory}: {existing} is a file; choose an output path outside it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SaveError(f"cannot write to {existing} (permission denied); choose a writable output folder")


class Output:
    """Where an export goes: a folder (``model.onnx`` and its side files) or one ``.onnx`` file.

    Rules:

    1. A path ending in ``.onnx`` is a single model file; the functions and attribute
       forms go beside it as ``<stem>.functions.onnx`` and ``<stem>.attributes.onnx``,
       and no side files are written. Any other path is a folder.
    2. A run writes all its files atomically (:func:`write_files`); a folder also gets
       ``manifest.json``: the package version, the model file, its SHA-256 and every
       file the run wrote.
    3. After a run, every file an earlier run owned that this run did not write is
       removed: the artifact names below, their ``.data`` files and whatever the earlier
       manifest lists. Other files in the folder are left alone.
    4. A task that makes several models (an encoder and decoders) writes each into a
       folder of its own (``encoder_model/``, each an export folder of rule 2) and the
       files they share (``config.json``, the tokenizer's) at the top, whose manifest
       lists the folders as ``components``; a later run removes those it does not write.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        self.single = path.suffix == ".onnx"
        self.directory = path.parent if self.single else path
        stem = path.stem if self.single else Path(MODEL_FILE).stem
        self.model_name = f"{stem}.onnx"

    @property
    def model_path(self) -> Path:
        return self.directory / self.model_name

    def check(self) -> None:
        """Fail now, before any work, if the output cannot be written."""
        _check_writable(self.directory)
        if self.single and self.model_path.is_dir():
            raise SaveError(f"{self.model_path} is a folder; give a file name ending in .onnx or a folder path")

    def name_of(self, artifact: Artifact) -> str:
        """The file name ``artifact`` takes here: a model form follows a single file's stem."""
        if artifact.kind == "model":
            return self.model_name[: -len(".onnx")] + artifact.name[len(Path(MODEL_FILE).stem) :]
        return artifact.name

    def _owned(self) -> set[str]:
        models = {self.name_of(artifact) for artifact in ARTIFACTS if artifact.kind == "model"}
        names = models | {f"{m}.data" for m in models}
        if not self.single:
            manifest = read_manifest(self.directory)
            names |= {self.name_of(artifact) for artifact in ARTIFACTS if artifact.kind != "model"}
            names |= set(manifest.get("files", [])) | set(manifest.get("components", []))
        return names

    def write_run(self, files: dict[str, Writer], components: dict[str, dict[str, Writer]] | None = None) -> list[Path]:
        """Write one run's files (``{name: writer}``) and remove what earlier runs left (rules
        2-4); ``components``: the files of each folder this run writes its models into (rule 4),
        written in the same transaction as the top folder's."""
        self.check()
        parts = {name: Output(self.directory / name) for name in components or {}}
        owned = self._owned()
        owned_by_part = {name: part._owned() for name, part in parts.items()}
        staged: dict[str, Writer] = {}
        for name, part in parts.items():
            inner = {**components[name], MANIFEST_FILE: part._manifest_writer([])}
            staged.update({f"{name}/{file}": writer for file, writer in inner.items()})
        staged.update(files)
        if not self.single:
            staged[MANIFEST_FILE] = self._manifest_writer(list(parts))
        written = write_files(self.directory, staged)
        self._remove_left(owned, {p.name for p in written if p.parent == self.directory} | set(parts))
        for name, part in parts.items():
            part._remove_left(owned_by_part[name], {p.name for p in written if p.parent == part.directory})
        return written

    def _remove_left(self, owned: set[str], kept: set[str]) -> None:
        for name in owned - kept:
            path = self.directory / name
            if path.is_dir() and (path / MANIFEST_FILE).is_file():  # a component an earlier run wrote
                shutil.rmtree(path)
            elif not path.is_dir():
                path.unlink(missing_ok=True)

    def _manifest_writer(self, components: list[str]) -> Writer:
        def write(path: Path) -> None:
            stage = path.parent  # the staged files of this run, all written before the manifest
            files = sorted(p.name for p in stage.iterdir() if p.is_file() and p.name != MANIFEST_FILE)
            files = [name for name in files if not name.startswith(".")]  # the staging folder's own
            manifest: dict = {"hiercompile": __version__, "files": files}
            if components:
                manifest["components"] = sorted(components)
            else:
                manifest.update({"model": self.model_name, HASH_KEY: file_sha256(stage / self.model_name)})
            json_writer(manifest)(path)

        return write


def read_manifest(directory: Path) -> dict:
    """The folder's ``manifest.json``, or ``{}``."""
    path = directory / MANIFEST_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def check_not_top(directory: Path) -> None:
    """Raise :class:`InputError` when ``directory`` is the top folder of an export of several
    files (a sequence-to-sequence task), naming the subfolders to pass instead."""
    components = read_manifest(directory).get("components")
    if components:
        raise InputError(
            f"{directory} holds the files of a {len(components)}-file export, one per subfolder "
            f"({', '.join(components)}); pass one of them, e.g. {directory / components[0]}"
        )


def add_files(directory: Path, files: dict[str, Writer]) -> list[Path]:
    """Add files to a folder atomically; in an export folder, its manifest lists them too."""
    manifest = read_manifest(directory)
    if manifest and not set(files) <= set(manifest.get("files", [])):
        manifest = {**manifest, "files": sorted({*manifest["files"], *files})}
        files = {**files, MANIFEST_FILE: json_writer(manifest)}
    return [p for p in write_files(directory, files) if p.name != MANIFEST_FILE]


def write_result(path: str | Path, data: dict, model: Path | None) -> Path:
    """Write a result about ``model`` (``verify.json``, ``profile.json``) atomically, stamped with
    the model file's SHA-256 (None for a model that is not a file)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give the path of a .json file")
    add_files(path.parent, {path.name: json_writer({**data, HASH_KEY: file_sha256(model) if model else None})})
    return path


def read_result(directory: Path, name: str) -> dict | None:
    """A result file of an export folder, or None when absent or made for another model (with a warning)."""
    path = directory / name
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    model = directory / MODEL_FILE
    current = file_sha256(model) if model.is_file() else None
    if data.get(HASH_KEY) is None or data.get(HASH_KEY) != current:
        warnings.warn(
            f"{path} was made for another model than {model}; it is left out. "
            f"Run `hiercompile {path.stem}` on this model again",
            StaleResultWarning,
            stacklevel=2,
        )
        return None
    return data
