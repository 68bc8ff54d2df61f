"""``passes/`` ships as ``hiercompile.passes``: from this (editable) install and from a built wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import hiercompile.passes
import pytest

ROOT = Path(__file__).resolve().parents[1]


PROBE = (
    "import hiercompile, hiercompile.passes, importlib.util;"
    "from hiercompile._hf._sources import presets;"
    "print(hiercompile.passes.__file__); print(sorted(presets()));"
    "print(importlib.util.find_spec('passes'))"
)


def test_this_install_has_no_top_level_passes(tmp_path):
    assert hiercompile.passes.ModuleHierarchy.__module__ == "hiercompile.passes.module_tags"
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, cwd=tmp_path)
    passes_file, preset_names, top_level = out.stdout.splitlines()
    assert Path(passes_file).name == "__init__.py"
    assert preset_names == "['bert-tiny']"
    assert top_level == "None"


@pytest.mark.slow
def test_wheel_installs_passes_inside_the_package(tmp_path):
    # built from a copy of the sources alone: a build/ folder an earlier build left would add its files
    source = tmp_path / "source"
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "site")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("hiercompile-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"hiercompile", wheel.name.split("-py")[0] + ".dist-info"}
    assert "hiercompile/passes/module_tags.py" in names
    assert "hiercompile/_hf/presets/bert-tiny.json" in names
    assert "hiercompile/_tools/report.html" in names  # the report page template
    assert {"hiercompile/_exporter/_export.py", "hiercompile/_runtime/_backend.py"} <= set(names)
    sources = {  # every module of the package's source tree is in the wheel
        f"hiercompile/{p.relative_to(ROOT / 'hiercompile').as_posix()}" for p in (ROOT / "hiercompile").rglob("*.py")
    }
    assert sources == {n for n in names if n.endswith(".py") and not n.startswith("hiercompile/passes/")}, sorted(
        sources ^ set(names)
    )
    # installed into a folder of its own, found first on the path: inside a venv or not, the
    # interpreter sees the wheel's package and this environment's dependencies
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, cwd=tmp_path, env=env
    ).stdout
    passes_file, preset_names, top_level = out.splitlines()
    assert passes_file == str(target / "hiercompile" / "passes" / "__init__.py")
    assert preset_names == "['bert-tiny']"
    assert top_level == "None"
