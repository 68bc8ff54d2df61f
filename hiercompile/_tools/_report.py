"""The HTML report: one offline page with the module tree, each module's DAG, profile and verify results."""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

from .._artifacts import (
    DAGS_FILE,
    HIERARCHY_FILE,
    MODEL_FILE,
    OPERATIONS_FILE,
    PROFILE_FILE,
    REPORT_FILE,
    VERIFY_FILE,
    add_files,
    check_not_top,
    read_manifest,
    read_result,
)
from .._errors import InputError
from .._io import Writer


def _read(directory: Path, name: str) -> dict | None:
    path = directory / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def report_data(directory: Path) -> dict:
    """What the page shows, from an export directory's side files (profile and verify when present
    and made for this folder's model).

    Ops are listed once (``[name, op_type, primary tag]``) and the module DAGs refer
    to them by index, so a deep model's page stays small.
    """
    check_not_top(directory)
    missing = [name for name in (HIERARCHY_FILE, DAGS_FILE, OPERATIONS_FILE) if not (directory / name).is_file()]
    if missing:
        raise InputError(f"{directory} has no {', '.join(missing)}: pass a directory written by `hiercompile export`")
    hierarchy, dags, operations = (_read(directory, name) for name in (HIERARCHY_FILE, DAGS_FILE, OPERATIONS_FILE))
    names = [name for name, op in operations.items() if op["op_type"] != "Initializer"]
    index = {name: k for k, name in enumerate(names)}
    profile = read_result(directory, PROFILE_FILE)  # None when made for another model (with a warning)
    verify = read_result(directory, VERIFY_FILE)
    return {
        "hierarchy": hierarchy,
        "ops": [[name, operations[name]["op_type"], (operations[name]["tags"] or [""])[0]] for name in names],
        "dags": {
            tag: {
                "nodes": [index[n] for n in dag["nodes"]],
                "edges": [[index[a], index[b]] for a, b in dag["edges"]],
            }
            for tag, dag in dags.items()
        },
        "profile": profile["modules"] if profile else None,
        "verify": verify["modules"] if verify else None,
    }


def report_writer(directory: Path) -> Writer:
    """A writer for ``report.html`` from ``directory``'s side files."""
    data = report_data(directory)
    root = next((tag for tag, entry in data["hierarchy"].items() if not entry["parent"]), "")
    model = read_manifest(directory).get("model", MODEL_FILE)
    title = f"{root.lstrip('/')}: {Path(directory).resolve().name}/{model}"  # which file, of several exported
    text = json.dumps(data, separators=(",", ":"), sort_keys=True).replace("</", "<\\/")  # safe inside <script>
    template = resources.files(__package__).joinpath(REPORT_FILE).read_text(encoding="utf-8")
    page = template.replace("__TITLE__", html.escape(title)).replace("__DATA__", text)

    def write(path: Path) -> None:
        path.write_text(page, encoding="utf-8")

    return write


def report(directory: str | Path) -> Path:
    """Write ``report.html`` into an export directory and return its path.

    The page is self-contained (no network): a collapsible module tree with class,
    own/subtree op counts, parameters, and ``profile.json``'s times and
    ``verify.json``'s statuses when those files are there; clicking a module draws
    its DAG from ``module_dags.json``; a search box filters by tag or class.
    """
    directory = Path(directory)
    (path,) = add_files(directory, {REPORT_FILE: report_writer(directory)})
    return path
