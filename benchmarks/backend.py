"""Steady-state latency: eager PyTorch vs torch.compile(backend="hiercompile") (ONNX Runtime).

Both run in this one process on the same inputs, alternating, after warm-up; medians of
--runs timed calls. Also the first call's time (capture + export + session creation).
Target: the backend no slower than eager at steady state.

    python benchmarks/backend.py [--runs 30] [--device cuda]

With ``--device cuda`` (a GPU and onnxruntime-gpu) the model and inputs live on the GPU,
ONNX Runtime runs on CUDA through IO binding, every call is synchronized, and the table
goes to ``results/backend_cuda.md``.
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


def timed(fn, device: str) -> float:
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(name: str, batch: int, runs: int, device: str) -> list[str]:
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=30522, **CONFIGS[name])).eval().to(device)
    inputs = {
        "input_ids": torch.randint(0, 1000, (batch, 128), device=device),
        "attention_mask": torch.ones(batch, 128, dtype=torch.long, device=device),
    }
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=hiercompile.backend())
    with torch.no_grad():
        first = timed(lambda: compiled(**inputs), device)
        for _ in range(3):
            model(**inputs), compiled(**inputs)
        eager, ours = [], []
        for _ in range(runs):
            eager.append(timed(lambda: model(**inputs), device))
            ours.append(timed(lambda: compiled(**inputs), device))
    eager_ms, ours_ms = sorted(eager)[runs // 2] * 1e3, sorted(ours)[runs // 2] * 1e3
    return [name, str(batch), f"{eager_ms:.1f}", f"{ours_ms:.1f}", f"{ours_ms / eager_ms:.2f}x", f"{first:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ns = parser.parse_args()
    quiet()
    rows = []
    for name in CONFIGS:
        for batch in (1, 8):
            rows.append(bench(name, batch, ns.runs, ns.device))
            print(rows[-1], file=sys.stderr)
    header = ["model (seq 128)", "batch", "eager ms", "hiercompile ms", "ratio", "first call s"]
    where = f"{platform.machine()}, {torch.get_num_threads()} threads"
    if ns.device == "cuda":
        import onnxruntime

        where = f"{torch.cuda.get_device_name()}, onnxruntime-gpu {onnxruntime.__version__}, CUDA provider"
    text = (
        f"Medians of {ns.runs} alternating calls in one process after warm-up. torch {torch.__version__}, "
        f"hiercompile {hiercompile.__version__}, {where}.\n\n" + markdown_table(header, rows)
    )
    write_result("backend.md" if ns.device == "cpu" else "backend_cuda.md", text)


if __name__ == "__main__":
    main()
