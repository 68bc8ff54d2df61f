"""README's commands stay true: CI runs README's test command, and the main job's preset exists."""

from __future__ import annotations

import re
from pathlib import Path

from hiercompile._sources import presets

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_command = next(b for b in _bash_blocks() if "pytest" in b).strip().split(" && ")[-1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()
    assert "pip install -q torch==2.13.0" in ci
    assert ci.index("torch==2.13.0") < ci.index('-e ".[test,tools]"')


def test_main_job_uses_a_shipped_preset():
    main_job = next(b for b in _bash_blocks() if "hiercompile export" in b)
    preset = re.search(r"hiercompile export (\S+)", main_job).group(1)
    assert preset in presets()
    assert main_job.startswith("pip install torch==2.13.0")


def test_readme_shows_the_benchmark_results_as_written():
    readme = (ROOT / "README.md").read_text()
    results = sorted((ROOT / "benchmarks" / "results").glob("*.md"))
    assert {p.stem for p in results} >= {"export_overhead", "functions", "compare", "backend", "large", "retag"}
    for path in results:
        rows = [line for line in path.read_text().splitlines() if line.startswith("| ")]
        assert rows, path
        missing = [row for row in rows if row not in readme]
        assert not missing, f"README is out of date with {path.name}: {missing[:2]}"
