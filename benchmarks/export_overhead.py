"""hiercompile.export vs plain torch.onnx.export(dynamo=True): time and peak memory.

Both run in this one process, alternating, after a warm-up each; medians of --runs.
Targets: time ratio <= 1.10, peak-memory ratio <= 1.2.

    python benchmarks/export_overhead.py [--runs 5] [--models bert-tiny,bert-base-12]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import sys
import tempfile
from pathlib import Path

import torch
from _measure import alternate, markdown_table, median, quiet, write_result
from transformers import BertConfig, BertModel

import hiercompile

CONFIGS = {
    "bert-tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
    "bert-base-12": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}


def plain_export(model, kwargs, path: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(model, (), kwargs=kwargs, dynamo=True, verbose=False).save(path)


def bench(name: str, runs: int) -> list[str]:
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=30522, **CONFIGS[name])).eval()
    kwargs = {"input_ids": torch.randint(0, 1000, (1, 128)), "attention_mask": torch.ones(1, 128, dtype=torch.long)}
    with tempfile.TemporaryDirectory() as tmp:
        res = alternate(
            runs,
            plain=lambda: plain_export(model, kwargs, Path(tmp) / "plain.onnx"),
            hiercompile=lambda: hiercompile.export(model, (), Path(tmp) / "ours", kwargs=kwargs),
        )
    t_plain, t_ours = median(res["plain"], 0), median(res["hiercompile"], 0)
    m_plain, m_ours = median(res["plain"], 1), median(res["hiercompile"], 1)
    ratios = (f"{t_ours / t_plain:.2f}x", f"{m_ours / max(m_plain, 1e-9):.2f}x")
    return [name, f"{t_plain:.2f}", f"{t_ours:.2f}", ratios[0], f"{m_plain:.0f}", f"{m_ours:.0f}", ratios[1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", default=",".join(CONFIGS))
    ns = parser.parse_args()
    quiet()
    rows = []
    for name in ns.models.split(","):
        rows.append(bench(name, ns.runs))
        print(rows[-1], file=sys.stderr)
    header = ["model (seq 128)", "plain s", "hiercompile s", "time ratio", "plain MiB", "hiercompile MiB", "mem ratio"]
    text = (
        f"Medians of {ns.runs} alternating runs in one process after a warm-up; peak RSS growth per call. "
        f"torch {torch.__version__}, hiercompile {hiercompile.__version__}, {platform.machine()}, "
        f"{torch.get_num_threads()} threads.\n\n" + markdown_table(header, rows)
    )
    write_result("export_overhead.md", text)


if __name__ == "__main__":
    main()
