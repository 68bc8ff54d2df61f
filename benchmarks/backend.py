"""Steady-state latency: eager PyTorch vs torch.compile(backend="hiercompile") (ONNX Runtime).

Both run in this one process on the same inputs, alternating, after warm-up; medians of
--runs timed calls. Also the first call's time (capture + export + session creation).
Target: the backend no slower than eager at steady state.

    python benchmarks/backend.py [--runs 30]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch
from _measure import markdown_table, quiet, write_result
from export_overhead import CONFIGS
from transformers import BertConfig, BertModel

import hiercompile


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(name: str, batch: int, runs: int) -> list[str]:
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=30522, **CONFIGS[name])).eval()
    inputs = {
        "input_ids": torch.randint(0, 1000, (batch, 128)),
        "attention_mask": torch.ones(batch, 128, dtype=torch.long),
    }
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=hiercompile.backend())
    with torch.no_grad():
        first = timed(lambda: compiled(**inputs))
        for _ in range(3):
            model(**inputs), compiled(**inputs)
        eager, ours = [], []
        for _ in range(runs):
            eager.append(timed(lambda: model(**inputs)))
            ours.append(timed(lambda: compiled(**inputs)))
    eager_ms, ours_ms = sorted(eager)[runs // 2] * 1e3, sorted(ours)[runs // 2] * 1e3
    return [name, str(batch), f"{eager_ms:.1f}", f"{ours_ms:.1f}", f"{ours_ms / eager_ms:.2f}x", f"{first:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    ns = parser.parse_args()
    quiet()
    rows = []
    for name in CONFIGS:
        for batch in (1, 8):
            rows.append(bench(name, batch, ns.runs))
            print(rows[-1], file=sys.stderr)
    header = ["model (seq 128)", "batch", "eager ms", "hiercompile ms", "ratio", "first call s"]
    text = (
        f"Medians of {ns.runs} alternating calls in one process after warm-up. torch {torch.__version__}, "
        f"hiercompile {hiercompile.__version__}, {platform.machine()}, {torch.get_num_threads()} threads.\n\n"
        + markdown_table(header, rows)
    )
    write_result("backend.md", text)


if __name__ == "__main__":
    main()
