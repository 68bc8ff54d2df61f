"""The ``hiercompile`` command line."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.status import Status
from rich.table import Table

from ._errors import HiercompileError

console = Console(stderr=True, highlight=False)

STEP_TEXT = {
    "capture": "capturing with torch.export",
    "tag": "tagging ops by module",
    "lower": "lowering with the dynamo ONNX exporter",
    "carry": "carrying tags into ONNX and optimizing",
    "derive": "deriving DAGs and operation metadata",
    "save": "writing the files",
}


class _Progress:
    """One line per finished step; while a step runs, a spinner with its elapsed time
    (on a terminal), so a multi-minute lowering of a large model does not look hung."""

    def __init__(self) -> None:
        self.status: Status | None = None

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:  # a step failed: stop the spinner before the error is printed
            self.status.stop()
            self.status = None

    def __call__(self, step: str, seconds: float | None) -> None:
        if seconds is None:
            if console.is_terminal:
                self.status = console.status(_ElapsedText(STEP_TEXT[step]))
                self.status.start()
            else:
                console.print(f"[dim]…[/dim] {STEP_TEXT[step]}")
            return
        if self.status is not None:
            self.status.stop()
            self.status = None
        console.print(f"[green]✓[/green] {STEP_TEXT[step]} [dim]({seconds:.2f} s)[/dim]")


class _ElapsedText:
    """A rich renderable: the step's text and the seconds since it started, redrawn by the spinner."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.start = time.perf_counter()

    def __rich__(self) -> str:
        return f"{self.text} [dim]({time.perf_counter() - self.start:.0f} s)[/dim]"


def _indented(tag: str) -> str:
    """A tag's last segment, indented by its depth: a tree in a table column."""
    return "  " * (tag.count("/") - 1) + tag.rsplit("/", 1)[-1]


