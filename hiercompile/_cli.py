"""The ``hiercompile`` command line.

Only ``argparse``, ``rich`` and the light modules are imported at start: torch,
transformers and ONNX load inside the commands that need them, after the arguments
were checked, so ``--help``, ``--version`` and a wrong argument answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import time
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from ._errors import HiercompileError, InputError
from ._hf import DYNAMIC_AXES, TASKS, check_sizes, presets, resolve, task_named
from ._tools import MODES
from ._version import __version__

STEP_TEXT = types.MappingProxyType(
    {
        "capture": "capturing with torch.export",
        "tag": "tagging ops by module",
        "lower": "lowering with the dynamo ONNX exporter",
        "carry": "carrying tags into ONNX and optimizing",
        "derive": "deriving DAGs and operation metadata",
        "save": "writing the files",
    }
)
EXIT_INTERRUPTED = 130
YOUNG_THRESHOLD = 50_000  # allocations between collections of the youngest generation, after loading


def _console(stderr: bool = True) -> Console:
    """A console on stderr (messages) or stdout (results); not on a terminal, lines are not wrapped."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 1000)


class _Progress:
    """One line per finished step; while a step runs, a spinner with its elapsed time
    (on a terminal), so a multi-minute lowering of a large model does not look hung."""

    def __init__(self) -> None:
        self.console = _console()
        self.status: Status | None = None

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:  # a step failed: stop the spinner before the error is printed
            self.status.stop()
            self.status = None

    def __call__(self, step: str, seconds: float | None) -> None:
        if seconds is None:
            if self.console.is_terminal:
                self.status = self.console.status(_ElapsedText(STEP_TEXT[step]))
                self.status.start()
            else:
                self.console.print(f"[dim]…[/dim] {STEP_TEXT[step]}")
            return
        if self.status is not None:
            self.status.stop()
            self.status = None
        self.console.print(f"[green]✓[/green] {STEP_TEXT[step]} [dim]({seconds:.2f} s)[/dim]")


class _ElapsedText:
    """A rich renderable: the step's text and the seconds since it started, redrawn by the spinner."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.start = time.perf_counter()

    def __rich__(self) -> str:
        return f"{self.text} [dim]({time.perf_counter() - self.start:.0f} s)[/dim]"


def _indented(tag: str) -> str:
    """A tag's last segment, indented by its depth: a tree in a table column."""
    from .passes.tags import tag_depth

    return "  " * tag_depth(tag) + tag.rsplit("/", 1)[-1]


def _value_line(value) -> str:
    """``name [batch, 16] INT64``: a graph input or output with its shape, named dims dynamic."""
    dims = ", ".join(str(d) for d in value.shape) if value.shape is not None else "?"
    dtype = value.dtype.name if value.dtype is not None else "?"
    return f"{value.name} [{dims}] {dtype}"


