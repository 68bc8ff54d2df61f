"""``hiercompile.export_pretrained``: a checkpoint, a task, its files, the checkpoint's own
files beside them, and optionally a validation against PyTorch (the CLI's ``export``)."""

from __future__ import annotations

__all__ = ["PretrainedExport", "export_pretrained", "verify_pretrained"]

import copy
import dataclasses
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
from torch import nn

from .._artifacts import Output
from .._errors import InputError, OptionWarning
from .._exporter import ExportResult, Progress, SaveOptions, checkpoint_bytes, export
from .._io import Writer, json_writer
from ._generative import Component, components, entered
from ._models import LoadedModel, dynamic_shapes_for, load_model
from ._parallel import SEND_BYTES, export_parts
from ._sources import ModelRef, check_sizes, resolve
from ._tasks import infer_task, supported_tasks, task_named

if TYPE_CHECKING:  # ONNX Runtime loads only to validate
    from .._tools import VerifyReport
    from ._validate import Validation

STREAM_BYTES = 1 << 30  # a checkpoint this large or larger is streamed, not loaded, unless told otherwise

# what a checkpoint folder holds besides its weights that a runtime needs: configurations,
# the tokenizer's and the preprocessor's files, the chat template
_BESIDE = ("*config.json", "tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.*", "merges.txt")
_BESIDE_TOO = ("*.model", "chat_template.*", "*.tiktoken")
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".index.json")


@dataclasses.dataclass
class PretrainedExport:
    """What :func:`export_pretrained` made.

    Attributes:
        task: the task exported (asked for, or read from the configuration).
        source: where the model came from (preset, folder, hub id).
        random_weights: whether the weights are random (a preset's configuration).
        results: file name (``model``, ``encoder_model``, ``decoder_model``,
            ``decoder_with_past_model``) -> its :class:`ExportResult`.
        written: every file written.
        validation: the comparison with PyTorch, when asked for.
    """

    task: str
    source: str
    random_weights: bool
    results: dict[str, ExportResult]
    written: list[Path]
    validation: Validation | None = None


def _checked_task(task: str | None, ref: ModelRef) -> str:
    config = ref.config or {}
    name = task or infer_task(config)
    task_named(name)
    model_type = config.get("model_type")
    if task is not None and model_type and name not in (supported := supported_tasks(model_type)):
        raise InputError(
            f"task {name!r} needs a head that model type {model_type!r} does not have; "
            f"its tasks: {', '.join(supported) or 'none known to transformers'}"
        )
    return name


def _beside(ref: ModelRef, model: nn.Module) -> dict[str, Writer]:
    """The checkpoint's own files to copy beside the model; for a configuration without a
    folder (a preset), its ``config.json`` and ``generation_config.json``."""
    if ref.kind == "directory":
        folder = Path(ref.name)
        found = {p for pattern in (*_BESIDE, *_BESIDE_TOO) for p in folder.glob(pattern) if p.is_file()}
        return {p.name: _copier(p) for p in sorted(found) if not p.name.endswith(_WEIGHTS)}
    files = {"config.json": json_writer(model.config.to_dict())}
    generation = getattr(model, "generation_config", None)
    if generation is not None and getattr(model, "can_generate", lambda: False)():
        files["generation_config.json"] = json_writer(generation.to_dict())
    return files


def _copier(source: Path) -> Writer:
    def write(path: Path) -> None:
        shutil.copyfile(source, path)

    return write


def _without_unused_inputs(result: ExportResult) -> None:
    """Drop inputs no op reads (the encoder's output once its keys and values are cached)."""
    graph = result.model.graph
    for value in list(graph.inputs):
        if not value.uses():
            graph.inputs.remove(value)