def _summary(result, written: list[Path]) -> None:
    table = Table(title="Modules", show_lines=False)
    table.add_column("module")
    table.add_column("ops own", justify="right")
    table.add_column("ops subtree", justify="right")
    table.add_column("parameters", justify="right")
    for tag, entry in result.hierarchy.items():  # module order
        counts = (str(entry["num_ops"]), str(entry["num_ops_total"]), f"{entry['num_parameters']:,}")
        table.add_row(_indented(tag), *counts)
    console.print(table)
    console.print(f"coverage: {result.coverage:.1%} of {result.graph.number_of_nodes()} ops tagged")
    console.print("time per step: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()))
    for path in written:
        console.print(f"wrote {path} ({path.stat().st_size / 1024:,.1f} KiB)")


def cmd_export(ns: argparse.Namespace) -> None:
    from ._export import export
    from ._models import dynamic_shapes_for, example_inputs, load_model

    loaded = load_model(ns.model)
    note = " [yellow](random weights)[/yellow]" if loaded.random_weights else ""
    console.print(f"model: {loaded.source}{note}")
    axes = ns.dynamic.split(",") if ns.dynamic else []
    # torch.export specializes a size-1 dimension, so a dynamic axis needs an example of 2 or more
    batch = max(ns.batch, 2) if "batch" in axes else ns.batch
    kwargs = example_inputs(loaded.model, batch=batch, seq_len=max(ns.seq_len, 2) if "seq" in axes else ns.seq_len)
    dynamic = dynamic_shapes_for(kwargs, axes) if axes else None
    with _Progress() as progress:
        result = export(
            loaded.model,
            (),
            kwargs,
            dynamic_shapes=dynamic,
            attributes=ns.attributes,
            functions=ns.functions,
            namespace=ns.namespace,
            external_data=ns.external_data or None,
            progress=progress,
        )
        progress("save", None)
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            written = result.save(ns.output)
        progress("save", time.perf_counter() - start)
    if ns.report:
        from ._report import report

        written.append(report(ns.output))
    for w in caught:
        console.print(f"[yellow]warning:[/yellow] {w.message}", soft_wrap=True)
    _summary(result, written)


def cmd_functionize(ns: argparse.Namespace) -> None:
    from ._io import onnx_writer, write_files
    from ._retriever import load_tagged
    from ._tag_onnx import functionize

    model = load_tagged(ns.input)
    result = functionize(model)
    out = Path(ns.output)
    write_files(out.parent, {out.name: onnx_writer(model)})
    names = sorted(set(result.functions.values()))
    console.print(f"wrote {out}: {len(result.functions)} module calls of {len(names)} functions", soft_wrap=True)
    for tag, reason in result.inline.items():
        console.print(f"[yellow]kept inline:[/yellow] {tag}: {reason}", soft_wrap=True)


def cmd_strip_attributes(ns: argparse.Namespace) -> None:
    from ._io import onnx_writer, write_files
    from ._retriever import load_tagged
    from .passes import StripTagAttributesPass

    model = load_tagged(ns.input)
    StripTagAttributesPass()(model)
    out = Path(ns.output)
    write_files(out.parent, {out.name: onnx_writer(model)})
    console.print(f"wrote {out} without tag attributes")


def cmd_inspect(ns: argparse.Namespace) -> None:
    from rich.tree import Tree

    from ._retriever import HierarchyRetriever

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
        label = (
            f"[bold]{tag.rsplit('/', 1)[-1]}[/bold] ops {own}/{total} "
            f"weights {retriever.num_parameters(tag):,} [dim]{ops}[/dim]"
        )
        parent = retriever.hierarchy[tag]["parent"]
        nodes[tag] = nodes[parent].add(label) if tag != root and parent in nodes else Tree(label)
    Console(highlight=False).print(nodes[root])
    console.print("ops own/subtree, initializer elements the subtree uses, most common op types")


def cmd_extract(ns: argparse.Namespace) -> None:
    from ._extract import extract

    model = extract(ns.model, ns.tag, ns.output)
    console.print(
        f"wrote {ns.output}: {len(model.graph)} nodes, inputs {[v.name for v in model.graph.inputs]}, "
        f"outputs {[v.name for v in model.graph.outputs]}",
        soft_wrap=True,
    )


def cmd_verify(ns: argparse.Namespace) -> None:
    from ._export import MODEL_FILE, export
    from ._io import json_writer, write_files
    from ._models import example_inputs, load_model
    from ._report import VERIFY_FILE
    from ._verify import verify

    loaded = load_model(ns.model)
    kwargs = example_inputs(loaded.model, batch=ns.batch, seq_len=ns.seq_len)
    path = Path(ns.output) / MODEL_FILE
    if not path.is_file():
        console.print(f"no {path} yet: exporting {ns.model} first")
        with _Progress() as progress:
            export(loaded.model, (), kwargs, ns.output, progress=progress)
    report = verify(loaded.model, (), kwargs, path)
    write_files(Path(ns.output), {VERIFY_FILE: json_writer(report.to_json())})
    table = Table(title=f"PyTorch vs ONNX Runtime per module ({path})")
    for column in ("module", "status", "max abs diff", "max rel diff"):
        table.add_column(column)
    for check in report.modules:
        color = {"matched": "green", "diverged": "red"}.get(check.status, "yellow")
        diffs = (f"{check.max_abs_diff:.2e}", f"{check.max_rel_diff:.2e}")
        table.add_row(_indented(check.tag), f"[{color}]{check.status}[/{color}]", *diffs)
    Console(highlight=False).print(table)
    if not report.ok:
        raise VerifyFailed(f"first divergence: {report.first_divergence}")
    console.print("every module matched")


def cmd_profile(ns: argparse.Namespace) -> None:
    from ._errors import InputError
    from ._io import json_writer, write_files
    from ._profile import OVERHEAD, profile
    from ._report import PROFILE_FILE

    try:
        dims = {k: int(v) for k, v in (item.split("=") for item in ns.dims.split(",") if item)}
    except ValueError as e:
        raise InputError(f"--dims {ns.dims!r} is not NAME=N,...; e.g. --dims s0=1,s1=128") from e
    result = profile(ns.model, runs=ns.runs, dims=dims)
    out = Path(ns.json) if ns.json else Path(ns.model).parent / PROFILE_FILE
    write_files(out.parent, {out.name: json_writer(result.to_json())})
    table = Table(title=f"ONNX Runtime time per module, mean of the typical half of {result.runs} runs ({ns.model})")
    for column in ("module", "own ms", "subtree ms", "share", "kernels"):
        table.add_column(column, justify="left" if column == "module" else "right", overflow="fold")
    for m in result.top(ns.top):
        table.add_row(m.tag, f"{m.self_ms:.3f}", f"{m.subtree_ms:.3f}", f"{m.share:.1%}", str(m.ops))
    table.add_row(OVERHEAD, f"{result.overhead_ms:.3f}", "", f"{result.overhead_ms / result.run_ms:.1%}", "")
    Console(highlight=False).print(table)
    console.print(f"run {result.run_ms:.3f} ms, of which op kernels {result.kernel_ms:.3f} ms; wrote {out}")


def cmd_report(ns: argparse.Namespace) -> None:
    from ._report import report

    console.print(f"wrote {report(ns.directory)}")


class VerifyFailed(Exception):
    """The model ran, and a module diverged (exit status 1, not an error)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hiercompile", description="Export PyTorch models to ONNX with every op tagged by its module."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="export a preset, a local model directory or a hub id")
    p.add_argument("model", help="preset name (see README), local Hugging Face model directory, or hub id")
    p.add_argument("output", help="directory for model.onnx and the JSON side files")
    p.add_argument("--attributes", action="store_true", help="also write model.attributes.onnx (invalid ONNX)")
    p.add_argument("--functions", action="store_true", help="also write model.functions.onnx: modules as functions")
    p.add_argument("--dynamic", metavar="AXES", help="dynamic axes, comma-separated: batch, seq (e.g. batch,seq)")
    p.add_argument("--external-data", action="store_true", help="store weights in model.onnx.data (automatic > 2 GB)")
    p.add_argument("--namespace", action="store_true", help="set node namespaces to tags (Model Explorer groups)")
    p.add_argument("--report", action="store_true", help="also write report.html (see `hiercompile report`)")
    p.add_argument("--seq-len", type=int, default=16, help="sequence length of the example inputs (default 16)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the example inputs (default 1)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("profile", help="time every module in ONNX Runtime (its profiler, attributed by tag)")
    p.add_argument("model", help="a model.onnx (flat or functions form) written by hiercompile")
    p.add_argument(
        "--runs", type=int, default=10, help="profiled runs after 2 warm-ups; the middle half by duration is averaged (default 10)"
    )
    p.add_argument("--top", type=int, default=15, help="how many modules to list, by own time (default 15)")
    p.add_argument("--dims", metavar="NAME=N,...", default="", help="sizes of symbolic input dims (others: 2)")
    p.add_argument("--json", metavar="PATH", help="where to write the JSON (default: profile.json beside the model)")
    p.set_defaults(func=cmd_profile)
    p = sub.add_parser("report", help="write report.html: module tree, DAGs, profile and verify results, offline")
    p.add_argument("directory", help="an export directory (profile.json and verify.json are used when present)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("inspect", help="print the module tree of a tagged model")
    p.add_argument("model", help="a model.onnx written by hiercompile")
    p.add_argument("--depth", type=int, help="show modules down to this depth below the start")
    p.add_argument("--module", help="start at this module's tag")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("extract", help="write one module instance as a standalone model")
    p.add_argument("model")
    p.add_argument("tag", help="the module's full tag, e.g. /Model/Stack/Block.0")
    p.add_argument("output", help="path of the .onnx file to write")
    p.set_defaults(func=cmd_extract)
    p = sub.add_parser("verify", help="compare every module's PyTorch outputs with ONNX Runtime's")
    p.add_argument("model", help="preset, local model directory or hub id, as for export")
    p.add_argument("output", help="the export's directory (exported there first if it has no model.onnx)")
    p.add_argument("--seq-len", type=int, default=16)
    p.add_argument("--batch", type=int, default=1)
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("functionize", help="rewrite a tagged model with each module as a local function")
    p.add_argument("input")
    p.add_argument("output")
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
        console.print(f"[red]error:[/red] {e}", soft_wrap=True)
        return 1
    except VerifyFailed as e:
        console.print(f"[red]{e}[/red]", soft_wrap=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
