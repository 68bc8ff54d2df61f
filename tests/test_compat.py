"""The fence: private names of torch, onnxscript, onnx-ir and transformers only in ``hiercompile._compat``,
and the public paths it falls back to give the same model."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import bert_config, bert_inputs, run_ir

import hiercompile
from hiercompile._compat import PRIVATE_NAMES, available, fast_paths

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = {"torch", "onnxscript", "onnx_ir", "transformers"}


def _private(parts: list[str]) -> bool:
    return any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in parts)


def _chain(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def private_uses(path: Path) -> list[str]:
    """``line: name`` for each private name of the libraries a source file imports or reads
    (an ATen op such as ``torch.ops.aten._assert_async`` is an op's name, not a private one)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] in LIBRARIES and (_private(parts) or any(_private([a.name]) for a in node.names)):
                found.append(f"{node.lineno}: from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: import {a.name}"
                for a in node.names
                if a.name.split(".")[0] in LIBRARIES and _private(a.name.split("."))
            ]
        elif (
            isinstance(node, ast.Attribute)
            and (chain := _chain(node))
            and chain[0] in LIBRARIES
            and _private(chain[1:])
            and chain[1:2] != ["ops"]
        ):
            found.append(f"{node.lineno}: {'.'.join(chain)}")
    return [u for u in found if not any(o != u and o.startswith(u + ".") for o in found)]  # the whole name once


def test_private_names_are_used_only_behind_the_fence():
    files = [p for folder in ("hiercompile", "passes") for p in (ROOT / folder).rglob("*.py")]
    outside = {
        str(p.relative_to(ROOT)): uses
        for p in files
        if "_compat" not in p.relative_to(ROOT).parts and (uses := private_uses(p))
    }
    assert outside == {}
    inside = [u for p in (ROOT / "hiercompile" / "_compat").glob("*.py") for u in private_uses(p)]
    assert inside  # the check sees them where they are


def test_the_check_finds_a_private_name(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "import torch\nfrom torch._ops import OpOverload\n"
        "x = torch._guards.detect_fake_mode\ny = torch.ops.aten._to_copy\n"
    )
    assert private_uses(source) == ["2: from torch._ops import OpOverload", "3: torch._guards.detect_fake_mode"]


def test_every_listed_private_name_is_there_on_this_install():
    assert [name for name in PRIVATE_NAMES if not available(name)] == []


def _by_module(result: hiercompile.ExportResult) -> collections.Counter:
    return collections.Counter((node.metadata_props["hiercompile.tag"], node.op_type) for node in result.model.graph)


@pytest.mark.usefixtures("fast_paths_on")
def test_the_public_paths_give_the_same_model(monkeypatch):
    """Every fast path against the public path it stands for (``HIERCOMPILE_SAFE=1``): torch's
    export with its own table, whole decomposition and type promotion; onnxscript's public
    folding and rewriting. The same ops in the same modules, the same numbers."""
    from transformers import BertModel

    assert fast_paths()
    torch.manual_seed(0)
    model, inputs = BertModel(bert_config()).eval(), bert_inputs()
    fast = hiercompile.export(model, (), kwargs=inputs)
    monkeypatch.setenv("HIERCOMPILE_SAFE", "1")
    assert not fast_paths()
    public = hiercompile.export(model, (), kwargs=inputs)
    assert _by_module(fast) == _by_module(public)
    feeds = {k: v.numpy() for k, v in inputs.items()}
    for got, want in zip(run_ir(fast.model, feeds), run_ir(public.model, feeds), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("value", ["1", "true"])
def test_safe_turns_the_fast_paths_off(monkeypatch, value):
    monkeypatch.setenv("HIERCOMPILE_SAFE", value)
    assert not fast_paths()


def test_inlining_without_onnx_irs_cloner_gives_the_same_model(monkeypatch, tmp_path):
    """The functions form inlined by hand (no ``onnx_ir._cloner``) as with the cloner: the same
    nodes, names and tags."""
    import sys

    from hiercompile.passes import InlineFunctionsPass, get_tags

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).eval()
    functions = hiercompile.export(model, (torch.randn(2, 4),)).functions_model()

    def inlined():
        copy = functions.clone()
        InlineFunctionsPass()(copy)
        return [(n.name, n.op_type, get_tags(n), [v.name for v in n.inputs]) for n in copy.graph]

    from hiercompile._compat import onnx_ir as _onnx_ir

    with_cloner = inlined()
    copied = []
    real = _onnx_ir._copied
    monkeypatch.setattr(_onnx_ir, "_copied", lambda *a: copied.append(1) or real(*a))
    monkeypatch.setitem(sys.modules, "onnx_ir._cloner", None)  # an onnx-ir without it
    assert inlined() == with_cloner and copied


def test_a_missing_private_name_without_a_public_equivalent_is_a_compat_error():
    from hiercompile._compat import required

    with pytest.raises(hiercompile.CompatError, match=r"torch \S+ has no torch\._no_such\.thing.*doctor"):
        required("torch._no_such", "thing", "a test")
    with pytest.raises(hiercompile.CompatError, match=r"torch\._C\.no_such_name, which a test needs"):
        required("torch._C", "no_such_name", "a test")
