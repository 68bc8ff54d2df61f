"""Functions form (docs/tags.md): valid, same outputs, shared bodies, exact inline round trip, hard cases."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnx_ir as ir
import pytest
import torch
from conftest import bert_config, bert_inputs, check_spec, run_ir
from hiercompile.passes import FUNCTION_DOMAIN, InlineFunctionsPass, get_tags
from torch import nn

import hiercompile
from hiercompile import functionize


def op_tag_pairs(model: ir.Model) -> collections.Counter:
    return collections.Counter((n.op_type, tuple(get_tags(n))) for n in model.graph)


def check_functions_form(flat: ir.Model, feeds: dict[str, np.ndarray]):
    """Functionize a copy of ``flat``; check validity, outputs and the inline round trip. Returns the result."""
    functions = flat.clone()
    result = functionize(functions)
    onnx.checker.check_model(ir.to_proto(functions), full_check=True)
    for got, want in zip(run_ir(functions, feeds), run_ir(flat, feeds), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    for function in functions.functions.values():
        assert function.domain == FUNCTION_DOMAIN
        assert all("hiercompile.tag" in n.metadata_props for n in function)
    round_trip = ir.from_proto(ir.to_proto(functions))
    InlineFunctionsPass()(round_trip)
    assert not round_trip.functions
    assert op_tag_pairs(round_trip) == op_tag_pairs(flat)
    return functions, result


def test_bert_tiny(bert_export, tmp_path):
    _, inputs, flat_result, _ = bert_export
    feeds = {k: v.numpy() for k, v in inputs.items()}
    functions, result = check_functions_form(flat_result.model, feeds)
    names = [f.name for f in functions.functions.values()]
    assert names.count("BertLayer") == 1 and "BertLayer_2" not in names  # both layers share one body
    calls = [n for f in functions.functions.values() for n in f if n.domain == FUNCTION_DOMAIN]
    layer_calls = [n for n in calls if n.op_type == "BertLayer"]
    assert sorted(n.metadata_props["hiercompile.tag"] for n in layer_calls) == ["BertLayer.0", "BertLayer.1"]
    (top,) = list(functions.graph)
    assert top.metadata_props["hiercompile.tag"] == "/BertModel" and top.op_type == "BertModel"
    assert not result.inline
    ir.save(functions, tmp_path / "f.onnx")
    check_spec(tmp_path / "f.onnx")
    from_functions = hiercompile.HierarchyRetriever(tmp_path / "f.onnx")  # reads the functions form too
    from_flat = hiercompile.HierarchyRetriever(flat_result.model)
    assert from_functions.modules() == from_flat.modules()
    for tag in from_flat.modules():
        assert from_functions.op_types(tag, recursive=False) == from_flat.op_types(tag, recursive=False)


class Pair(nn.Module):
    def forward(self, x):
        return x + 1, x * 2  # two outputs, used by different consumers


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return torch.tanh(self.lin(x))


class Hard(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pair = Pair()
        self.twice = Twice()
        self.last = Twice()

    def forward(self, x):
        a, b = self.pair(x)
        y = self.twice(a) * 3  # the root's op sits between the two calls of `twice`
        y = self.twice(y + b)
        return self.last(y), a  # `last`'s output and `pair`'s output are model outputs


def calls_in(functions: ir.Model, body: str) -> list[tuple[str, str, str]]:
    """(call name, function, relative tag) of the function calls in the body of function ``body``."""
    function = next(f for f in functions.functions.values() if f.name == body)
    return [(n.name, n.op_type, n.metadata_props["hiercompile.tag"]) for n in function if n.domain == FUNCTION_DOMAIN]


def test_multi_output_graph_output_and_a_module_called_twice():
    torch.manual_seed(0)
    model = Hard().eval()
    x = torch.randn(2, 4)
    flat = hiercompile.export(model, (x,)).model
    functions, result = check_functions_form(flat, {"x": x.numpy()})
    assert not result.inline
    # twice(root(twice(.))): each run of `twice` is its own call, both of the body `last` uses too
    assert result.functions == {
        "/Hard/Pair": "Pair",
        "/Hard/Twice.last": "Twice",
        "/Hard/Twice.twice": "Twice",
        "/Hard/Twice.twice@1": "Twice",
        "/Hard": "Hard",
    }
    # inside a body, names are relative to its module (docs/tags.md): the scope of the child, never its tag
    assert calls_in(functions, "Hard") == [
        ("/pair/Pair_0", "Pair", "Pair"),
        ("/twice/Twice_0", "Twice", "Twice.twice"),
        ("/twice/Twice_1", "Twice", "Twice.twice"),
        ("/last/Twice_0", "Twice", "Twice.last"),
    ]
    pair = next(f for f in functions.functions.values() if f.name == "Pair")
    assert len(pair.outputs) == 2


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Twice()

    def forward(self, x):
        return self.inner(x) + 1


class Repeat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.outer = Outer()

    def forward(self, x):
        return self.outer(self.outer(x))  # the same instance, twice in a row, with a child


def test_an_instance_run_twice_in_a_row_gives_two_calls_with_nested_calls():
    torch.manual_seed(0)
    x = torch.randn(2, 4)
    flat = hiercompile.export(Repeat().eval(), (x,)).model
    functions, result = check_functions_form(flat, {"x": x.numpy()})
    assert result.functions == {
        "/Repeat/Outer/Twice": "Twice",
        "/Repeat/Outer/Twice@1": "Twice",
        "/Repeat/Outer": "Outer",
        "/Repeat/Outer@1": "Outer",
        "/Repeat": "Repeat",
    }
    assert calls_in(functions, "Repeat") == [
        ("/outer/Outer_0", "Outer", "Outer"),
        ("/outer/Outer_1", "Outer", "Outer"),
    ]
    assert [name for name, *_ in calls_in(functions, "Outer")] == ["/inner/Twice_0"]  # one shared body


def test_non_convex_module_on_a_hand_built_graph():
    text = """
    <ir_version: 10, opset_import: ["" : 20]>
    g (float[3] x) => (float[3] y) {
        a1 = Relu (x)
        p = Neg (a1)
        a2 = Add (p, a1)
        y = Abs (a2)
    }
    """
    model = ir.from_onnx_text(text)
    model.metadata_props["hiercompile.hierarchy"] = (
        '{"/M": {"class": "M", "module": "", "parent": null}, "/M/A": {"class": "A", "module": "a", "parent": "/M"}}'
    )
    for node, tag in zip(model.graph, ["/M/A", "/M", "/M/A", "/M"], strict=True):
        node.metadata_props["hiercompile.tag"] = tag
    functions, result = check_functions_form(model, {"x": np.array([-1.0, 0.5, 2.0], dtype=np.float32)})
    assert result.inline == {"/M/A": "its ops are not convex: a path leaves the module and comes back"}
    assert list(result.functions) == ["/M"]
    body = next(iter(functions.functions.values()))
    assert [tuple(get_tags(n)) for n in body] == [("A",), (".",), ("A",), (".",)]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit", "gpt2"])
def test_other_architectures(name):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "zoo"))
    from models import build

    model, inputs = build(name)
    flat = hiercompile.export(model, kwargs=inputs).model
    feeds = {k: v.numpy() for k, v in inputs.items() if isinstance(v, torch.Tensor)}
    _, result = check_functions_form(flat, feeds)
    assert not result.inline


@pytest.mark.slow
def test_twelve_layers_share_one_body():
    from transformers import BertModel

    torch.manual_seed(0)
    model = BertModel(bert_config(layers=12)).eval()
    flat = hiercompile.export(model, kwargs=bert_inputs()).model
    functions = flat.clone()
    functionize(functions)
    names = [f.name for f in functions.functions.values()]
    assert names.count("BertLayer") == 1 and not any(n.startswith("BertLayer_") for n in names)
    total = len(functions.graph) + sum(len(f) for f in functions.functions.values())
    assert total * 5 <= len(flat.graph)


class Widen(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(width, 2 * width, 1)

    def forward(self, x):
        return torch.relu(self.proj(x))


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.main, self.skip = Widen(width), nn.Conv2d(width, 2 * width, 1)

    def forward(self, x):
        return self.main(x) + self.skip(x)  # one operand from a call, one from this body


class TwoWidths(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.narrow, self.wide = Residual(4), Residual(8)

    def forward(self, x):
        return self.wide(self.narrow(x))


@pytest.mark.parametrize("optimize", [False, True], ids=["as exported", "onnxscript optimized"])
def test_instances_of_different_sizes_share_a_body_that_serves_both(optimize):
    torch.manual_seed(0)
    model = TwoWidths().eval()
    x = torch.randn(1, 4, 3, 3)
    flat = hiercompile.export(model, (x,)).model
    functions, result = check_functions_form(flat, {"x": x.numpy()})
    assert result.functions["/TwoWidths/Residual.narrow"] == result.functions["/TwoWidths/Residual.wide"] == "Residual"
    if optimize:  # it inlines both calls: sizes kept from the first instance would clash in the second
        import onnxscript

        onnxscript.optimizer.optimize(functions)
        assert not functions.functions
        # every size it kept agrees with the sizes inference finds (strict: a clash is an error)
        onnx.shape_inference.infer_shapes(ir.to_proto(functions), check_type=True, strict_mode=True)
    (got,) = run_ir(functions, {"x": x.numpy()})
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_a_call_that_lost_its_tag_leaves_its_body_untagged_when_inlined():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 3, 3)
    functions = hiercompile.export(TwoWidths().eval(), (x,)).model
    functionize(functions)
    calls = [n for n in functions.graph if n.domain == FUNCTION_DOMAIN]
    del calls[0].metadata_props["hiercompile.tag"]  # what a tool that drops node metadata leaves
    InlineFunctionsPass()(functions)
    untagged = [n.name for n in functions.graph if not get_tags(n)]
    assert untagged and all(name.startswith(calls[0].name + "/") for name in untagged)
    assert all(t.startswith("/TwoWidths/") for n in functions.graph for t in get_tags(n))
