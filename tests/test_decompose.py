"""The ops without an ONNX translation, decomposed one at a time as torch's exporter decomposes them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from conftest import run_ir
from torch import nn

import hiercompile
from hiercompile._exporter._decompose import _decomposes, decompose_ops
from hiercompile._exporter._lower import Lowering, _tables

pytestmark = pytest.mark.usefixtures("fast_paths_on")  # the op-by-op decomposition is a fast path


class Gate(nn.Module):
    def forward(self, mask):
        return mask.to(torch.bool) & (mask > 0)


class Mixed(nn.Module):
    """Composite ops torch always decomposes (batch_norm, to, reshape), an op without a
    translation (``&``), and ops with one (linear, gelu, softmax)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.norm = nn.BatchNorm1d(4)
        self.gate = Gate()

    def forward(self, x, mask):
        h = nn.functional.gelu(self.norm(self.lin(x)), approximate="tanh")
        keep = self.gate(mask)
        return (h.softmax(-1) * keep.to(h.dtype)[:, None, :]).reshape(x.shape[0], -1)


class Accumulates(Mixed):
    def forward(self, x, mask):
        h = self.lin(x)
        h += 1  # a write into a tensor nothing else sees
        h.mul_(mask[:, None, :])  # and into the written one
        return h.relu() + h


class WritesThroughAView(Mixed):
    def forward(self, x, mask):
        h = self.lin(x)
        h[:, 0].add_(1)  # a write into a view: h changes too
        return h * mask[:, None, :]


class WritesIntoItsInput(Mixed):
    def forward(self, x, mask):
        x.mul_(2)  # the caller sees it
        return self.lin(x) * mask[:, None, :]


INPUTS = (torch.randn(3, 4, 8), torch.ones(3, 8, dtype=torch.long))
SHAPES = ({0: torch.export.Dim("batch")}, {0: torch.export.Dim("batch")})


def _program(model: nn.Module) -> torch.export.ExportedProgram:
    return torch.export.export(model.eval(), INPUTS, dynamic_shapes=SHAPES)


def _decompositions() -> tuple:
    tables = _tables(Lowering())[0]
    return tables.decompositions, tables.translated


def _ops(program: torch.export.ExportedProgram) -> Counter:
    return Counter(str(n.target) for n in program.graph.nodes if n.op == "call_function")


def test_ops_are_decomposed_one_at_a_time_into_what_torchs_whole_trace_gives():
    from torch.onnx._internal.exporter import _fx_passes

    torch.manual_seed(0)
    model = Mixed()
    program = _program(model)
    assert {"aten.batch_norm.default", "aten.__and__.Tensor", "aten.to.dtype"} <= set(_ops(program))
    assert decompose_ops(program, *_decompositions()) is None
    torchs = _fx_passes.decompose_with_registry(_program(model), _tables(Lowering())[0].registry)
    assert _ops(program) == _ops(torchs)  # the same ops, the program traced once instead of twice more
    for op, module in (("batch_norm", "norm"), ("bitwise_and", "gate"), ("_to_copy", "gate")):
        nodes = [n for n in program.graph.nodes if op in str(n.target)]
        assert nodes and any(next(reversed(n.meta["nn_module_stack"].values()))[0] == module for n in nodes)
    ops = [n for n in program.graph.nodes if n.op == "call_function" and isinstance(n.meta.get("val"), torch.Tensor)]
    assert all(isinstance(n.meta["val"].shape[0], torch.SymInt) for n in ops)  # the batch stays dynamic
    assert all(n.meta.get("nn_module_stack") for n in ops)  # so the tags need nothing more


def test_export_decomposes_by_op_and_matches_pytorch(monkeypatch):
    import hiercompile._exporter._lower as lower_module

    whole = []
    real = torch.export.ExportedProgram.run_decompositions
    monkeypatch.setattr(
        torch.export.ExportedProgram, "run_decompositions", lambda self, *a, **k: whole.append(1) or real(self, *a, **k)
    )
    shapes = ({0: "batch_size"}, {0: "batch_size"})
    torch.manual_seed(0)
    for model, traced in ((Mixed().eval(), []), (Accumulates().eval(), []), (WritesThroughAView().eval(), [1])):
        whole.clear()
        result = hiercompile.export(model, INPUTS, dynamic_shapes=shapes)
        assert whole == traced  # a write others see is left to torch's whole trace
        x, mask = torch.randn(5, 4, 8), torch.randint(0, 2, (5, 8))
        with torch.no_grad():
            want = model(x, mask).numpy()
        got = run_ir(result.model, {"x": x.numpy(), "mask": mask.numpy()})[0]
        np.testing.assert_allclose(got, want, atol=1e-5)
    by_op = hiercompile.export(Mixed().eval(), INPUTS, dynamic_shapes=shapes)
    monkeypatch.setattr(lower_module, "_decomposed_by_op", lambda program, tables, size_oblivious: False)
    whole_trace = hiercompile.export(Mixed().eval(), INPUTS, dynamic_shapes=shapes)
    assert _kinds(by_op) == _kinds(whole_trace)  # the same nodes, with the same tags (values named apart)
    assert _kinds(by_op)["/gate/And_0"] == ("And", ["/Mixed/Gate"])


def _kinds(result: hiercompile.ExportResult) -> dict[str, tuple]:
    return {name: (op["op_type"], op["tags"]) for name, op in result.operations.items()}