def export_pretrained(
    model: str,
    output: str | Path,
    *,
    task: str | None = None,
    batch: int = 1,
    seq_len: int = 16,
    dynamic: Sequence[str] = (),
    functions: bool = False,
    attributes: bool = False,
    external_data: bool | None = None,
    namespace: bool = False,
    validate_outputs: bool = False,
    atol: float = 1e-4,
    stream_weights: bool | None = None,
    stack_traces: bool = False,
    progress: Progress | None = None,
    on_loaded: Callable[[str, bool], None] | None = None,
    on_component: Callable[[str], None] | None = None,
    jobs: int = 1,
) -> PretrainedExport:
    """Export a checkpoint (a preset, a ``save_pretrained`` folder or a hub id) for ``task``.

    ``task`` is optimum's name (``text-generation-with-past``, ``text2text-generation``,
    ``image-classification``, …; None: the one the configuration's ``architectures``
    names). A task with a cache exports ``past_key_values.N.key/value`` inputs and
    ``present.N.key/value`` outputs, every sequence axis dynamic; a sequence-to-sequence
    task writes ``encoder_model/``, ``decoder_model/`` and, with past,
    ``decoder_with_past_model/`` into ``output``, each tagged with the whole model's
    tags; with ``jobs`` above one, its files are exported side by side, each after the first
    in a spawned process that loads the model again (:func:`._parallel.export_parts`). The
    checkpoint's configuration and tokenizer files are copied beside them.
    ``dynamic``: axes to make dynamic for a task without a cache (``batch``, ``seq``,
    ``height``, ``width``). ``validate_outputs``: compare ONNX Runtime with PyTorch
    afterwards; beyond ``atol`` it is a :class:`ValidationError`. ``stream_weights``: build
    the model with its parameters on the meta device and copy each weight from the
    folder's safetensors files into the external data file, never holding them in memory
    (None: for a folder whose safetensors files hold 1 GiB or more); validating then
    loads the model after the export. ``stack_traces``: each node also keeps the source
    lines its op ran at (``pkg.torch.onnx.stack_trace``, as torch.onnx.export writes them;
    off by default, as in optimum's files: recording them is an eighth to a quarter of the capture). ``progress``,
    ``on_loaded(source, random_weights)`` and ``on_component(name)`` report as it goes.
    """
    out = Output(output)
    out.check()
    if out.single:
        raise InputError(f"{output} names a file: export_pretrained writes a folder; give a folder path")
    ref = resolve(model)
    name = _checked_task(task, ref)
    chosen = task_named(name)
    check_sizes(batch, seq_len, ref.config, extra=chosen.extra_positions())
    if dynamic and chosen.layout != "single":
        warnings.warn(
            f"task {name} exports every batch and sequence axis dynamic already; --dynamic {','.join(dynamic)} "
            "adds nothing",
            OptionWarning,
            stacklevel=2,
        )
    stream = _streams(ref, stream_weights)
    if stream and external_data is None:
        external_data = True
    loaded = load_model(ref, task, stream=stream)
    if on_loaded:
        on_loaded(loaded.source, loaded.random_weights)
    # torch.export specializes a size-1 axis: a dynamic one needs an example of 2 or more
    batch = max(batch, 2) if "batch" in dynamic else batch
    seq_len = max(seq_len, 2) if "seq" in dynamic else seq_len
    parts = components(loaded.model, chosen, batch=batch, seq_len=seq_len)
    if chosen.layout == "single" and dynamic:
        parts[0].dynamic_shapes = dynamic_shapes_for(parts[0].kwargs, list(dynamic))

    def export_one(part: Component, report: Progress | None) -> ExportResult:
        return _export_part(loaded, part, namespace, stack_traces, report)

    def remote(part: Component) -> tuple:
        job = _PartJob(model, task, name, batch, seq_len, namespace, stack_traces, stream, part.name)
        return _export_job, (job,)

    jobs = _checked_jobs(jobs, loaded, parts)
    results = export_parts(parts, export_one, jobs=jobs, remote=remote, progress=progress, on_component=on_component)
    written = _write(out, results, _beside(ref, loaded.model), SaveOptions(functions, attributes, external_data))
    done = PretrainedExport(name, loaded.source, loaded.random_weights, results, written)
    if validate_outputs:
        from ._validate import validate

        if stream:  # the same files, against the model with its weights loaded
            loaded = load_model(ref, task)
            parts = components(loaded.model, chosen, batch=batch, seq_len=seq_len)
        files = {k: (out if k == "model" else Output(out.directory / k)).model_path for k in results}
        done.validation = validate(loaded.model, chosen, parts, files, atol=atol)
    return done


def _export_part(
    loaded: LoadedModel, part: Component, namespace: bool, stack_traces: bool, report: Progress | None
) -> ExportResult:
    """One file of a task, from the loaded model."""
    with entered(loaded.model, part.forward), warnings.catch_warnings():
        if part.forward is not None:  # an input of ours the model does not read is dropped below
            warnings.filterwarnings("ignore", message="the model never reads")
        result = export(
            loaded.model,
            kwargs=part.kwargs,
            dynamic_shapes=part.dynamic_shapes,
            input_names=part.input_names,
            namespace=namespace,
            weights=loaded.weights,
            stack_traces=stack_traces,
            progress=report,
        )
    if part.forward is not None:
        _without_unused_inputs(result)
    return result


@dataclasses.dataclass(frozen=True)
class _PartJob:
    """What a process of its own needs to export one file of a task: it loads the model again."""

    model: str
    head: str | None
    task: str
    batch: int
    seq_len: int
    namespace: bool
    stack_traces: bool
    stream: bool
    part: str


def _export_job(job: _PartJob) -> ExportResult:
    loaded = load_model(resolve(job.model), job.head, stream=job.stream)
    parts = components(loaded.model, task_named(job.task), batch=job.batch, seq_len=job.seq_len)
    (part,) = [p for p in parts if p.name == job.part]
    return _export_part(loaded, part, job.namespace, job.stack_traces, None)


