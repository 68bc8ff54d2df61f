"""Shared helpers of the benchmarks: wall time and peak memory of one call, medians, markdown."""

from __future__ import annotations

import gc
import logging
import os
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def measure(fn: Callable[[], object]) -> tuple[float, float]:
    """(seconds, peak RSS growth in MiB) of one call; RSS is sampled every 2 ms by a thread."""
    gc.collect()
    start_rss = peak = rss()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return seconds, (max(peak, rss()) - start_rss) / 2**20


def alternate(runs: int, **candidates: Callable[[], object]) -> dict[str, list[tuple[float, float]]]:
    """Run every candidate ``runs`` times, alternating, after one warm-up call each."""
    for fn in candidates.values():
        fn()
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in candidates}
    for _ in range(runs):
        for name, fn in candidates.items():
            results[name].append(measure(fn))
    return results


def median(samples: list[tuple[float, float]], index: int) -> float:
    return statistics.median(s[index] for s in samples)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_result(name: str, text: str) -> Path:
    """Print the results table and write it to ``benchmarks/results/<name>`` (what the docs include)."""
    print(text)
    path = Path(__file__).parent / "results" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"written to {path}", file=sys.stderr)
    return path


def quiet() -> None:
    """Silence the exporters' warnings and progress logs, which would drown the tables."""
    for logger in ("torch.onnx", "onnxscript", "torch._dynamo"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