def test_writes_nothing_else_sees_become_functional_ops():
    program = _program(Accumulates())
    assert {"aten.add_.Tensor", "aten.mul_.Tensor"} <= set(_ops(program))
    assert decompose_ops(program, *_decompositions()) is None
    ops = _ops(program)
    assert not any(n.target._schema.is_mutable for n in program.graph.nodes if n.op == "call_function")
    assert ops["aten.add.Tensor"] == 2 and ops["aten.mul.Tensor"] == 1  # h + 1, relu(h) + h; h * mask
    relu = next(n for n in program.graph.nodes if n.target == torch.ops.aten.relu.default)
    assert relu.args[0].target == torch.ops.aten.mul.Tensor  # a later reader reads the written value


@pytest.mark.parametrize("model", [WritesThroughAView(), WritesIntoItsInput()], ids=["view", "input"])
def test_a_write_others_see_is_left_to_torch(model):
    program = torch.export.export(model.eval(), tuple(t.clone() for t in INPUTS), dynamic_shapes=SHAPES)
    before = str(program.graph)
    assert "share" in decompose_ops(program, *_decompositions())
    assert str(program.graph) == before


def test_a_decomposition_that_guards_on_a_dynamic_size_leaves_the_program_as_it_was():
    program = _program(Mixed())
    table, translated = _decompositions()

    def by_size(a, b):  # specializes the dynamic batch to the example's
        return torch.add(a, a) if a.shape[0] > 2 else torch.add(a, b)

    before = str(program.graph)
    why = decompose_ops(program, {**table, torch.ops.aten.mul.Tensor: by_size}, translated)
    assert why == "a decomposition guards on a dynamic size"
    assert str(program.graph) == before


def test_an_op_without_a_decomposition_stays():
    program = _program(Mixed())
    assert decompose_ops(program, {}, frozenset()) is None  # nothing translated, nothing in the table
    ops = _ops(program)
    assert "aten.linear.default" not in ops  # composite: decomposed by its own kernel
    assert ops["aten.mul.Tensor"] == 1 and ops["aten.gelu.default"] == 1  # no decomposition: as they were


@pytest.mark.parametrize(
    ("op", "decomposed"),
    [
        (torch.ops.aten.reshape.default, True),  # composite, may alias its input
        (torch.ops.aten.batch_norm.default, True),  # composite, torch always decomposes it
        (torch.ops.aten.__and__.Tensor, True),  # no translation
        (torch.ops.aten.linear.default, False),  # composite with a translation
        (torch.ops.aten.mul.Tensor, False),
    ],
)
def test_which_ops_torchs_exporter_decomposes(op, decomposed):
    assert _decomposes(op, *_decompositions()) is decomposed


class Gates(nn.Module):
    """The same op on values alike (three gates) and on a value of another size (one)."""

    def __init__(self) -> None:
        super().__init__()
        self.gates = nn.ModuleList(Gate() for _ in range(4))

    def forward(self, x, mask):
        alike = [gate(mask) for gate in self.gates[:3]]
        other = self.gates[3](mask[:, :4])
        return torch.stack(alike).sum(0) + other.sum(-1, keepdim=True) + x.sum()


def test_an_op_on_values_alike_is_traced_once(monkeypatch):
    from torch.fx.experimental import proxy_tensor

    from hiercompile._exporter import _decompose

    traced = []
    monkeypatch.setattr(_decompose, "make_fx", lambda *a, **k: traced.append(1) or proxy_tensor.make_fx(*a, **k))
    model = Gates().eval()
    inputs = (torch.randn(3, 4, 8), torch.ones(3, 8, dtype=torch.long))
    program = torch.export.export(model, inputs, dynamic_shapes=SHAPES)
    assert _ops(program)["aten.__and__.Tensor"] == 4 and _ops(program)["aten.to.dtype"] == 4
    assert decompose_ops(program, *_decompositions()) is None
    assert len(traced) == 4  # & and to: once for the three gates alike, once for the other
    torchs = torch.export.export(model, inputs, dynamic_shapes=SHAPES).run_decompositions(_decompositions()[0])
    assert _ops(program) == _ops(torchs)
    gates = [
        next(reversed(n.meta["nn_module_stack"].values()))[0] for n in program.graph.nodes if "bitwise" in str(n.target)
    ]
    assert gates == ["gates.0", "gates.1", "gates.2", "gates.3"]  # each op with its own module


def test_a_program_given_to_export_is_left_as_it_was():
    torch.manual_seed(0)
    model = Mixed().eval()
    program = _program(model)
    before, signature = str(program.graph), str(program.graph_signature)
    custom = [dict(n.meta.get("custom") or {}) for n in program.graph.nodes]
    result = hiercompile.export(program)
    assert str(program.graph) == before and str(program.graph_signature) == signature
    assert [n.meta.get("custom") or {} for n in program.graph.nodes] == custom  # no tags written into it either
    x, mask = torch.randn(5, 4, 8), torch.randint(0, 2, (5, 8))
    with torch.no_grad():
        np.testing.assert_allclose(program.module()(x, mask).numpy(), model(x, mask).numpy(), atol=1e-6)
        want = model(x, mask).numpy()
    np.testing.assert_allclose(run_ir(result.model, {"x": x.numpy(), "mask": mask.numpy()})[0], want, atol=1e-5)
    assert _kinds(hiercompile.export(program)) == _kinds(result)  # and exports the same again
