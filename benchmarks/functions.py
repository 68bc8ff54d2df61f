"""ONNX Runtime on the functions form vs the flat model: session creation, latency, size.

Both forms of the same export, in this one process, alternating, medians of --runs.
Target: inference latency of the functions form <= 1.02x flat.

    python benchmarks/functions.py [--runs 20]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import torch
from _measure import markdown_table, quiet, write_result
from export_overhead import CONFIGS
from transformers import BertConfig, BertModel

import hiercompile


def session(path: Path) -> tuple[ort.InferenceSession, float]:
    start = time.perf_counter()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess, time.perf_counter() - start


def bench(name: str, runs: int, folder: Path) -> list[str]:
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=30522, **CONFIGS[name])).eval()
    ids = torch.randint(0, 1000, (1, 128))
    result = hiercompile.export(model, kwargs={"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    functions = result.functions_model()
    paths = {"flat": folder / f"{name}.onnx", "functions": folder / f"{name}.functions.onnx"}
    ir.save(result.model, paths["flat"])
    ir.save(functions, paths["functions"])
    feeds = {"input_ids": ids.numpy(), "attention_mask": np.ones_like(ids.numpy())}
    create: dict[str, list[float]] = {k: [] for k in paths}
    latency: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(3):
        for kind, path in paths.items():
            create[kind].append(session(path)[1])
    sessions = {kind: session(path)[0] for kind, path in paths.items()}
    for sess in sessions.values():
        for _ in range(3):
            sess.run(None, feeds)
    for _ in range(runs):
        for kind, sess in sessions.items():
            start = time.perf_counter()
            sess.run(None, feeds)
            latency[kind].append(time.perf_counter() - start)
    med = {k: statistics.median(v) * 1e3 for k, v in latency.items()}
    nodes_flat = len(result.model.graph)
    nodes_fn = len(functions.graph) + sum(len(f) for f in functions.functions.values())
    return [
        name,
        f"{nodes_flat}",
        f"{nodes_fn} ({len(functions.functions)} functions)",
        f"{statistics.median(create['flat']):.2f}",
        f"{statistics.median(create['functions']):.2f}",
        f"{med['flat']:.2f}",
        f"{med['functions']:.2f}",
        f"{med['functions'] / med['flat']:.3f}x",
        f"{paths['flat'].stat().st_size / 2**20:.1f} / {paths['functions'].stat().st_size / 2**20:.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    ns = parser.parse_args()
    quiet()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench(name, ns.runs, Path(tmp)) for name in CONFIGS]
    header = [
        "model (seq 128)",
        "flat nodes",
        "functions nodes",
        "session flat s",
        "session functions s",
        "flat ms",
        "functions ms",
        "latency ratio",
        "MiB flat / functions",
    ]
    text = (
        f"Medians: session creation of 3, latency of {ns.runs} alternating runs, one process. "
        f"onnxruntime {ort.__version__}, {platform.machine()}.\n\n" + markdown_table(header, rows)
    )
    write_result("functions.md", text)


if __name__ == "__main__":
    main()
