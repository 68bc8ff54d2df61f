"""A ~1B-parameter decoder (random weights): hiercompile.export vs plain torch.onnx.export.

Each approach runs once, in its own process (so peak RSS is its own), on the same
config and inputs: wall time of the export and save, peak RSS, the RSS the model
itself took, and file sizes. Weights exceed 2 GB, so both write external data.

    python benchmarks/large.py [--layers 20] [--seq-len 128]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _measure import markdown_table, quiet, rss, write_result

import hiercompile


def build(layers: int, seq_len: int) -> tuple[torch.nn.Module, dict]:
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=layers,
        num_attention_heads=16,
        num_key_value_heads=8,
    )
    torch.manual_seed(0)
    model = LlamaModel(config).eval()
    ids = torch.randint(0, 32000, (1, seq_len))
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "use_cache": False}


def child(approach: str, layers: int, seq_len: int, out: Path) -> dict:
    """Build the model, export it once with ``approach``, report what it cost."""
    quiet()
    model, inputs = build(layers, seq_len)
    built = rss() / 2**20
    steps: dict[str, float] = {}

    def progress(step: str, seconds: float | None) -> None:
        print(f"  {approach}: {step} {'…' if seconds is None else f'{seconds:.1f} s'}", file=sys.stderr, flush=True)
        if seconds is not None:
            steps[step] = seconds

    start = time.perf_counter()
    with torch.no_grad():
        if approach == "plain":
            torch.onnx.export(model, (), kwargs=inputs, dynamo=True, verbose=False).save(
                out / "model.onnx", external_data=True
            )
        else:
            hiercompile.export(model, (), out, kwargs=inputs, progress=progress)
    seconds = time.perf_counter() - start
    files = {p.name: p.stat().st_size / 2**20 for p in sorted(out.iterdir())}
    return {
        "seconds": seconds,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "model_mib": built,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "files": files,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--child", choices=["plain", "hiercompile"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        print(json.dumps(child(ns.child, ns.layers, ns.seq_len, ns.out)))
        return
    results = {}
    for approach in ("plain", "hiercompile"):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, __file__, "--child", approach, "--out", tmp]
            cmd += ["--layers", str(ns.layers), "--seq-len", str(ns.seq_len)]
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
            results[approach] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(approach, results[approach], file=sys.stderr)
    plain, ours = results["plain"], results["hiercompile"]
    rows = []
    for name, r in (("plain torch.onnx.export", plain), ("hiercompile.export", ours)):
        model_mib = r["files"].get("model.onnx", 0)
        data_mib = sum(v for k, v in r["files"].items() if k.endswith(".data"))
        rows.append(
            [
                name,
                f"{r['seconds']:.0f}",
                f"{r['peak_mib'] / 1024:.1f}",
                f"{(r['peak_mib'] - r['model_mib']) / 1024:.1f}",
                f"{model_mib:.1f} + {data_mib / 1024:.2f} GiB",
                str(len(r["files"])),
            ]
        )
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in ours["steps"].items())
    text = (
        f"LlamaModel config, {ours['parameters'] / 1e9:.2f} B parameters (hidden 2048, {ns.layers} layers, "
        f"fp32, random weights), seq {ns.seq_len}; each approach once in its own process. torch "
        f"{torch.__version__}, hiercompile {hiercompile.__version__}, {platform.machine()}, "
        f"{torch.get_num_threads()} threads.\n\n"
        + markdown_table(
            ["approach", "wall s", "peak RSS GiB", "peak above the model GiB", "model.onnx MiB + data", "files"],
            rows,
        )
        + f"\nTime ratio {ours['seconds'] / plain['seconds']:.2f}x, peak RSS ratio "
        f"{ours['peak_mib'] / plain['peak_mib']:.2f}x. hiercompile's steps: {steps} (it also writes the "
        "hierarchy, DAG and operations JSON files).\n"
    )
    write_result("large.md", text)


if __name__ == "__main__":
    main()
