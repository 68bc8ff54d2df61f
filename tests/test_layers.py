"""The package's layers and the direction of its imports (docs/architecture.md, "Layers").

Each top-level module or subpackage of ``hiercompile`` is a unit with a layer; an import
goes to the same layer or one below, the units' import graph has no cycle, and no module
imports a private module of a subpackage it is not part of (it imports the subpackage).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
# 0: shared by all; 1: the export core; 2: tools on a tagged model, the runtime; 3: the
# Hugging Face layer; 4: the command line and the public names.
LAYERS = {
    **dict.fromkeys(
        ["_errors", "errors", "_version", "_io", "_logs", "_lazy", "_compat", "passes", "_artifacts", "_graph"], 0
    ),
    **dict.fromkeys(["_axes", "_ort"], 0),
    "_exporter": 1,
    "_tools": 2,
    "_runtime": 2,
    "_hf": 3,
    **dict.fromkeys(["_cli", "__main__", "__init__"], 4),
}


def _modules() -> dict[str, Path]:
    """{dotted module name: file} for the package and its passes."""
    found = {}
    for path in ROOT.glob("hiercompile/**/*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in ROOT.glob("passes/*.py"):
        name = "hiercompile.passes" + ("" if path.stem == "__init__" else f".{path.stem}")
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[str]:
    """The hiercompile modules ``name`` imports, anywhere in its file (functions and TYPE_CHECKING too)."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("hiercompile")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif (node.module or "").startswith("hiercompile"):
                target = node.module
            else:
                continue
            for alias in node.names:  # `from pkg import _module` imports the module
                found.append(f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target)
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


EDGES = [(name, target) for name, path in MODULES.items() for target in _imports(name, path)]


def test_every_unit_has_a_layer():
    assert {_unit(name) for name in MODULES} == set(LAYERS)


def upward(edges: list[tuple[str, str]]) -> list[str]:
    """Imports of a unit in a higher layer."""
    return [
        f"{a} ({LAYERS[_unit(a)]}) imports {b} ({LAYERS[_unit(b)]})"
        for a, b in edges
        if _unit(a) != _unit(b) and LAYERS[_unit(b)] > LAYERS[_unit(a)]
    ]


def cycles(edges: list[tuple[str, str]]) -> list[list[str]]:
    """Cycles among the units."""
    return list(nx.simple_cycles(nx.DiGraph((_unit(a), _unit(b)) for a, b in edges if _unit(a) != _unit(b))))


def private(edges: list[tuple[str, str]]) -> list[str]:
    """Imports of a private module of a subpackage from outside it."""
    return [
        f"{a} imports {b}"
        for a, b in edges
        if len(b.split(".")) == 3 and b.split(".")[2].startswith("_") and _unit(a) != b.split(".")[1]
    ]


def test_imports_go_down_or_across_never_up():
    assert upward(EDGES) == []


def test_the_units_import_graph_has_no_cycle():
    assert cycles(EDGES) == []


def test_no_module_imports_a_private_module_of_another_subpackage():
    assert private(EDGES) == []


def test_the_checks_catch_what_they_forbid():
    """Each check fails on an import it forbids (one that cannot fail holds nothing)."""
    assert upward([("hiercompile._exporter._result", "hiercompile._tools._verify")])
    assert cycles(
        [
            ("hiercompile._exporter._export", "hiercompile._tools"),
            ("hiercompile._tools._verify", "hiercompile._exporter"),
        ]
    )
    assert private([("hiercompile._tools._verify", "hiercompile._exporter._capture")])
    assert not private([("hiercompile._tools._verify", "hiercompile._tools._retag")])
    imports = dict.fromkeys(_imports("hiercompile._hf._pretrained", MODULES["hiercompile._hf._pretrained"]))
    assert {"hiercompile._exporter", "hiercompile._tools", "hiercompile._hf._sources"} <= set(imports)
