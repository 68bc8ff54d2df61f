"""hiercompile (FX capture) vs hook-based tagging (TorchScript scopes), side by side in one run.

Per model: coverage (non-Constant nodes tagged from direct evidence: a module stack for
hiercompile; a scope name or a parameter for hooks), functional accuracy (share of kept
modules whose PyTorch output is produced by a node tagged inside the module, the
``hiercompile.verify`` check), root-fallback share, export time (median of --runs,
alternating), peak RSS growth, node count, file size. Then scaling over BERT depth.
Writes benchmarks/results/compare.md and two PNG charts.

    python benchmarks/compare.py [--runs 5] [--models bert-tiny,...] [--no-scaling] [--no-chart]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import onnx_ir as ir
import torch
from _measure import alternate, markdown_table, median, quiet, write_result
from baselines.hook_tagging import hook_export
from export_overhead import CONFIGS, plain_export
from transformers import BertConfig, BertModel

import hiercompile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "zoo"))
from models import build

MODELS = ["bert-tiny", "bert-base-12", "gpt2", "vit", "resnet", "whisper", "clip"]
CHECKED = ("matched", "diverged", "not produced")


def load(name: str) -> tuple[torch.nn.Module, dict]:
    if name in CONFIGS:
        torch.manual_seed(0)
        model = BertModel(BertConfig(vocab_size=30522, **CONFIGS[name])).eval()
        ids = torch.randint(0, 1000, (1, 128))
        return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    return build(name)


def accuracy(model, inputs, onnx_model) -> float:
    report = hiercompile.verify(model, (), inputs, onnx_model)
    checked = [c for c in report.modules if c.status in CHECKED]
    return sum(c.status == "matched" for c in checked) / len(checked) if checked else 1.0


def compare_model(name: str, runs: int, folder: Path) -> dict:
    model, inputs = load(name)
    ours_dir, hook_path = folder / f"{name}-ours", folder / f"{name}-hooks.onnx"
    row: dict = {"model": name}
    result = hiercompile.export(model, (), ours_dir, kwargs=inputs)
    row["ours"] = {
        "coverage": result.coverage,
        "accuracy": accuracy(model, inputs, result.model),
        "root": sum(
            d["tags"][0] == result.model.graph.name or d["tags"][0].count("/") == 1
            for _, d in result.graph.nodes(data=True)
        )
        / max(result.graph.number_of_nodes(), 1),
        "nodes": result.graph.number_of_nodes(),
        "mib": (ours_dir / "model.onnx").stat().st_size / 2**20,
    }
    try:
        hooks = hook_export(model, inputs, hook_path)
    except Exception as e:
        row["hooks"] = {"error": (str(e).strip().splitlines() or [type(e).__name__])[0][:80]}
        candidates = {"hiercompile": lambda: hiercompile.export(model, (), ours_dir, kwargs=inputs)}
    else:
        total = sum(hooks.strategy.values())
        row["hooks"] = {
            "coverage": (hooks.strategy["scope"] + hooks.strategy["parameter"]) / total,
            "accuracy": accuracy(model, inputs, hook_path),
            "root": hooks.strategy["root"] / total,
            "nodes": total,
            "mib": hook_path.stat().st_size / 2**20,
        }
        candidates = {
            "hiercompile": lambda: hiercompile.export(model, (), ours_dir, kwargs=inputs),
            "hooks": lambda: hook_export(model, inputs, hook_path),
        }
    timings = alternate(runs, **candidates)
    for approach, samples in timings.items():
        key = "ours" if approach == "hiercompile" else "hooks"
        row[key]["seconds"] = median(samples, 0)
        row[key]["peak_mib"] = median(samples, 1)
    return row


@contextlib.contextmanager
def pass_times() -> Iterator[dict[str, float]]:
    """Seconds per ONNX pass class while the block runs: hiercompile's passes by name, all
    others (onnxscript's optimizer, onnx-ir's clean-ups) as ``optimizer``."""
    totals: dict[str, float] = collections.defaultdict(float)
    original = ir.passes.PassBase.__call__

    def timed(self, model):
        if isinstance(self, ir.passes.Sequential | ir.passes.PassManager):
            return original(self, model)
        start = time.perf_counter()
        try:
            return original(self, model)
        finally:
            ours = type(self).__module__.startswith("hiercompile")
            totals[type(self).__name__ if ours else "optimizer"] += time.perf_counter() - start

    ir.passes.PassBase.__call__ = timed
    try:
        yield totals
    finally:
        ir.passes.PassBase.__call__ = original


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection inside a timed export, as ``timeit`` does: a full collection of
    this process's heap (every model and export so far) takes about 0.3 s and lands in
    whichever step is running, which made a step's time per node a matter of chance."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def scaling(runs: int, folder: Path, depths: tuple[int, ...] = (2, 6, 12, 24, 48)) -> list[dict]:
    """BERT depth sweep: µs per ONNX node of the FX tag pass, each of our ONNX passes, derive
    and (for context) the optimizer; total export time against plain export, alternating,
    each without garbage collection inside (:func:`collector_paused`)."""
    rows = []
    for layers in depths:
        torch.manual_seed(0)
        config = BertConfig(vocab_size=30522, hidden_size=128, num_hidden_layers=layers, num_attention_heads=2)
        model = BertModel(config).eval()
        ids = torch.randint(0, 1000, (1, 128))
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        samples: list[dict[str, float]] = []
        plain: list[float] = []
        ours: list[float] = []
        for _ in range(runs):
            with collector_paused():
                start = time.perf_counter()
                plain_export(model, inputs, folder / "plain.onnx")
                plain.append(time.perf_counter() - start)
            with collector_paused(), pass_times() as passes:
                start = time.perf_counter()
                result = hiercompile.export(model, (), folder / "ours", kwargs=inputs)
                ours.append(time.perf_counter() - start)
            samples.append({"tag": result.timings["tag"], **passes, "derive": result.timings["derive"]})
        nodes = result.graph.number_of_nodes()
        median_us = {k: statistics.median(s[k] for s in samples) / nodes * 1e6 for k in samples[0]}
        optimizer = median_us.pop("optimizer")
        per_node = {k.removesuffix("Pass"): v for k, v in median_us.items()}
        per_node |= {"ours": sum(median_us.values()), "optimizer": optimizer}
        rows.append(
            {
                "layers": layers,
                "nodes": nodes,
                "per_node_us": per_node,
                "ratio": statistics.median(ours) / statistics.median(plain),
            }
        )
        print(rows[-1], file=sys.stderr)
    return rows


def charts(rows: list[dict], scale: list[dict]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(__file__).parent / "results"
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    names = [r["model"] for r in rows]
    x = range(len(names))
    for ax, metric, title in ((axes[0], "coverage", "coverage"), (axes[1], "accuracy", "functional accuracy")):
        ours = [r["ours"][metric] for r in rows]
        hooks = [r["hooks"].get(metric, 0.0) for r in rows]
        ax.bar([i - 0.2 for i in x], ours, 0.4, label="hiercompile")
        ax.bar([i + 0.2 for i in x], hooks, 0.4, label="hook-based")
        ax.set_xticks(list(x), names, rotation=30)
        ax.set_ylim(0, 1.05)
        ax.set_title(title)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "compare.png", dpi=110)
    paths = [out / "compare.png"]
    if scale:
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"wspace": 0.9})
        layers = [s["layers"] for s in scale]
        for step in scale[0]["per_node_us"]:
            style = {"linestyle": "--", "color": "black"} if step == "optimizer" else {}
            label = "onnxscript optimizer (plain export runs it too)" if step == "optimizer" else step
            left.plot(layers, [s["per_node_us"][step] for s in scale], marker="o", label=label, **style)
        left.set_yscale("log")
        left.set_xlabel("BERT layers (hidden 128)")
        left.set_ylabel("µs per ONNX node (log)")
        left.set_title("hiercompile's steps, time per node")
        left.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        right.plot(layers, [s["ratio"] for s in scale], marker="o", color="tab:red")
        right.axhline(1.10, linestyle="--", color="grey", label="target 1.10x")
        right.set_ylim(0, max(1.5, *(s["ratio"] for s in scale)) + 0.1)
        right.set_xlabel("BERT layers (hidden 128)")
        right.set_title("total export time / plain dynamo export")
        right.legend()
        fig.savefig(out / "scaling.png", dpi=110, bbox_inches="tight")
        paths.append(out / "scaling.png")
    return paths


def render(rows: list[dict], scale: list[dict], runs: int) -> str:
    header = [
        "model",
        "approach",
        "coverage",
        "functional accuracy",
        "root-tagged",
        "export s",
        "peak MiB",
        "nodes",
        "MiB",
    ]
    table = []
    for r in rows:
        for key, label in (("ours", "hiercompile"), ("hooks", "hook-based")):
            m = r[key]
            if "error" in m:
                table.append([r["model"], label, f"failed: {m['error']}", "", "", "", "", "", ""])
                continue
            table.append(
                [
                    r["model"],
                    label,
                    f"{m['coverage']:.1%}",
                    f"{m['accuracy']:.1%}",
                    f"{m['root']:.1%}",
                    f"{m['seconds']:.2f}",
                    f"{m['peak_mib']:.0f}",
                    str(m["nodes"]),
                    f"{m['mib']:.1f}",
                ]
            )
    text = (
        f"Export time and peak RSS growth: medians of {runs} alternating runs in one process. Root-tagged: "
        "share of ops tagged with the root module: for hooks, ops with no evidence (the root fallback); for "
        "hiercompile, ops that ran in the root itself.\n\n" + markdown_table(header, table)
    )
    if scale:
        steps = list(scale[0]["per_node_us"])
        text += (
            "\nScaling (BERT, hidden 128, seq 128; medians of the runs, no garbage collection inside a timed "
            "export, as timeit does): µs per ONNX node of the FX tag pass, "
            "each of hiercompile's ONNX passes, derive, their sum (`ours`), and onnxscript's optimizer, "
            "which plain export runs too; then total export time vs plain export.\n\n"
        )
        text += markdown_table(
            ["layers", "nodes", *steps, "total / plain export"],
            [
                [
                    str(s["layers"]),
                    str(s["nodes"]),
                    *(f"{s['per_node_us'][k]:.1f}" for k in steps),
                    f"{s['ratio']:.2f}x",
                ]
                for s in scale
            ],
        )
        first, last = scale[0]["per_node_us"], scale[-1]["per_node_us"]
        text += (
            f"\nPer-node time of hiercompile's own work at {scale[-1]['layers']} layers vs {scale[0]['layers']}: "
            f"{last['ours'] / first['ours']:.2f}x (target <= 1.5x); the optimizer's: "
            f"{last['optimizer'] / first['optimizer']:.2f}x.\n"
        )
    return text


def run(models: list[str], runs: int, scaling_runs: int) -> tuple[list[dict], list[dict]]:
    quiet()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for name in models:
            rows.append(compare_model(name, runs, Path(tmp)))
            print(rows[-1], file=sys.stderr)
        scale = scaling(scaling_runs, Path(tmp)) if scaling_runs else []
    return rows, scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--scaling-runs", type=int, default=3, help="alternating runs per depth (median)")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--no-chart", action="store_true")
    ns = parser.parse_args()
    rows, scale = run(ns.models.split(","), ns.runs, 0 if ns.no_scaling else ns.scaling_runs)
    text = render(rows, scale, ns.runs)
    write_result("compare.md", text)
    if not ns.no_chart:
        for path in charts(rows, scale):
            print(f"chart: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
