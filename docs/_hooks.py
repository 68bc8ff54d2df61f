"""The docs build: the benchmarks' charts are served from where the scripts write them."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]


def on_files(files, config):
    for chart in sorted((ROOT / "benchmarks" / "results").glob("*.png")):
        files.append(
            File(
                chart.relative_to(ROOT).as_posix(),
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files
