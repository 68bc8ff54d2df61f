"""Control flow (docs/tags.md): ops inside If/Scan subgraphs are tagged with the module they ran in."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from conftest import check_spec, run_ir, run_onnx
from hiercompile.passes import get_tags
from torch import nn
from torch._higher_order_ops.scan import scan

import hiercompile


class Leaf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return torch.tanh(self.lin(x))


class Gate(nn.Module):
    """Calls torch.cond; its branches call submodules and do ops of their own."""

    def __init__(self) -> None:
        super().__init__()
        self.yes = Leaf()
        self.no = Leaf()

    def forward(self, x):
        def yes(x):
            return self.yes(x) * 2

        def no(x):
            return self.no(x) - 1

        return torch.cond(x.sum() > 0, yes, no, (x,))


class WithGate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pre = Leaf()  # its FX op names (linear, tanh) repeat inside the branches
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.pre(x)) + 1


class Nested(nn.Module):
    """A cond inside a branch of a cond, with weights at both levels."""

    def __init__(self) -> None:
        super().__init__()
        self.a = Leaf()
        self.b = Leaf()
        self.scale = nn.Parameter(torch.full((4,), 3.0))

    def forward(self, x):
        def inner_yes(x):
            return self.a(x) * self.scale

        def inner_no(x):
            return self.b(x)

        def outer_yes(x):
            return torch.cond(x.mean() > 0, inner_yes, inner_no, (x,)) + 1

        def outer_no(x):
            return x * self.scale

        return torch.cond(x.sum() > 0, outer_yes, outer_no, (x,))


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = Leaf()

    def forward(self, xs):
        def step(h, x):
            h = self.cell(h + x)
            return h, h * 2

        return scan(step, torch.zeros(xs.shape[1], 4), xs)


def _subgraph_tags(model: onnx.ModelProto) -> dict[str, set[str]]:
    """Op type -> the tags of the nodes of that type inside subgraphs."""
    found: dict[str, set[str]] = {}

    def walk(nodes, inside):
        for node in nodes:
            meta = {p.key: p.value for p in node.metadata_props}
            if inside and node.op_type != "Constant":
                found.setdefault(node.op_type, set()).add(meta.get("hiercompile.tag"))
            for attr in node.attribute:
                for graph in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                    walk(graph.node, True)

    walk(model.graph.node, False)
    return found


def _both_ways(model: nn.Module, path, inputs: list[torch.Tensor]) -> None:
    for x in inputs:
        with torch.no_grad():
            want = model(x)
        want = [want] if isinstance(want, torch.Tensor) else list(want)
        got = run_onnx(path, {"x" if "xs" not in str(path) else "xs": x})
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w.numpy(), atol=1e-5)


def test_cond_in_a_submodule(tmp_path):
    torch.manual_seed(0)
    model = WithGate().eval()
    x = torch.randn(2, 4)
    result = hiercompile.export(model, (x,), tmp_path)
    check_spec(tmp_path / "model.onnx", tmp_path)
    assert result.coverage == 1.0
    onnx_model = onnx.load(tmp_path / "model.onnx")
    inside = _subgraph_tags(onnx_model)
    # each branch's Gemm is the branch's Leaf, never the main graph's `pre` (same FX name "linear")
    assert inside["Gemm"] == {"/WithGate/Gate/Leaf.yes", "/WithGate/Gate/Leaf.no"}
    assert inside["Mul"] == {"/WithGate/Gate"} and inside["Sub"] == {"/WithGate/Gate"}  # the branch functions
    (if_node,) = [n for n in result.model.graph if n.op_type == "If"]
    assert get_tags(if_node) == ["/WithGate/Gate"]  # the module that called torch.cond
    counts = {t: e["num_ops"] for t, e in result.hierarchy.items()}
    assert counts["/WithGate/Gate/Leaf.yes"] == 2 and counts["/WithGate/Gate/Leaf.no"] == 2  # Gemm, Tanh
    operations = json.loads((tmp_path / "operations.json").read_text())
    branch_ops = [op for op in operations.values() if op.get("parent") == if_node.name]
    assert {op["tags"][0] for op in branch_ops} >= {"/WithGate/Gate/Leaf.yes", "/WithGate/Gate"}
    # both branches, against PyTorch
    _both_ways(model, tmp_path / "model.onnx", [torch.full((2, 4), 3.0), torch.full((2, 4), -3.0)])


class BuiltinsInBranches(nn.Module):
    """Calls torch.nn modules (not kept) straight from its branches, in one of three styles."""

    def __init__(self, style: str) -> None:
        super().__init__()
        self.style = style
        self.a = nn.Linear(4, 4)
        self.b = nn.Sequential(nn.Linear(4, 4))

    def yes(self, x):
        return torch.tanh(self.a(x)) * 2

    def no(self, x):
        return self.b(x) - 1

    def forward(self, x):
        if self.style == "method":
            return torch.cond(x.sum() > 0, self.yes, self.no, (x,))
        if self.style == "lambda":
            return torch.cond(x.sum() > 0, lambda x: torch.tanh(self.a(x)) * 2, lambda x: self.b(x) - 1, (x,))

        def yes(x):
            return torch.tanh(self.a(x)) * 2

        def no(x):
            return self.b(x) - 1

        return torch.cond(x.sum() > 0, yes, no, (x,))


class HoldsBranches(nn.Module):
    def __init__(self, style: str) -> None:
        super().__init__()
        self.inner = BuiltinsInBranches(style)
        self.out = nn.Linear(4, 4)

    def forward(self, x):
        return self.out(self.inner(x))


@pytest.mark.parametrize("style", ["lambda", "method", "nested function"])
def test_torch_nn_modules_in_a_branch_take_the_module_holding_them(tmp_path, style):
    torch.manual_seed(0)
    model = HoldsBranches(style).eval()
    result = hiercompile.export(model, (torch.randn(2, 4),), tmp_path / "m.onnx")
    inside = _subgraph_tags(onnx.load(tmp_path / "m.onnx"))
    # the Linear's Gemm sits in the module holding the Linear, never the root
    assert inside["Gemm"] == {"/HoldsBranches/BuiltinsInBranches"}
    assert inside["Tanh"] == inside["Mul"] == inside["Sub"] == {"/HoldsBranches/BuiltinsInBranches"}
    assert result.coverage == 1.0
    _both_ways(model, tmp_path / "m.onnx", [torch.full((2, 4), 3.0), torch.full((2, 4), -3.0)])


def test_nested_cond_with_weights_at_both_levels(tmp_path):
    torch.manual_seed(0)
    model = Nested().eval()
    x = torch.randn(2, 4)
    result = hiercompile.export(model, (x,), tmp_path)
    check_spec(tmp_path / "model.onnx", tmp_path)
    assert result.coverage == 1.0
    inside = _subgraph_tags(onnx.load(tmp_path / "model.onnx"))
    assert inside["Gemm"] == {"/Nested/Leaf.a", "/Nested/Leaf.b"}
    assert inside["If"] == {"/Nested"}  # the inner cond runs in the outer branch function
    assert "scale" in {v for v in result.model.graph.initializers}
    cases = [torch.full((2, 4), v) for v in (2.0, -2.0)] + [torch.tensor([[3.0, -1, -1, -1], [-1, -1, -1, -1]])]
    _both_ways(model, tmp_path / "model.onnx", cases)  # outer yes + inner yes, outer no, outer yes + inner no


def test_scan_body(tmp_path):
    torch.manual_seed(0)
    model = Recurrent().eval()
    xs = torch.randn(3, 2, 4)
    target = tmp_path / "xs.onnx"
    result = hiercompile.export(model, (xs,), target)
    check_spec(target)
    assert result.coverage == 1.0
    inside = _subgraph_tags(onnx.load(target))
    assert inside["Gemm"] == {"/Recurrent/Leaf"}
    assert inside["Add"] == {"/Recurrent"}  # `h + x` runs in the step function
    with torch.no_grad():
        want = model(xs)
    got = run_ir(result.model, {"xs": xs.numpy()})
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5)


@pytest.mark.slow
def test_tools_on_a_control_flow_model(tmp_path):
    torch.manual_seed(0)
    model = WithGate().eval()
    x = torch.randn(2, 4)
    result = hiercompile.export(model, (x,), tmp_path, functions=True)
    check_spec(tmp_path / "model.functions.onnx")
    onnx.checker.check_model(onnx.load(tmp_path / "model.functions.onnx"), full_check=True)
    for value in (3.0, -3.0):
        feeds = {"x": torch.full((2, 4), value)}
        np.testing.assert_allclose(
            run_onnx(tmp_path / "model.functions.onnx", feeds)[0], run_onnx(tmp_path / "model.onnx", feeds)[0]
        )
    retriever = hiercompile.HierarchyRetriever(tmp_path / "model.functions.onnx")
    assert set(retriever.get_nodes_by_module("/WithGate/Gate/Leaf.yes"))  # full tags inside the branches
    gate = hiercompile.extract(tmp_path / "model.onnx", "/WithGate/Gate", tmp_path / "gate.onnx")
    onnx.checker.check_model(onnx.load(tmp_path / "gate.onnx"), full_check=True)
    with torch.no_grad():
        hidden = model.pre(x)
        want = model.gate(hidden).numpy()
    (got,) = run_ir(gate, {gate.graph.inputs[0].name: hidden.numpy()})
    np.testing.assert_allclose(got, want, atol=1e-5)
    report = hiercompile.verify(model, (x,), onnx_model=result.model)
    statuses = {c.tag: c.status for c in report.modules}
    assert statuses["/WithGate/Leaf"] == "matched" and statuses["/WithGate/Gate"] == "matched"
    assert statuses["/WithGate/Gate/Leaf.yes"] == "inside control flow"
    assert report.ok
    profile = hiercompile.profile(tmp_path / "model.onnx", runs=2)
    assert sum(m.ops for m in profile.modules) == profile.kernels
