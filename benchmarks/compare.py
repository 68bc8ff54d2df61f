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
import statistics
import sys
import tempfile
import time
from pathlib import Path

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
    result = hiercompile.export(model, (), inputs, ours_dir)
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
        candidates = {"hiercompile": lambda: hiercompile.export(model, (), inputs, ours_dir)}
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
            "hiercompile": lambda: hiercompile.export(model, (), inputs, ours_dir),
            "hooks": lambda: hook_export(model, inputs, hook_path),
        }
    timings = alternate(runs, **candidates)
    for approach, samples in timings.items():
        key = "ours" if approach == "hiercompile" else "hooks"
        row[key]["seconds"] = median(samples, 0)
        row[key]["peak_mib"] = median(samples, 1)
    return row


def scaling(runs: int, folder: Path) -> list[dict]:
    rows = []
    for layers in (2, 6, 12, 24, 48):
        torch.manual_seed(0)
        config = BertConfig(vocab_size=30522, hidden_size=128, num_hidden_layers=layers, num_attention_heads=2)
        model = BertModel(config).eval()
        ids = torch.randint(0, 1000, (1, 128))
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        steps: list[dict] = []
        plain: list[float] = []
        ours: list[float] = []
        for _ in range(runs):
            start = time.perf_counter()
            plain_export(model, inputs, folder / "plain.onnx")
            plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            result = hiercompile.export(model, (), inputs, folder / "ours")
            ours.append(time.perf_counter() - start)
            steps.append(result.timings)
        nodes = result.graph.number_of_nodes()
        per_node = {s: statistics.median(t[s] for t in steps) / nodes * 1e6 for s in ("tag", "carry", "derive")}
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
        fig, ax = plt.subplots(figsize=(6, 3.8))
        layers = [s["layers"] for s in scale]
        for step in ("tag", "carry", "derive"):
            ax.plot(layers, [s["per_node_us"][step] for s in scale], marker="o", label=f"{step} (µs per node)")
        ax.set_xlabel("BERT layers (hidden 128)")
        ax.set_ylabel("µs per ONNX node")
        ax.legend()
        ax.set_title("hiercompile's passes scale linearly")
        fig.tight_layout()
        fig.savefig(out / "scaling.png", dpi=110)
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
        text += (
            "\nScaling (BERT, hidden 128, seq 128): µs per ONNX node of each hiercompile step, "
            "total vs plain export.\n\n"
        )
        text += markdown_table(
            ["layers", "nodes", "tag µs/node", "carry µs/node", "derive µs/node", "total / plain export"],
            [
                [
                    str(s["layers"]),
                    str(s["nodes"]),
                    *(f"{s['per_node_us'][k]:.1f}" for k in ("tag", "carry", "derive")),
                    f"{s['ratio']:.2f}x",
                ]
                for s in scale
            ],
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
    print(text)
    print(f"written to {write_result('compare.md', text)}", file=sys.stderr)
    if not ns.no_chart:
        for path in charts(rows, scale):
            print(f"chart: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