def _summary(done) -> None:
    console = _console()
    first = next(iter(done.results.values()))
    table = Table(title="Modules", show_lines=False)
    table.add_column("module")
    table.add_column("ops own", justify="right")
    table.add_column("ops subtree", justify="right")
    table.add_column("parameters", justify="right")
    for tag, entry in first.hierarchy.items():  # module order
        counts = (str(entry["num_ops"]), str(entry["num_ops_total"]), f"{entry['num_parameters']:,}")
        table.add_row(_indented(tag), *counts)
    if len(done.results) == 1:
        console.print(table)
    console.print(f"task: {done.task}")
    for name, result in done.results.items():
        graph = result.model.graph
        where = "" if len(done.results) == 1 else f"{name}: "
        console.print(f"{where}inputs: " + escape("; ".join(_value_line(v) for v in graph.inputs)))
        console.print(f"{where}outputs: " + escape("; ".join(_value_line(v) for v in graph.outputs)))
        dynamic = sorted({str(d) for v in graph.inputs for d in (v.shape or ()) if not isinstance(d, int)})
        console.print(f"{where}dynamic axes: {', '.join(dynamic) if dynamic else 'none (static shapes)'}")
        console.print(f"{where}coverage: {result.coverage:.1%} of {result.graph.number_of_nodes()} ops tagged")
        console.print(f"{where}time per step: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()))
    console.print(f"mode: {'training' if first.training else 'eval'}")
    if done.validation is not None:
        (where, output), diff = done.validation.worst
        console.print(
            f"validated against PyTorch: largest difference {diff:.2e} ({where}, {output}) <= atol "
            f"{done.validation.atol:g}"
            + (f"; greedy tokens {done.validation.tokens}" if done.validation.tokens else "")
        )
    for path in done.written:
        console.print(f"wrote {path} ({path.stat().st_size / 1024:,.1f} KiB)")


def _dynamic_axes(text: str | None) -> list[str]:
    axes = [a for a in (text or "").split(",") if a]
    unknown = sorted(set(axes) - set(DYNAMIC_AXES))
    if unknown:
        raise InputError(f"--dynamic: unknown axes {unknown}; choose from {', '.join(DYNAMIC_AXES)}")
    return axes


@contextlib.contextmanager
def _collected_after_loading() -> Iterator[Callable[[], None]]:
    """Within the block, no garbage collection until the returned function is called,
    once the model is loaded: then everything alive is frozen (never scanned again) and
    collection resumes, its youngest generation collected every :data:`YOUNG_THRESHOLD`
    allocations rather than 700.

    torch, transformers, ONNX and the model leave hundreds of thousands of long-lived
    objects; while they load, the collector scans the growing heap again and again, and
    afterwards every full collection would scan them once more. The export then builds
    graphs of as many objects that live until it ends (the tracer's, sympy's, ONNX's),
    which the default threshold would collect hundreds of times to free almost nothing.
    """
    enabled = gc.isenabled()
    thresholds = gc.get_threshold()
    gc.disable()

    def loaded() -> None:
        gc.freeze()
        gc.set_threshold(YOUNG_THRESHOLD, *thresholds[1:])
        if enabled:
            gc.enable()

    try:
        yield loaded
    finally:
        gc.set_threshold(*thresholds)
        if enabled:
            gc.enable()


def cmd_export(ns: argparse.Namespace) -> None:
    from ._artifacts import Output

    Output(ns.output).check()
    ref = resolve(ns.model)
    task = task_named(ns.task) if ns.task is not None else None
    check_sizes(ns.batch, ns.seq_len, ref.config, extra=task.extra_positions() if task else None)
    axes = _dynamic_axes(ns.dynamic)
    if ns.atol is not None and not ns.validate:
        raise InputError("--atol sets the tolerance of --validate; pass --validate too")
    if ns.jobs < 1:
        raise InputError(f"--jobs must be 1 or more, got {ns.jobs}")
    if ns.atol is not None and not ns.atol >= 0:
        raise InputError(f"--atol must be 0 or more, got {ns.atol}")
    with _collected_after_loading() as loaded:
        _export(ns, axes, loaded)


def _export(ns: argparse.Namespace, axes: list[str], loaded: Callable[[], None]) -> None:
    from ._hf import export_pretrained

    def on_loaded(source: str, random: bool) -> None:
        loaded()
        console.print(f"model: {escape(source)}{' [yellow](random weights)[/yellow]' if random else ''}")

    console = _console()
    with _Progress() as progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = export_pretrained(
            ns.model,
            ns.output,
            task=ns.task,
            batch=ns.batch,
            seq_len=ns.seq_len,
            dynamic=axes,
            functions=ns.functions,
            attributes=ns.attributes,
            external_data=ns.external_data or None,
            namespace=ns.namespace,
            validate_outputs=ns.validate,
            atol=ns.atol if ns.atol is not None else 1e-4,
            stream_weights=ns.stream_weights,
            stack_traces=ns.stack_traces,
            progress=progress,
            on_loaded=on_loaded,
            on_component=lambda name: console.print(f"[bold]{name}[/bold]"),
            jobs=ns.jobs,
        )
    if ns.report:
        from ._tools import report

        for name in result.results:
            folder = Path(ns.output) if name == "model" else Path(ns.output) / name
            result.written.append(report(folder))
    for w in caught:
        if issubclass(w.category, UserWarning) and w.category.__module__.startswith("hiercompile"):
            console.print(f"[yellow]warning:[/yellow] {escape(str(w.message))}")
    _summary(result)


def _file_output(path: str, source: str | None = None, force: bool = False) -> Path:
    """An output that names a file to write. A folder there is an :class:`InputError`; so are,
    unless ``force``, the command's own input and a file of an export folder (its manifest
    lists it: writing over it leaves the folder describing another model)."""
    from ._artifacts import read_manifest
    from ._tools import model_file

    out = Path(path)
    if out.is_dir():
        raise InputError(f"{out} is a folder; pass the path of the .onnx file to write, e.g. {out / 'module.onnx'}")
    if force or not out.exists():
        return out
    if source is not None and Path(source).exists() and out.resolve() == model_file(Path(source)).resolve():
        raise InputError(f"{out} is this command's input; write to another path (or pass --force to replace it)")
    if out.name in read_manifest(out.parent).get("files", []):
        raise InputError(
            f"{out} belongs to the export in {out.parent} (its manifest lists it), whose JSON files describe it; "
            "write to another path (or pass --force to replace it)"
        )
    return out


def cmd_functionize(ns: argparse.Namespace) -> None:
    from ._exporter import functionize
    from ._io import onnx_writer, write_files
    from ._tools import load_tagged

    out = _file_output(ns.output, ns.input, ns.force)
    model = load_tagged(ns.input)
    result = functionize(model)
    write_files(out.parent, {out.name: onnx_writer(model)})
    names = sorted(set(result.functions.values()))
    console = _console()
    console.print(f"wrote {out}: {len(result.functions)} module calls of {len(names)} functions")
    for tag, reason in result.inline.items():
        console.print(f"[yellow]kept inline:[/yellow] {escape(tag)}: {escape(reason)}")


def cmd_strip_attributes(ns: argparse.Namespace) -> None:
    from ._io import onnx_writer, write_files
    from ._tools import load_tagged
    from .passes import StripTagAttributesPass

    out = _file_output(ns.output)
    model = load_tagged(ns.input)
    StripTagAttributesPass()(model)
    write_files(out.parent, {out.name: onnx_writer(model)})
    _console().print(f"wrote {out} without tag attributes")


def cmd_inspect(ns: argparse.Namespace) -> None:
    from rich.tree import Tree

    from ._tools import HierarchyRetriever

    if ns.depth is not None and ns.depth < 0:
        raise InputError(f"--depth must be 0 or more (0: the start module alone), got {ns.depth}")
    retriever = HierarchyRetriever(ns.model)
    root = ns.module or retriever.modules()[0]
    base = retriever.depth(root)
    nodes: dict[str, Tree] = {}
    for tag in retriever.get_module_subtree(root):
        depth = retriever.depth(tag) - base
        if ns.depth is not None and depth > ns.depth:
            continue
        own, total = len(retriever.get_nodes_by_module(tag, False)), len(retriever.get_nodes_by_module(tag))
        ops = ", ".join(f"{op} {n}" for op, n in retriever.op_types(tag).most_common(4))
        label = f"[bold]{tag}[/bold] ops {own}/{total} parameters {retriever.num_parameters(tag):,} [dim]{ops}[/dim]"
        parent = retriever.hierarchy[tag]["parent"]
        nodes[tag] = nodes[parent].add(label) if tag != root and parent in nodes else Tree(label)
    _console(stderr=False).print(nodes[root])
    _console().print("each module: full tag, ops own/subtree, parameters of its subtree (PyTorch's), common op types")


def cmd_extract(ns: argparse.Namespace) -> None:
    from ._tools import extract

    _file_output(ns.output, ns.model, ns.force)
    model = extract(ns.model, ns.tag, ns.output)
    _console().print(
        f"wrote {ns.output}: {len(model.graph)} nodes, inputs {[v.name for v in model.graph.inputs]}, "
        f"outputs {[v.name for v in model.graph.outputs]}"
    )


def _verify_target(given: str) -> tuple[Path, bool]:
    """What ``verify MODEL TARGET`` checks: (the folder or ``.onnx`` file, whether to export
    into it first). An existing model is never written over: a ``.onnx`` file is verified as
    it is; an export folder (a several-file one too) is verified; a new or empty folder is
    exported into first; any other folder is refused."""
    from ._artifacts import MODEL_FILE, Output, read_manifest

    target = Path(given)
    if target.suffix == ".onnx":
        if not target.is_file():
            raise InputError(f"{target}: no such file; pass an .onnx file, an export folder, or a new folder")
        return target, False
    if target.is_file():
        raise InputError(f"{target} is a file, not an .onnx model or a folder")
    if (target / MODEL_FILE).is_file() or read_manifest(target).get("components"):
        return target, False
    if target.is_dir() and any(target.iterdir()):
        raise InputError(
            f"{target} holds files but no {MODEL_FILE}; pass an export folder, an .onnx file, or a new folder "
            "to export into (verify never exports over files)"
        )
    Output(target).check()
    return target, True


def cmd_verify(ns: argparse.Namespace) -> None:
    from ._artifacts import MODEL_FILE, VERIFY_FILE

    target, export_first = _verify_target(ns.output)
    tagged = getattr(ns, "from")
    if tagged is not None and target.suffix != ".onnx":
        raise InputError(f"--from names what a transformed .onnx file was made from; {target} is not an .onnx file")
    if tagged is not None and not Path(tagged).exists():
        raise InputError(f"--from {tagged}: no such file or folder; pass the export the model was made from")
    ref = resolve(ns.model)
    task = task_named(ns.task) if ns.task is not None else None
    check_sizes(ns.batch, ns.seq_len, ref.config, extra=task.extra_positions() if task else None)
    if ns.node_data:
        _file_output(ns.node_data)
    console = _console()
    with _collected_after_loading() as loaded:
        from ._hf import export_pretrained, verify_pretrained

        loaded()
        if export_first:
            console.print(f"{target} is new: exporting {ns.model} into it first")
            with _Progress() as progress:
                export_pretrained(ns.model, target, task=ns.task, batch=ns.batch, seq_len=ns.seq_len, progress=progress)
        single = target if target.suffix == ".onnx" else None
        reports = verify_pretrained(
            ns.model, target.parent if single else target, task=ns.task, batch=ns.batch, seq_len=ns.seq_len,
            single_file=single, source=tagged,
        )  # fmt: skip
    failed = []
    for name, report in reports.items():
        where = target if single or name == "model" else target / name
        table = Table(title=f"PyTorch vs ONNX Runtime per module ({where})")
        columns = ["module", "status", "max abs diff", "max rel diff"]
        columns += ["own ops' error", "inputs' error"] if tagged is not None else []
        for column in columns:
            table.add_column(column)
        for check in report.modules:
            color = {"matched": "green", "diverged": "red", "not produced": "red"}.get(check.status, "yellow")
            diffs = [f"{check.max_abs_diff:.2e}", f"{check.max_rel_diff:.2e}"]
            if tagged is not None:
                diffs += ["" if d is None else f"{d:.2e}" for d in (check.own_abs_diff, check.inherited_abs_diff)]
            table.add_row(_indented(check.tag), f"[{color}]{check.status}[/{color}]", *diffs)
        _console(stderr=False).print(table)
        if not single:
            console.print(f"wrote {where / VERIFY_FILE}")
        console.print(f"{name}: {report.summary()}" if len(reports) > 1 else report.summary())
        if ns.node_data:
            errors = {
                c.tag: c.max_abs_diff if c.own_abs_diff is None else c.own_abs_diff
                for c in report.modules
                if c.status in ("matched", "diverged", "inherited")
            }
            data = Path(ns.node_data)
            data = data if len(reports) == 1 else data.with_name(f"{data.stem}.{name}{data.suffix}")
            file = single or (target / MODEL_FILE if name == "model" else target / name / MODEL_FILE)
            _overlay(str(data), file, tagged, errors)
        if not report.ok:
            failed.append(f"{name}: {report.summary()}" if len(reports) > 1 else report.summary())
    if failed:
        raise VerifyFailed("; ".join(failed))


_NODE_DATA = "write Model Explorer node data: each node coloured by its {}"
_CALIBRATION = "inputs for static and qdq: arrays named as the model's inputs, samples along the first axis"


def _dims(text: str) -> dict[str, int]:
    """``--dims NAME=N,...``: sizes of symbolic input dims by name."""
    try:
        return {k: int(v) for k, v in (item.split("=") for item in text.split(",") if item)}
    except ValueError as e:
        raise InputError(f"--dims {text!r} is not NAME=N,...; e.g. --dims batch_size=1,sequence_length=128") from e


def cmd_profile(ns: argparse.Namespace) -> None:
    from ._artifacts import PROFILE_FILE

    if ns.runs < 1:
        raise InputError(f"--runs must be at least 1, got {ns.runs}")
    dims = _dims(ns.dims)

    from ._tools import OVERHEAD, UNATTRIBUTED, model_file, profile

    source = model_file(Path(ns.model))
    out = Path(ns.json) if ns.json else source.parent / PROFILE_FILE
    for extra in (ns.node_data, ns.trace):
        if extra:
            _file_output(extra)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if ns.provider == "cuda" else None
    tagged = getattr(ns, "from")
    result = profile(source, runs=ns.runs, dims=dims, output=out, providers=providers, source=tagged)
    table = Table(title=f"ONNX Runtime time per module, mean of the typical half of {result.runs} runs ({source})")
    for column in ("module", "own ms", "subtree ms", "share", "kernels"):
        table.add_column(column, justify="left" if column == "module" else "right", overflow="fold")
    for m in result.top(ns.top):
        table.add_row(m.tag, f"{m.self_ms:.3f}", f"{m.subtree_ms:.3f}", f"{m.share:.1%}", str(m.ops))
    if result.unattributed:
        share = f"{result.unattributed_ms / result.run_ms:.1%}"
        table.add_row(UNATTRIBUTED, f"{result.unattributed_ms:.3f}", "", share, str(len(result.unattributed)))
    table.add_row(OVERHEAD, f"{result.overhead_ms:.3f}", "", f"{result.overhead_ms / result.run_ms:.1%}", "")
    _console(stderr=False).print(table)
    _console().print(f"run {result.run_ms:.3f} ms, of which op kernels {result.kernel_ms:.3f} ms; wrote {out}")
    if ns.node_data:
        _overlay(ns.node_data, source, tagged, {m.tag: m.self_ms for m in result.modules}, split=True)
    if ns.trace:
        from ._io import json_writer, write_files

        trace = Path(ns.trace)
        write_files(trace.parent, {trace.name: json_writer(result.to_trace())})
        _console().print(f"wrote {trace} (a trace for ui.perfetto.dev or chrome://tracing: one run, spans by module)")


def _overlay(path: str, model: Path, source: str | None, per_module: dict[str, float], split: bool = False) -> None:
    """Write Model Explorer node data for ``model`` (tagged, or retagged from ``source``)."""
    from ._tools import load_tagged, retag, write_node_data

    tagged = retag(model, source).model if source else load_tagged(model)
    write_node_data(path, tagged, per_module, split=split)
    _console().print(f"wrote {path} (Model Explorer node data for {model})")


def cmd_retag(ns: argparse.Namespace) -> None:
    from ._tools import retag

    source = Path(ns.model)
    out = _file_output(ns.output, ns.model, ns.force) if ns.output else source.with_name(f"{source.stem}.tagged.onnx")
    result = retag(source, getattr(ns, "from"), out)
    console = _console()
    evidence = ", ".join(f"{rule} {n}" for rule, n in result.evidence.most_common())
    done = result.total - len(result.unmapped)
    console.print(f"wrote {out}: {done} of {result.total} nodes tagged ({result.coverage:.1%}); by {evidence}")
    for name, (op, reason) in result.unmapped.items():
        console.print(f"[yellow]not tagged:[/yellow] {escape(name)} ({op}): {escape(reason)}")


def cmd_quantize(ns: argparse.Namespace) -> None:
    from ._tools import quantize

    out = _file_output(ns.output, ns.model, ns.force)
    result = quantize(
        ns.model, out, mode=ns.mode, exclude=ns.exclude or (), only=ns.only or (), policy=ns.policy,
        calibration=ns.calibration, source=getattr(ns, "from"),
    )  # fmt: skip
    title = f"policy {ns.policy}" if ns.policy else f"{ns.mode or 'dynamic'} quantization"
    table = Table(title=f"{title} per module ({out})")
    for column in ("module", "precision", "quantized ops", "float ops kept"):
        table.add_column(column, justify="right" if column.endswith("ops") or column.endswith("kept") else "left")
    for tag in sorted({*result.quantized, *result.kept}):
        mode = result.modes.get(tag, "")
        table.add_row(tag, mode, str(result.quantized.get(tag, 0)), str(result.kept.get(tag, 0)))
    _console(stderr=False).print(table)
    _console().print(
        f"wrote {out}: {sum(result.quantized.values())} ops quantized, tagged ({result.retagged.coverage:.1%})"
    )


def cmd_sensitivity(ns: argparse.Namespace) -> None:
    from ._tools import sensitivity

    if ns.policy and ns.atol is None and ns.min_cosine is None:
        raise InputError("--policy writes the modules to keep in float until the output meets --atol or --min-cosine")
    for extra in (ns.policy, ns.node_data):
        if extra:
            _file_output(extra)
    console = _console()

    def report(done: int, total: int, tag: str, seconds: float) -> None:
        left = f", about {seconds * (total - done):.0f} s left" if done < total else ""
        console.print(f"[{done}/{total}] {escape(tag)} ({seconds:.2f} s{left})")

    result = sensitivity(
        ns.model,
        mode=ns.mode,
        depth=ns.depth,
        dims=_dims(ns.dims),
        atol=ns.atol,
        min_cosine=ns.min_cosine,
        policy=ns.policy,
        progress=report,
        calibration=ns.calibration,
    )
    table = Table(title=f"{ns.mode} quantization of one module at a time: the model's outputs against the export's")
    for column in ("module", "quantized ops", "max abs diff", "cosine", "own error"):
        table.add_column(column, justify="left" if column == "module" else "right")
    for row in result.modules:
        own = "" if row.own_abs_diff is None else f"{row.own_abs_diff:.2e}"
        table.add_row(row.tag, str(row.ops), *_error_cells((row.max_abs_diff, row.cosine)), own)
    table.add_row("(all of them)", str(sum(r.ops for r in result.modules)), *_error_cells(result.all_quantized), "")
    _console(stderr=False).print(table)
    if result.policy is not None:
        kept = [tag for tag, mode in result.policy.modules.items() if mode == "float"]
        diff, cosine = _error_cells(result.policy_error)
        console.print(
            f"keeping {len(kept)} of {len(result.modules)} modules in float: max abs diff {diff}, cosine {cosine}"
        )
        if ns.policy:
            console.print(f"wrote {ns.policy} (hiercompile quantize {ns.model} OUT.onnx --policy {ns.policy})")
    console.print(f"{result.runs} quantized models run in {result.seconds:.1f} s")
    if ns.node_data:
        from ._tools import model_file

        errors = {row.tag: row.max_abs_diff for row in result.modules}
        _overlay(ns.node_data, model_file(Path(ns.model)), None, errors)


def _error_cells(error: tuple[float, float]) -> tuple[str, str]:
    return f"{error[0]:.2e}", f"{error[1]:.6f}"


def cmd_diff(ns: argparse.Namespace) -> None:
    from ._tools import diff, model_file

    if ns.dims and not ns.run:
        raise InputError("--dims sizes the inputs both models run on with --run; add --run or leave --dims out")
    for extra in (ns.json, ns.node_data):
        if extra:
            _file_output(extra)
    result = diff(ns.first, ns.second, run=ns.run, dims=_dims(ns.dims))
    shown = result.modules if ns.all else result.changed()
    table = Table(title=f"{ns.first} -> {ns.second}, by module")
    columns = ["module", "ops before", "ops after", "change", "weights"] + (["max abs diff"] if ns.run else [])
    for column in columns:
        table.add_column(column, justify="right" if column.startswith(("ops", "max")) else "left")
    for m in shown:
        weights = ", ".join(f"{fate} {n}" for fate, n in sorted(m.weights.items()))
        row = [m.tag, str(sum(m.before.values())), str(sum(m.after.values())), m.summary(), weights]
        row += ["" if m.max_abs_diff is None else f"{m.max_abs_diff:.2e}"] if ns.run else []
        table.add_row(*row)
    _console(stderr=False).print(table)
    console = _console()
    coverage = f"; {ns.second} retagged from {ns.first} ({result.retagged.coverage:.1%})" if result.retagged else ""
    console.print(f"{len(result.changed())} of {len(result.modules)} modules changed{coverage}")
    if ns.json:
        from ._io import json_writer, write_files

        path = Path(ns.json)
        write_files(path.parent, {path.name: json_writer(result.to_json())})
        console.print(f"wrote {path}")
    if ns.node_data:
        from ._tools import write_node_data

        values = {
            m.tag: m.max_abs_diff if ns.run else float(sum(m.added.values()) + sum(m.removed.values()))
            for m in result.modules
            if not ns.run or m.max_abs_diff is not None
        }
        write_node_data(ns.node_data, result.second, values)
        console.print(f"wrote {ns.node_data} (Model Explorer node data for {model_file(Path(ns.second))})")


def cmd_report(ns: argparse.Namespace) -> None:
    from ._tools import report

    console = _console()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = report(ns.directory)
    for w in caught:
        console.print(f"[yellow]warning:[/yellow] {escape(str(w.message))}")
    console.print(f"wrote {path}")


_LIBRARIES = ("torch", "transformers", "onnx", "onnxscript", "onnx-ir", "onnxruntime", "accelerate", "networkx")


def cmd_doctor(ns: argparse.Namespace) -> None:
    """What a bug report needs: the versions in use, and which private names of them are there."""
    import platform
    from importlib import metadata

    from ._compat import PRIVATE_NAMES, available

    out = _console(stderr=False)
    out.print(f"hiercompile {__version__}; Python {platform.python_version()} on {platform.platform()}")
    for name in _LIBRARIES:
        try:
            out.print(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.print(f"{name} not installed")
    out.print("private names used (checked on; without them):")
    for entry in PRIVATE_NAMES:
        state = "present" if available(entry) else f"MISSING, so {entry.without}"
        out.print(f"  {entry.module}.{entry.attribute}: {state} ({entry.library} {entry.checked}; {entry.purpose})")


class VerifyFailed(Exception):
    """The model ran, and a module diverged (exit status 1, not an error)."""


def build_parser() -> argparse.ArgumentParser:
    names = ", ".join(sorted(presets()))
    parser = argparse.ArgumentParser(
        prog="hiercompile", description="Export PyTorch models to ONNX with every op tagged by its module."
    )
    parser.add_argument("--version", action="version", version=f"hiercompile {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    model_help = f"a preset ({names}), a local checkpoint folder (config.json and weights), or a hub id"
    p = sub.add_parser("export", help=f"export a preset ({names}), a checkpoint folder or a hub id")
    p.add_argument("model", help=model_help)
    p.add_argument("output", help="folder for model.onnx and the JSON side files")
    p.add_argument("--attributes", action="store_true", help="also write model.attributes.onnx (invalid ONNX)")
    p.add_argument("--functions", action="store_true", help="also write model.functions.onnx: modules as functions")
    p.add_argument("--dynamic", metavar="AXES", help=f"dynamic axes, comma-separated, from: {', '.join(DYNAMIC_AXES)}")
    p.add_argument("--external-data", action="store_true", help="store weights in model.onnx.data (automatic > 2 GB)")
    p.add_argument("--namespace", action="store_true", help="set node namespaces to tags (Model Explorer groups)")
    p.add_argument("--report", action="store_true", help="also write report.html (see `hiercompile report`)")
    p.add_argument(
        "--stack-traces",
        action="store_true",
        help="keep each op's source lines in its node (pkg.torch.onnx.stack_trace), as torch.onnx.export does",
    )
    p.add_argument("--seq-len", type=int, default=16, help="sequence length of the example inputs (default 16)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the example inputs (default 1)")
    p.add_argument(
        "--task",
        metavar="TASK",
        help=f"what to export, as optimum names it (default: from the config's architectures): {', '.join(TASKS)}",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="processes for a task's files (encoder, decoders): each after the first in a process of its own "
        "that loads the model again (default 1: one after the other)",
    )
    p.add_argument("--validate", action="store_true", help="compare ONNX Runtime with PyTorch after the export")
    p.add_argument("--atol", type=float, help="largest difference --validate accepts (default 1e-4)")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument(
        "--stream-weights",
        dest="stream_weights",
        action="store_true",
        default=None,
        help="copy a checkpoint folder's safetensors weights into model.onnx.data without loading them "
        "(default for 1 GiB or more)",
    )
    weights.add_argument(
        "--load-weights", dest="stream_weights", action="store_false", help="load the weights, however large"
    )
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("profile", help="time every module in ONNX Runtime (its profiler, attributed by tag)")
    p.add_argument("model", help="a model.onnx (flat or functions form) written by hiercompile, or its folder")
    p.add_argument(
        "--runs", type=int, default=10, help="profiled runs after 2 warm-ups; the typical half is averaged (10)"
    )
    p.add_argument("--top", type=int, default=15, help="how many modules to list, by own time (default 15)")
    p.add_argument("--dims", metavar="NAME=N,...", default="", help="sizes of symbolic input dims (others: 2)")
    p.add_argument("--json", metavar="PATH", help="where to write the JSON (default: profile.json beside the model)")
    p.add_argument(
        "--provider", choices=("cpu", "cuda"), default="cpu", help="run on the CPU or on CUDA (onnxruntime-gpu)"
    )
    p.add_argument("--from", metavar="TAGGED", help="MODEL is another tool's output of this export: retag it first")
    p.add_argument("--node-data", metavar="FILE", help=_NODE_DATA.format("time, split among its module's nodes"))
    p.add_argument("--trace", metavar="FILE", help="write one run as a trace for ui.perfetto.dev, spans by module")
    p.set_defaults(func=cmd_profile)
    p = sub.add_parser("retag", help="tag a model another tool made from a tagged one (optimized, quantized, …)")
    p.add_argument("model", help="the transformed .onnx file")
    p.add_argument("--from", metavar="TAGGED", required=True, help="the hiercompile export it was made from")
    p.add_argument("-o", "--output", help="where to write the tagged model (default: <model>.tagged.onnx)")
    p.add_argument("--force", action="store_true", help="write over the input or a file of an export folder")
    p.set_defaults(func=cmd_retag)
    p = sub.add_parser("quantize", help="ONNX Runtime's quantizers, the precision chosen by module")
    p.add_argument("model", help="an export folder or its .onnx file")
    p.add_argument("output", help="the .onnx file to write (tagged)")
    p.add_argument("--mode", choices=MODES, help="dynamic int8 (the default), static int8 (static, qdq), int4, fp16")
    p.add_argument("--calibration", metavar="FILE.npz", help=_CALIBRATION)
    p.add_argument(
        "--policy", metavar="FILE", help="precision per module pattern (JSON or TOML; sensitivity writes one)"
    )
    p.add_argument("--from", metavar="TAGGED", help="MODEL is another tool's output of this export: retag it first")
    p.add_argument(
        "--exclude", action="append", metavar="PATTERN", help="keep these modules in float (repeatable), e.g. '**/MLP'"
    )
    p.add_argument("--only", action="append", metavar="PATTERN", help="quantize only these modules (repeatable)")
    p.add_argument("--force", action="store_true", help="write over the input or a file of an export folder")
    p.set_defaults(func=cmd_quantize)
    p = sub.add_parser(
        "diff", help="what changed by module between two tagged models (or an export and a tool's output)"
    )
    p.add_argument("first", help="an export folder or tagged .onnx file")
    p.add_argument("second", help="another export, or a model a tool made from the first (retagged from it)")
    p.add_argument(
        "--run", action="store_true", help="also run both on the same inputs and compare each module's values"
    )
    p.add_argument(
        "--dims", metavar="NAME=N,...", default="", help="sizes of symbolic input dims with --run (others: 2)"
    )
    p.add_argument("--all", action="store_true", help="list every module, not only those that changed")
    p.add_argument("--json", metavar="FILE", help="write the comparison as JSON")
    p.add_argument("--node-data", metavar="FILE", help=_NODE_DATA.format("change (ops, or the difference with --run)"))
    p.set_defaults(func=cmd_diff)
    p = sub.add_parser("sensitivity", help="quantize one module at a time and rank the modules by output error")
    p.add_argument("model", help="an export folder or its .onnx file")
    p.add_argument("--mode", choices=MODES, default="dynamic", help="the precision tried (default: dynamic)")
    p.add_argument("--calibration", metavar="FILE.npz", help=_CALIBRATION)
    p.add_argument("--depth", type=int, help="try the modules at this depth (default: each module owning weights)")
    p.add_argument("--dims", metavar="NAME=N,...", default="", help="sizes of symbolic input dims (others: 2)")
    p.add_argument("--atol", type=float, help="the largest output difference the policy may leave")
    p.add_argument("--min-cosine", type=float, help="the lowest output cosine similarity the policy may leave")
    p.add_argument("--policy", metavar="FILE", help="write the policy that meets --atol/--min-cosine (JSON)")
    p.add_argument("--node-data", metavar="FILE", help=_NODE_DATA.format("output error when quantized alone"))
    p.set_defaults(func=cmd_sensitivity)
    p = sub.add_parser("report", help="write report.html: module tree, DAGs, profile and verify results, offline")
    p.add_argument("directory", help="an export folder (its profile.json and verify.json are used when present)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("inspect", help="print the module tree of a tagged model, with full tags")
    p.add_argument("model", help="a model.onnx written by hiercompile, or its folder")
    p.add_argument("--depth", type=int, help="show modules down to this depth below the start")
    p.add_argument("--module", help="start at this module's tag")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("extract", help="write one module instance as a standalone model")
    p.add_argument("model", help="a model.onnx written by hiercompile, or its folder")
    p.add_argument("tag", help="the module's full tag, e.g. /Model/Stack/Block.0 (see `hiercompile inspect`)")
    p.add_argument("output", help="path of the .onnx file to write")
    p.add_argument("--force", action="store_true", help="write over the input or a file of an export folder")
    p.set_defaults(func=cmd_extract)
    p = sub.add_parser("verify", help="compare every module's PyTorch outputs with ONNX Runtime's")
    p.add_argument("model", help=model_help)
    p.add_argument(
        "output", help="an export folder, an .onnx file (verified as it is), or a new folder to export into first"
    )
    p.add_argument("--seq-len", type=int, default=16, help="sequence length of the example inputs (default 16)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the example inputs (default 1)")
    p.add_argument("--task", metavar="TASK", help="the task the folder was exported for (default: from the config)")
    p.add_argument(
        "--from",
        metavar="EXPORT",
        help="the export a transformed .onnx file was made from (optimized, quantized): retag it, and tell each "
        "module's own error from the one its inputs bring",
    )
    p.add_argument("--node-data", metavar="FILE", help=_NODE_DATA.format("module's error (its own, with --from)"))
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("doctor", help="print the versions in use and the private names of them hiercompile uses")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("functionize", help="rewrite a tagged model with each module as a local function")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--force", action="store_true", help="write over the input or a file of an export folder")
    p.set_defaults(func=cmd_functionize)
    p = sub.add_parser("strip-attributes", help="remove source_module/hierarchy_tags node attributes")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=cmd_strip_attributes)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        ns.func(ns)
    except HiercompileError as e:
        _console().print(f"[red]error:[/red] {escape(str(e))}")
        return 1
    except VerifyFailed as e:
        _console().print(f"[red]{escape(str(e))}[/red]")
        return 1
    except KeyboardInterrupt:
        _console().print("[red]interrupted[/red]")
        return EXIT_INTERRUPTED
    return 0


def run() -> NoReturn:
    """The ``hiercompile`` command: :func:`main`, its status the process's."""
    sys.exit(main())


if __name__ == "__main__":
    run()
