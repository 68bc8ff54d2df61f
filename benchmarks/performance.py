"""Export time against plain ``torch.onnx.export`` as the model deepens, step by step.

BERT (hidden 128, seq 128) at 2, 24, 48 and 96 layers: plain ``torch.onnx.export(...,
dynamo=True)`` and ``hiercompile.export``, in memory (no file written: the disk is not
what is compared), alternating in one process after a warm-up each; medians of --runs.
For hiercompile: each step's seconds, and within carry onnxscript's optimizer apart from
hiercompile's own passes. Targets: <= 1.0x plain at 2 layers and <= 0.85x at 48, with no
more nodes than plain.

The warm runs reuse what a process builds once (torch's translation table, about 2 s);
so the first export of a fresh process is measured too, each approach in processes of
its own, and the CLI: ``hiercompile --help`` and ``hiercompile export bert-tiny``.

    python benchmarks/performance.py [--runs 3] [--depths 2,24,48,96]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
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


def plain(model: torch.nn.Module, inputs: dict) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return len(torch.onnx.export(model, (), kwargs=inputs, dynamo=True, verbose=False).model.graph)


def ours(model: torch.nn.Module, inputs: dict) -> tuple[int, dict[str, float]]:
    from compare import pass_times

    with pass_times() as passes:
        result = hiercompile.export(model, (), kwargs=inputs)
    steps = dict(result.timings)
    own = sum(seconds for name, seconds in passes.items() if name != "optimizer")  # hiercompile's passes
    steps["optimizer"] = steps["carry"] - own  # the rest of carry: onnxscript's and onnx-ir's passes
    steps["carry"] = own
    return len(result.model.graph), steps


def depth_row(layers: int, runs: int) -> list[str]:
    model, inputs = bert(layers)
    plain(model, inputs), ours(model, inputs)  # warm-up
    times: dict[str, list[float]] = {"plain": [], "ours": []}
    steps: list[dict[str, float]] = []
    for _ in range(runs):
        start = time.perf_counter()
        plain_nodes = plain(model, inputs)
        times["plain"].append(time.perf_counter() - start)
        start = time.perf_counter()
        our_nodes, timings = ours(model, inputs)
        times["ours"].append(time.perf_counter() - start)
        steps.append(timings)
    p, o = statistics.median(times["plain"]), statistics.median(times["ours"])
    step = {k: statistics.median(s[k] for s in steps) for k in ("capture", "lower", "optimizer", "carry", "derive")}
    print(layers, p, o, step, file=sys.stderr)
    return [str(layers), str(plain_nodes), str(our_nodes), f"{p:.2f}", f"{o:.2f}", f"{o / p:.2f}x"] + [
        f"{step[k]:.2f}" for k in step
    ]


def fresh(code: str, runs: int) -> float:
    """Median wall time of ``python -c code`` in a fresh process."""
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def cli(args: list[str], runs: int) -> float:
    exe = shutil.which("hiercompile") or sys.executable
    cmd = [exe] if exe != sys.executable else [exe, "-m", "hiercompile"]
    seconds = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run([*cmd, *(a.replace("OUT", tmp + "/out") for a in args)], check=True, capture_output=True)
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


FIRST = "import sys; sys.path.insert(0, {here!r}); from performance import bert, {call}; {call}(*bert(2))"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--depths", default="2,24,48,96")
    ns = parser.parse_args()
    quiet()
    rows = [depth_row(int(d), ns.runs) for d in ns.depths.split(",")]
    here = str(Path(__file__).parent)
    first = {name: fresh(FIRST.format(here=here, call=name), ns.runs) for name in ("plain", "ours")}
    start_up = {
        "hiercompile --help": cli(["--help"], ns.runs),
        "hiercompile export bert-tiny OUT": cli(["export", "bert-tiny", "OUT"], ns.runs),
    }
    header = ["layers", "plain nodes", "nodes", "plain s", "hiercompile s", "ratio"]
    header += ["capture", "lower", "optimizer", "own passes", "derive"]
    text = (
        f"BERT (hidden 128, seq 128), exported in memory; medians of {ns.runs} alternating runs in one process "
        f"after a warm-up each. Step columns: hiercompile's seconds (optimizer: onnxscript's passes, run by "
        f"plain export too). torch {torch.__version__}, hiercompile {hiercompile.__version__}, "
        f"{platform.machine()}, {torch.get_num_threads()} threads.\n\n"
        + markdown_table(header, rows)
        + "\nFirst export in a fresh process (2 layers, imports included, medians of "
        f"{ns.runs} processes each):\n\n"
        + markdown_table(
            ["approach", "s"],
            [["plain torch.onnx.export", f"{first['plain']:.2f}"], ["hiercompile.export", f"{first['ours']:.2f}"]],
        )
        + "\nThe CLI, end to end, in a fresh process each:\n\n"
        + markdown_table(["command", "s"], [[k, f"{v:.2f}"] for k, v in start_up.items()])
    )
    write_result("performance.md", text)
    print(json.dumps({"first": first, "cli": start_up}), file=sys.stderr)


if __name__ == "__main__":
    main()
