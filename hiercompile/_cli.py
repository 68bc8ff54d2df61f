"""The ``hiercompile`` command line."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ._errors import HiercompileError

console = Console(stderr=True, highlight=False)

STEP_TEXT = {
    "capture": "capturing with torch.export",
    "tag": "tagging ops by module",
    "lower": "lowering with the dynamo ONNX exporter",
    "carry": "carrying tags into ONNX and optimizing",
    "derive": "deriving DAGs and operation metadata",
}


def _progress(step: str, seconds: float | None) -> None:
    if seconds is None:
        console.print(f"[dim]…[/dim] {STEP_TEXT[step]}")
    else:
        console.print(f"[green]✓[/green] {STEP_TEXT[step]} [dim]({seconds:.2f} s)[/dim]")


def _summary(result, written: list[Path]) -> None:
    table = Table(title="Modules", show_lines=False)
    table.add_column("module")
    table.add_column("ops own", justify="right")
    table.add_column("ops subtree", justify="right")
    table.add_column("parameters", justify="right")
    for tag, entry in result.hierarchy.items():  # module order
        indent = "  " * entry["depth"]
        name = tag.rsplit("/", 1)[-1]
        counts = (str(entry["num_ops"]), str(entry["num_ops_total"]), f"{entry['num_parameters']:,}")
        table.add_row(f"{indent}{name}", *counts)
    console.print(table)
    console.print(f"coverage: {result.coverage:.1%} of {result.graph.number_of_nodes()} ops tagged")
    console.print("time per step: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()))
    for path in written:
        console.print(f"wrote {path} ({path.stat().st_size / 1024:,.1f} KiB)")


def cmd_export(ns: argparse.Namespace) -> None:
    from ._export import export
    from ._models import example_inputs, load_model

    loaded = load_model(ns.model)
    note = " [yellow](random weights)[/yellow]" if loaded.random_weights else ""
    console.print(f"model: {loaded.source}{note}")
    kwargs = example_inputs(loaded.model, batch=ns.batch, seq_len=ns.seq_len)
    result = export(loaded.model, (), kwargs, keep=None, attributes=ns.attributes, progress=_progress)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = result.save(ns.output)
    for w in caught:
        console.print(f"[yellow]warning:[/yellow] {w.message}", soft_wrap=True)
    _summary(result, written)


def cmd_strip_attributes(ns: argparse.Namespace) -> None:
    from ._io import onnx_writer, write_files
    from .passes import StripTagAttributesPass

    model = _load_onnx(ns.input)
    StripTagAttributesPass()(model)
    out = Path(ns.output)
    write_files(out.parent, {out.name: onnx_writer(model)})
    console.print(f"wrote {out} without tag attributes")


def _load_onnx(path: str):
    from ._errors import InputError
    from ._io import load_onnx

    if not Path(path).is_file():
        raise InputError(f"{path}: no such file; pass the path of an .onnx model")
    try:
        return load_onnx(path)
    except Exception as e:
        raise InputError(f"{path} is not a readable ONNX model: {str(e).splitlines()[0] if str(e) else e}") from e


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hiercompile", description="Export PyTorch models to ONNX with every op tagged by its module."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="export a preset, a local model directory or a hub id")
    p.add_argument("model", help="preset name (e.g. bert-tiny), local Hugging Face model directory, or hub id")
    p.add_argument("output", help="directory for model.onnx and the JSON side files")
    p.add_argument("--attributes", action="store_true", help="also write model.attributes.onnx (invalid ONNX)")
    p.add_argument("--seq-len", type=int, default=16, help="sequence length of the example inputs (default 16)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the example inputs (default 1)")
    p.set_defaults(func=cmd_export)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
