"""README's commands stay true: CI runs README's test command, and the main job's preset exists."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from hiercompile._hf._sources import presets

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_command = next(b for b in _bash_blocks() if "pytest" in b).strip().split(" && ")[-1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()
    assert "pip install -q torch==2.13.0" in ci
    assert ci.index("torch==2.13.0") < ci.index('-e ".[test,tools,docs]"')


def test_main_job_uses_a_shipped_preset():
    main_job = next(b for b in _bash_blocks() if "hiercompile export" in b)
    preset = re.search(r"hiercompile export (\S+)", main_job).group(1)
    assert preset in presets()
    assert main_job.startswith("pip install torch==2.13.0")


def test_every_benchmark_result_is_in_the_docs_as_written():
    """The docs include each results file as the script wrote it (a snippet, not a copy)."""
    pages = "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    results = sorted((ROOT / "benchmarks" / "results").glob("*.md"))
    assert {p.stem for p in results} >= {"export_overhead", "functions", "compare", "backend", "large", "retag"}
    for path in results:
        assert f'--8<-- "benchmarks/results/{path.name}"' in pages, path.name
    for chart in (ROOT / "benchmarks" / "results").glob("*.png"):
        assert f"benchmarks/results/{chart.name}" in pages, chart.name


def test_readme_is_a_front_page_that_names_nothing_outside_the_repo():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) < 20_000
    links = re.findall(r"\]\(([^)#]+)", readme)
    assert links and all((ROOT / link).exists() for link in links if "://" not in link), links
    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "hiercompile").rglob("*.py")]:
        text = path.read_text()
        assert "../shared" not in text and "SPEC §" not in text, path


def test_the_docs_build_with_warnings_as_errors(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[docs]') builds the site")
    import subprocess
    import sys

    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "tags" / "index.html").is_file()
    assert (tmp_path / "site" / "benchmarks" / "results" / "compare.png").is_file()
