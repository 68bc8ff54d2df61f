"""What the fast paths through private names buy: export time with them and with the public
paths they stand for (``HIERCOMPILE_SAFE=1``: ``torch.onnx.export`` for the lower stage, which
builds its table, decomposes the whole program and promotes every op; onnxscript's public
folding and rewriting).

BERT (hidden 128, seq 128) at 2 and 24 layers, and a 2-layer LLaMA-style decoder, exported in
memory, both ways alternating in one process after a warm-up each; medians of --runs. The
same model comes out both ways (tests/test_compat.py holds it).

    python benchmarks/fast_paths.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from _measure import markdown_table, quiet, write_result
from transformers import BertConfig, BertModel

import hiercompile


def bert(layers: int) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    config = BertConfig(hidden_size=128, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=512)
    ids = torch.randint(0, 1000, (1, 128))
    return BertModel(config).eval(), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def llama() -> tuple[torch.nn.Module, dict]:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from zoo.models import build

    return build("llama")


def timed(model: torch.nn.Module, inputs: dict, safe: bool) -> tuple[float, dict[str, float], int]:
    os.environ["HIERCOMPILE_SAFE"] = "1" if safe else "0"
    start = time.perf_counter()
    result = hiercompile.export(model, (), kwargs=inputs)
    return time.perf_counter() - start, dict(result.timings), len(result.model.graph)


def row(name: str, model: torch.nn.Module, inputs: dict, runs: int) -> list[str]:
    timed(model, inputs, False), timed(model, inputs, True)  # warm-up
    fast, safe = [], []
    for _ in range(runs):
        fast.append(timed(model, inputs, False))
        safe.append(timed(model, inputs, True))
    f, s = statistics.median(t for t, _, _ in fast), statistics.median(t for t, _, _ in safe)
    lower_f = statistics.median(steps["lower"] for _, steps, _ in fast)
    lower_s = statistics.median(steps["lower"] for _, steps, _ in safe)
    carry_f = statistics.median(steps["carry"] for _, steps, _ in fast)
    carry_s = statistics.median(steps["carry"] for _, steps, _ in safe)
    assert fast[0][2] == safe[0][2], "the two paths made models of different sizes"
    return [
        name,
        str(fast[0][2]),
        f"{f:.2f}",
        f"{s:.2f}",
        f"{s / f:.2f}x",
        f"{lower_f:.2f} / {lower_s:.2f}",
        f"{carry_f:.2f} / {carry_s:.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    quiet()
    rows = [row(f"BERT, {n} layers", *bert(n), runs) for n in (2, 24)]
    rows.append(row("LLaMA-style decoder, 2 layers", *llama(), runs))
    os.environ.pop("HIERCOMPILE_SAFE", None)
    header = ["model", "nodes", "fast paths s", "public paths s", "public / fast", "lower s (fast / public)", "carry s"]
    text = (
        f"Export in memory, medians of {runs} alternating runs after a warm-up. torch "
        f"{torch.__version__.split('+')[0]}, {platform.machine()}, {os.cpu_count()} cores.\n\n"
        + markdown_table(header, rows)
    )
    write_result("fast_paths.md", text)


if __name__ == "__main__":
    main()
