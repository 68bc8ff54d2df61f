"""The lower stage: ops of a library's own, through their Python implementation or a given translation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import run_ir
from onnxscript import opset18 as op
from torch import nn

import hiercompile


@torch.library.custom_op("hiercompile_lower_test::scaled", mutates_args=())
def scaled(x: torch.Tensor) -> torch.Tensor:
    return x * 2 + 1  # traceable: exported through this implementation


@scaled.register_fake
def _(x):
    return torch.empty_like(x)


@torch.library.custom_op("hiercompile_lower_test::by_rows", mutates_args=())
def by_rows(x: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(x)
    for i, n in enumerate(x.sum(dim=1).int().tolist()):  # data-dependent: cannot be traced
        out[i] = x[i] * n
    return out


@by_rows.register_fake
def _(x):
    return torch.empty_like(x)


class Uses(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.lin(x))


def test_custom_op_lowers_through_its_python_implementation():
    torch.manual_seed(0)
    model = Uses(scaled).eval()
    x = torch.randn(2, 4)
    result = hiercompile.export(model, (x,))
    assert result.coverage == 1.0
    assert {n.op_type for n in result.model.graph} == {"Gemm", "Mul", "Add"}
    assert {t: e["num_ops"] for t, e in result.hierarchy.items()} == {"/Uses": 3}
    with torch.no_grad():
        np.testing.assert_allclose(run_ir(result.model, {"x": x.numpy()})[0], model(x).numpy(), atol=1e-6)


def test_untraceable_custom_op_names_the_op_and_the_translation_table():
    with pytest.raises(hiercompile.LowerError) as info:
        hiercompile.export(Uses(by_rows).eval(), (torch.randn(2, 4),))
    message = str(info.value)
    assert "hiercompile_lower_test::by_rows has no ONNX translation" in message and "\n" not in message
    assert "custom_translation_table={torch.ops.hiercompile_lower_test.by_rows.default: " in message


def test_custom_translation_table_is_forwarded():
    def rows_times_sum(x):  # the ONNX translation for by_rows, as torch.onnx takes one
        return op.Mul(x, op.ReduceSum(x, op.Constant(value_ints=[1]), keepdims=1))

    torch.manual_seed(0)
    model = Uses(by_rows).eval()
    x = torch.randn(2, 4)
    table = {torch.ops.hiercompile_lower_test.by_rows.default: rows_times_sum}
    result = hiercompile.export(model, (x,), custom_translation_table=table)
    assert result.coverage == 1.0
    with torch.no_grad():
        hidden = model.lin(x)
    want = (hidden * hidden.sum(dim=1, keepdim=True)).numpy()  # the translation's own arithmetic
    np.testing.assert_allclose(run_ir(result.model, {"x": x.numpy()})[0], want, atol=1e-5)


def test_translation_table_is_torchs_own():
    from torch.onnx._internal.exporter._registration import ONNXRegistry

    from hiercompile._compat.torch_onnx import new_registry

    ours, torchs = new_registry(23), ONNXRegistry.from_torchlib(opset_version=23)

    def entries(registry):
        return {
            target: [(m.onnx_function, m.fx_target, m.is_complex, m.is_custom) for m in metas]
            for target, metas in registry.functions.items()
        }

    assert ours.opset_version == torchs.opset_version and len(ours.functions) > 400
    assert entries(ours) == entries(torchs)  # the same translations, in the same order of preference
    unsigned = sum(m.signature is None for metas in ours.functions.values() for m in metas)
    assert unsigned > 400  # signatures are inferred on lookup, as the model's ops need them
    for metas in torchs.functions.values():
        target = metas[0].fx_target
        assert [str(m.signature) for m in ours.get_decomps(target)] == [str(m.signature) for m in metas], target
    assert sum(m.signature is None for metas in ours.functions.values() for m in metas) < unsigned


_PLAIN_EXPORT_AFTER = """
import onnxscript, onnxscript.values, torch
original = onnxscript.script, onnxscript.TracedOnnxFunction, onnxscript.values.TracedOnnxFunction
import hiercompile
hiercompile.export(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.GELU()), (torch.randn(2, 4),))
assert (onnxscript.script, onnxscript.TracedOnnxFunction, onnxscript.values.TracedOnnxFunction) == original
from onnxscript.function_libs.torch_lib import registration
kinds = {type(f) for functions in registration.default_registry.values() for f in functions.overloads}
assert kinds <= {onnxscript.OnnxFunction, onnxscript.TracedOnnxFunction}, kinds
program = torch.onnx.export(torch.nn.LayerNorm(4), (torch.randn(2, 4),), dynamo=True, verbose=False)
print(sorted({n.op_type for n in program.model.graph}))
"""


def test_a_plain_torch_onnx_export_after_ours_uses_onnxscripts_own_objects():
    """Nothing of onnxscript's or torch's is replaced: a torch.onnx.export in the same process
    after a hiercompile export gets onnxscript's own functions (a fresh process)."""
    proc = subprocess.run([sys.executable, "-c", _PLAIN_EXPORT_AFTER], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LayerNormalization" in proc.stdout


class Block(nn.Module):
    """Ops torch's exporter decomposes (layer_norm's backward-free form, gelu, softmax, addmm) and views."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        h = nn.functional.gelu(self.norm(self.lin(x)), approximate="tanh")
        return h.softmax(-1).reshape(x.shape[0], -1)


class Floats(nn.Module):
    def forward(self, x):
        return x * x.sigmoid()


class IntLiteral(nn.Module):
    def forward(self, x):
        return x + 1  # an int where the op computes in float: torch's pass makes it a tensor


class MixedDtypes(nn.Module):
    def forward(self, x, ids):
        return x * ids + (ids > 0).sum() / 3


class PromotesInABranch(nn.Module):
    def forward(self, x):
        return torch.cond(x.sum() > 0, lambda x: x * 2, lambda x: x.abs() + 1, (x,))


@pytest.mark.usefixtures("fast_paths_on")
@pytest.mark.parametrize(
    ("model", "inputs", "needed"),
    [
        (Floats(), {"x": torch.randn(2, 4)}, False),
        (Block().eval(), {"x": torch.randn(3, 4, 8)}, False),
        (IntLiteral(), {"x": torch.randn(2, 4)}, True),
        (MixedDtypes(), {"x": torch.randn(2, 4), "ids": torch.ones(2, 4, dtype=torch.long)}, True),
        (PromotesInABranch(), {"x": torch.randn(2, 4)}, True),
    ],
    ids=["floats", "decomposed-block", "int-literal", "mixed-dtypes", "cond-branch"],
)
def test_type_promotion_runs_where_torchs_pass_changes_the_program(model, inputs, needed):
    from torch.onnx._internal.exporter import _fx_passes

    from hiercompile._compat.torch_onnx import needs_promotion
    from hiercompile._exporter._capture import capture
    from hiercompile._exporter._lower import Lowering, _decomposed_by_op, _tables

    program = capture(model, (), inputs).program
    if not _decomposed_by_op(program, _tables(Lowering())[0]):  # a branch: torch's exporter decomposes it whole
        program = _fx_passes.decompose_with_registry(program, _tables(Lowering())[0].registry)
    module = program.graph_module
    assert needs_promotion(module) is needed
    before = [str(m.graph) for m in module.modules()]
    _fx_passes.insert_type_promotion_nodes(module)  # torch's own pass, run on every op
    assert ([str(m.graph) for m in module.modules()] != before) is needed


@pytest.mark.usefixtures("fast_paths_on")
def test_a_program_without_promotions_lowers_as_with_torchs_pass(monkeypatch):
    from torch.onnx._internal.exporter import _fx_passes

    ran = []
    real = _fx_passes.insert_type_promotion_nodes
    monkeypatch.setattr(_fx_passes, "insert_type_promotion_nodes", lambda gm: ran.append(1) or real(gm))
    torch.manual_seed(0)
    model, x = Block().eval(), torch.randn(3, 4, 8)
    skipped = hiercompile.export(model, (x,))
    assert ran == []
    monkeypatch.setenv("HIERCOMPILE_SAFE", "1")  # the public path: torch.onnx.export promotes every program
    promoted = hiercompile.export(model, (x,))
    assert ran == [1] and skipped.operations == promoted.operations
    with torch.no_grad():
        np.testing.assert_allclose(run_ir(skipped.model, {"x": x.numpy()})[0], model(x).numpy(), atol=1e-5)
    monkeypatch.undo()
    mixed = MixedDtypes()
    ids = torch.arange(8).reshape(2, 4)
    result = hiercompile.export(mixed, kwargs={"x": torch.randn(2, 4), "ids": ids})
    assert "Cast" in {n.op_type for n in result.model.graph}  # the promotion torch's pass inserts
    feeds = {"x": np.ones((2, 4), np.float32), "ids": ids.numpy()}
    want = mixed(torch.ones(2, 4), ids).numpy()
    np.testing.assert_allclose(run_ir(result.model, feeds)[0], want, atol=1e-6)


@pytest.mark.usefixtures("fast_paths_on")
def test_tables_are_torchs_built_once_and_follow_the_ops_loaded():
    from torch.onnx._internal.exporter import _decomp
    from torch.onnx._internal.exporter._registration import ONNXRegistry

    from hiercompile._exporter._lower import Lowering, _tables

    _tables(Lowering())
    import torch.ao.quantization.fx._decomposed  # ops with translations, loaded after a table

    first = _tables(Lowering())[0]
    assert first is _tables(Lowering())[0]  # built once, shared by every export
    registry = ONNXRegistry.from_torchlib(opset_version=first.registry.opset_version)
    translated = set(_decomp.get_onnx_implemented_overloads(registry))
    assert torch.ops.quantized_decomposed.quantize_per_tensor.default in translated
    torchs = _decomp.create_onnx_friendly_decomposition_table(translated)
    assert first.translated == translated  # (torch wraps each composite op anew: compare the keys)
    assert first.decompositions.keys() == torchs.keys()
    with pytest.raises(TypeError):
        first.decompositions[torch.ops.aten.mul.Tensor] = None  # read-only: no export changes another's
    library = torch.library.Library("hiercompile_decomposition_test", "DEF")  # a composite op loaded later
    library.define("twice(Tensor x) -> Tensor")
    library.impl("twice", lambda x: x * 2, "CompositeImplicitAutograd")
    twice = torch.ops.hiercompile_decomposition_test.twice.default
    torchs = _decomp.create_onnx_friendly_decomposition_table(set(_decomp.get_onnx_implemented_overloads(registry)))
    assert twice in torchs and twice not in first.decompositions
    assert _tables(Lowering())[0].decompositions.keys() == torchs.keys()  # as torch's table, it follows the ops


@pytest.mark.usefixtures("fast_paths_on")
def test_an_export_builds_the_tables_once(monkeypatch):
    from hiercompile._compat import torch_onnx as _torch_onnx

    built = []
    real = _torch_onnx.new_registry
    monkeypatch.setattr(_torch_onnx, "new_registry", lambda opset: built.append(opset) or real(opset))
    _torch_onnx._torchlib_tables.cache_clear()  # as in a fresh process
    model, x = Block().eval(), torch.randn(3, 4, 8)
    hiercompile.export(model, (x,), dynamic_shapes=({0: "batch_size"},))
    hiercompile.export(model, (x,))
    assert len(built) == 1  # though building them makes Python load more op namespaces
