"""The comparison benchmark runs end to end on BERT tiny and reports what it promises (not timings)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_compare_on_bert_tiny():
    import compare

    rows, scale = compare.run(["bert-tiny"], runs=1, scaling_runs=0)
    assert scale == []
    (row,) = rows
    for approach in ("ours", "hooks"):
        metrics = row[approach]
        assert set(metrics) == {"coverage", "accuracy", "root", "nodes", "mib", "seconds", "peak_mib"}
        assert 0.0 <= metrics["root"] <= 1.0 and metrics["nodes"] > 0 and metrics["seconds"] > 0
    assert row["ours"]["coverage"] == 1.0
    assert row["ours"]["accuracy"] == 1.0
    text = compare.render(rows, scale, runs=1)
    assert text.count("| bert-tiny |") == 2