def _checked_jobs(jobs: int, loaded: LoadedModel, parts: list[Component]) -> int:
    """``jobs``, or 1 with a warning where processes cannot help: one file, or weights over
    :data:`._parallel.SEND_BYTES` (each process would send back a copy)."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"jobs must be a whole number of processes, 1 or more, got {jobs!r}")
    if jobs == 1:
        return 1
    if len(parts) == 1:
        warnings.warn(
            f"--jobs {jobs}: the task writes one file, so there is nothing to export side by side",
            OptionWarning,
            stacklevel=3,
        )
        return 1
    size = sum(t.numel() * t.element_size() for t in (*loaded.model.parameters(), *loaded.model.buffers()))
    if loaded.weights is None and size > SEND_BYTES:
        warnings.warn(
            f"--jobs {jobs}: the weights ({size >> 20} MiB) are over {SEND_BYTES >> 20} MiB, and each process "
            "would send back a copy; the files are exported one after the other",
            OptionWarning,
            stacklevel=3,
        )
        return 1
    return jobs


def _streams(ref: ModelRef, stream_weights: bool | None) -> bool:
    """Whether to stream the weights: asked for (a folder of safetensors files is needed), or,
    when not said, for such a folder of :data:`STREAM_BYTES` or more."""
    size = checkpoint_bytes(ref.name) if ref.kind == "directory" else 0
    if stream_weights and not size:
        raise InputError(
            f"weights stream only from a folder of safetensors files, and {ref.name} is "
            + ("a folder without any" if ref.kind == "directory" else f"a {ref.kind}")
            + "; load them instead (leave --stream-weights / stream_weights off)"
        )
    return size >= STREAM_BYTES if stream_weights is None else stream_weights


def _write(
    out: Output, results: dict[str, ExportResult], beside: dict[str, Writer], options: SaveOptions
) -> list[Path]:
    if list(results) == ["model"]:
        return out.write_run({**results["model"].files(out, options), **beside})
    parts = {name: result.files(Output(out.directory / name), options) for name, result in results.items()}
    return out.write_run(beside, components=parts)


def verify_pretrained(
    model: str,
    folder: str | Path,
    *,
    task: str | None = None,
    batch: int = 1,
    seq_len: int = 16,
    atol: float = 1e-4,
    single_file: str | Path | None = None,
    source: str | Path | None = None,
) -> dict[str, VerifyReport]:
    """Verify, module by module, each file an export of ``model`` for ``task`` wrote into
    ``folder`` (``model.onnx``, or ``encoder_model/`` and the decoders), each against the
    PyTorch entry point it was made from, on the example inputs the export makes: a decoder
    with its cache gets a cache of ``seq_len`` and new tokens after it, flattened as the ONNX
    inputs are. Each report goes into its file's folder as ``verify.json``.
    ``single_file``: a one-file task's ``.onnx`` file to verify instead, as it is (no
    ``verify.json`` is written beside a file that is not an export's). ``source``: the export
    folder or file ``single_file`` was made from by another tool (see :func:`hiercompile.verify`).
    """
    from .._artifacts import MODEL_FILE, read_manifest
    from .._tools import verify
    from ._validate import feeds_of

    ref = resolve(model)
    name = _checked_task(task, ref)
    chosen = task_named(name)
    check_sizes(batch, seq_len, ref.config, extra=chosen.extra_positions())
    if source is not None and single_file is None:
        raise InputError("a source (--from) names what a transformed .onnx file was made from; pass that file")
    folder = Path(folder)
    loaded = load_model(ref, task)
    parts = components(loaded.model, chosen, batch=batch, seq_len=seq_len)
    if single_file is not None and len(parts) > 1:
        raise InputError(f"task {name} exports {len(parts)} files; pass the folder the export wrote them into")
    files = {
        p.name: Path(single_file)
        if single_file is not None
        else folder / MODEL_FILE
        if p.name == "model"
        else folder / p.name / MODEL_FILE
        for p in parts
    }
    absent = [str(path) for path in files.values() if not path.is_file()]
    if absent:
        raise InputError(
            f"task {name} makes {', '.join(files)}, and {', '.join(absent)} is missing; verify the folder an "
            "export of this task wrote (pass --task as it was exported)"
        )
    reports = {}
    for part in parts:
        path = files[part.name]
        writes = single_file is None or read_manifest(path.parent).get("model") == path.name
        inputs = {value.name for value in onnx.load(str(path), load_external_data=False).graph.input}
        feeds = feeds_of(part, inputs)
        with entered(loaded.model, part.forward):
            reports[part.name] = verify(
                loaded.model,
                (),
                copy.deepcopy(part.kwargs),
                path,
                atol=atol,
                output=path.parent if writes else None,
                feeds=feeds,
                source=source,
            )
    return reports
