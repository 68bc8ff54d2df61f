"""The optimizer's pass list: onnxscript's, with rules tried only where they can match."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import torch
from conftest import run_ir
from onnxscript import rewriter

from hiercompile._compat import onnxscript as _onnxscript

TEXT = """
<ir_version: 10, opset_import: ["" : 18]>
g (float[4, 6] x) => (float[4, 3] c, float[4, 3] d)
    <int64[1] s0 = {0}, int64[1] e0 = {3}, int64[1] s1 = {3}, int64[1] e1 = {6}, int64[1] ax = {1}> {
    a = Slice (x, s0, e0, ax)
    b = Slice (x, s1, e1, ax)
    c = Relu (a)
    d = Relu (b)
}
"""


def test_a_rule_of_several_outputs_rewrites_as_onnxscripts_own_and_is_tried_at_its_op_only():
    rules = rewriter._DEFAULT_REWRITE_RULES
    several = [r for r in rules if len(r._target_pattern.output_nodes) > 1]
    assert several  # SlicesSplit: two Slices of one tensor
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    theirs, ours = ir.from_onnx_text(TEXT), ir.from_onnx_text(TEXT)
    want = run_ir(theirs, {"x": x})
    rewriter.RewritePass(rules)(theirs)
    _, rewrite = _onnxscript._private_parts()
    tried = []
    for rule in rewrite.rules.rules:
        if isinstance(rule, _onnxscript._FirstOutputOp) and len(rule._target_pattern.output_nodes) > 1:
            inner = rule._rule.try_rewrite
            rule._rule.try_rewrite = lambda model, graph, node, _inner=inner, **kw: (
                tried.append(node.op_type) or _inner(model, graph, node, **kw)
            )
    rewrite(ours)
    assert [n.op_type for n in ours.graph] == [n.op_type for n in theirs.graph]
    assert set(tried) == {"Slice"}  # never at the Relu: onnxscript would index the graph there
    for got, expected in zip(run_ir(ours, {"x": x}), want, strict=True):
        np.testing.assert_array_equal(got, expected)


class Foldable(torch.nn.Module):
    """Ops onnxscript's rules rewrite: a reshape of a reshape, a transpose of a transpose,
    a cast to the same type, matmul and add (Gemm)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(6, 6)

    def forward(self, x):
        y = self.lin(x).reshape(2, 2, 6).reshape(4, 6)
        return y.t().t().to(torch.float32).softmax(-1)


def test_every_rule_is_tried_at_its_op_only_and_rewrites_as_onnxscripts_own():
    from hiercompile._exporter._lower import lower

    torch.manual_seed(0)
    model, x = Foldable().eval(), torch.randn(4, 6)
    program = torch.export.export(model, (x,))
    raw, _ = lower(program)
    theirs, ours = raw.clone(), raw.clone()
    rules = rewriter._DEFAULT_REWRITE_RULES
    rewriter.RewritePass(rules)(theirs)
    _, rewrite = _onnxscript._private_parts()
    wrapped = [r for r in rewrite.rules.rules if isinstance(r, _onnxscript._FirstOutputOp)]
    assert len(wrapped) >= len(rules) - 5  # nearly every rule has a fixed output op
    tried = []
    for rule in wrapped:
        inner = rule._rule.try_rewrite
        rule._rule.try_rewrite = lambda model, graph, node, _inner=inner, _rule=rule, **kw: (
            tried.append((node.op_type, _rule._op_type)) or _inner(model, graph, node, **kw)
        )
    rewrite(ours)
    assert tried and all(at == op for at, op in tried)
    assert len(list(theirs.graph)) < len(list(raw.graph))  # the rules rewrote something
    assert [n.op_type for n in ours.graph] == [n.op_type for n in theirs.graph]
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(run_ir(ours, {"x": x.numpy()})[0], want, atol=1e-6)
