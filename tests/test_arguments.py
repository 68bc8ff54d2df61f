"""``hiercompile.export`` takes torch.onnx.export's arguments with the same meaning."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
import torch
from conftest import run_ir
from torch import nn

import hiercompile


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(torch.relu(self.lin(x)))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block()
        self.head = nn.Linear(4, 2)

    def forward(self, x, **extra):
        h = self.block(x)
        return {"hidden": h, "scores": self.head(h)}


class Pair(nn.Module):
    def forward(self, x, y):
        return x + y, x * y


def test_torch_positional_call_and_output_names_after_the_model(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(3, 4)
    result = hiercompile.export(Net().eval(), (x,), tmp_path / "net.onnx")  # as torch.onnx.export(model, args, f)
    model = onnx.load(tmp_path / "net.onnx")
    assert [o.name for o in model.graph.output] == ["hidden", "scores"]
    assert [i.name for i in model.graph.input] == ["x"]
    assert result.capture_strategy == "non-strict"
    pair = hiercompile.export(Pair(), (torch.ones(2), torch.ones(2)))
    assert [v.name for v in pair.model.graph.outputs] == ["output.0", "output.1"]


def test_input_and_output_names_replace_the_defaults():
    result = hiercompile.export(Pair(), (torch.ones(2), torch.ones(2)), input_names=["a", "b"], output_names=["s"])
    assert [v.name for v in result.model.graph.inputs] == ["a", "b"]
    assert [v.name for v in result.model.graph.outputs] == ["s", "output.1"]
    with pytest.raises(hiercompile.InputError, match="3 output names for 2 outputs"):
        hiercompile.export(Pair(), (torch.ones(2), torch.ones(2)), output_names=["a", "b", "c"])
    with pytest.raises(hiercompile.InputError, match=r"input_names repeat \['a'\]"):
        hiercompile.export(Pair(), (torch.ones(2), torch.ones(2)), input_names=["a", "a"])


def test_train_mode_is_exported_in_eval_mode_and_restored():
    torch.manual_seed(0)
    model = Net().train()
    x = torch.randn(8, 4)
    result = hiercompile.export(model, (x,))
    assert model.training and model.block.drop.training  # the user's mode is back
    assert not result.training
    assert "Dropout" not in {n.op_type for n in result.model.graph}
    model.eval()
    with torch.no_grad():
        want = model(x)["scores"].numpy()
    got = run_ir(result.model, {"x": x.numpy()})[1]
    np.testing.assert_allclose(got, want, atol=1e-5)
    model.train()
    kept = hiercompile.export(model, (x,), training=torch.onnx.TrainingMode.TRAINING)
    assert kept.training
    first, second = (run_ir(kept.model, {"x": x.numpy()})[0] for _ in range(2))
    assert not np.allclose(first, second)  # a live dropout: outputs differ run to run


def test_misspelled_keyword_is_a_warning_naming_it():
    x = torch.randn(2, 4)
    with pytest.warns(hiercompile.UnusedInputWarning, match="input_idz"):
        hiercompile.export(Net().eval(), (x,), kwargs={"input_idz": torch.ones(2, 3)})


def test_dynamic_axes_and_string_axis_names_name_the_onnx_dims():
    x = torch.randn(3, 4)
    by_axes = hiercompile.export(Net().eval(), (x,), dynamic_axes={"x": {0: "rows"}})
    by_names = hiercompile.export(Net().eval(), (x,), dynamic_shapes={"x": {0: "rows"}})
    by_dim = hiercompile.export(Net().eval(), (x,), dynamic_shapes={"x": {0: torch.export.Dim("rows")}})
    for result in (by_axes, by_names, by_dim):
        assert [str(d) for d in result.model.graph.inputs[0].shape] == ["rows", "4"]
        assert str(result.model.graph.outputs[0].shape[0]) == "rows"
        (hidden, _) = run_ir(result.model, {"x": np.ones((5, 4), dtype=np.float32)})
        assert hidden.shape == (5, 4)


def test_a_dim_without_the_models_maximum_is_relaxed_as_torch_does():
    class Positions(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Embedding(8, 4)

        def forward(self, ids):
            return self.table(torch.arange(ids.shape[1])) + ids.unsqueeze(-1)

    ids = torch.ones(1, 5)
    result = hiercompile.export(Positions(), (ids,), dynamic_shapes={"ids": {1: torch.export.Dim("seq")}})
    assert str(result.model.graph.inputs[0].shape[1]) == "seq"


def test_opset_version_and_optimize():
    x = torch.randn(3, 4)
    result = hiercompile.export(Net().eval(), (x,), opset_version=21)
    assert result.model.opset_imports[""] == 21
    plain = hiercompile.export(Net().eval(), (x,), optimize=False)
    assert plain.coverage == 1.0
    assert len(plain.model.graph) >= len(hiercompile.export(Net().eval(), (x,)).model.graph)


def test_an_opset_out_of_range_or_out_of_reach_is_an_error_naming_the_range():
    import onnx

    x = torch.randn(3, 4)
    newest = onnx.defs.onnx_opset_version()
    for bad in (6, newest + 2, True, "18"):
        with pytest.raises(hiercompile.InputError, match=f"opset_version must be an ONNX opset from 7 to {newest}"):
            hiercompile.export(Net().eval(), (x,), opset_version=bad)
    # within the range but below what the converter reaches for this model: never a silent 18
    with pytest.raises(hiercompile.LowerError, match=r"opset_version=13 .* pass opset_version=18 or newer"):
        hiercompile.export(Net().eval(), (x,), opset_version=13)


def test_an_axis_name_that_cannot_be_used_is_a_warning():
    x = torch.randn(3, 4)
    with pytest.warns(UserWarning, match="the axis name 'other' will not be used.*'rows'"):
        result = hiercompile.export(
            Pair(), (x, torch.randn(3, 4)), dynamic_shapes={"x": {0: "rows"}, "y": {0: "other"}}
        )
    assert str(result.model.graph.inputs[1].shape[0]) == "rows"

    class Fixed(nn.Module):
        def forward(self, x):
            return x.reshape(3, 2, 2)

    with pytest.warns(hiercompile.CaptureWarning, match="axis name 'rows' .* torch made that dim static"):
        fixed = hiercompile.export(Fixed(), (x,), dynamic_shapes={"x": {0: torch.export.Dim("rows")}})
    assert list(fixed.model.graph.inputs[0].shape) == [3, 4]


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 2])
def test_a_causal_lm_exports_with_readmes_python_call(batch):
    """README's call on a transformers decoder that returns its cache, with batch 1 in the example too."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1000,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 1000, (batch, 6))
    result = hiercompile.export(model, kwargs={"input_ids": ids}, dynamic_shapes={"input_ids": {0: "batch", 1: "seq"}})
    assert [str(d) for d in result.model.graph.inputs[0].shape] == ["batch", "seq"]
    # batch 1 in the example: captured (and decomposed) so that the size stays dynamic; else as it is
    assert result.capture_strategy == ("non-strict, size-oblivious" if batch == 1 else "non-strict")
    assert len(result.model.graph.outputs) == 1 + 2 * config.num_hidden_layers  # logits, then each key and value
    other = torch.randint(0, 1000, (3, 4))
    with torch.no_grad():
        want = model(input_ids=other)
    got = run_ir(result.model, {"input_ids": other.numpy()})
    np.testing.assert_allclose(got[0], want.logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(got[1], want.past_key_values.layers[0].keys.numpy(), atol=1e-5)


def test_keep_initializers_as_inputs():
    result = hiercompile.export(Net().eval(), (torch.randn(3, 4),), keep_initializers_as_inputs=True)
    names = [v.name for v in result.model.graph.inputs]
    assert names[0] == "x" and "block.lin.weight" in names


def test_unknown_and_unsupported_arguments_are_errors():
    x = torch.randn(3, 4)
    with pytest.raises(hiercompile.InputError, match="unknown argument 'opset'"):
        hiercompile.export(Net(), (x,), opset=18)
    with pytest.raises(hiercompile.InputError, match=r"verify=True is not supported: use hiercompile.verify"):
        hiercompile.export(Net(), (x,), verify=True)
    with pytest.raises(hiercompile.InputError, match="dynamo=False is not supported"):
        hiercompile.export(Net(), (x,), dynamo=False)
    hiercompile.export(Net(), (x,), dynamo=True, export_params=True)  # torch's defaults are fine
    with pytest.raises(hiercompile.InputError, match="the third argument is the output path f"):
        hiercompile.export(Net(), (), {"x": x})


def test_exported_program_is_tagged_as_its_module():
    torch.manual_seed(0)
    model = Net().eval()
    x = torch.randn(3, 4)
    program = torch.export.export(model, (x,))
    from_program = hiercompile.export(program)
    from_module = hiercompile.export(model, (x,))
    assert from_program.capture_strategy == "given"
    assert set(from_program.hierarchy) == set(from_module.hierarchy) == {"/Net", "/Net/Block"}
    assert {t: e["num_ops"] for t, e in from_program.hierarchy.items()} == {
        t: e["num_ops"] for t, e in from_module.hierarchy.items()
    }
    assert from_program.hierarchy["/Net/Block"]["num_parameters"] == 20
    assert from_program.coverage == 1.0
    got = run_ir(from_program.model, {"x": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got[1], model(x)["scores"].numpy(), atol=1e-5)
    with pytest.raises(hiercompile.InputError, match=r"keep= reads nn\.Module instances"):
        hiercompile.export(program, keep=lambda m: True)
    with pytest.raises(hiercompile.InputError, match=r"stack_traces=False applies when hiercompile captures"):
        hiercompile.export(program, stack_traces=False)  # an option that cannot apply is an error


def test_program_hierarchy_treats_uncalled_parents_as_containers():
    class Stack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([Block(), Block()])

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return x

    model = Stack().eval()
    x = torch.randn(2, 4)
    tags = set(hiercompile.export(torch.export.export(model, (x,))).hierarchy)
    assert tags == set(hiercompile.export(model, (x,)).hierarchy) == {"/Stack", "/Stack/Block.0", "/Stack/Block.1"}
    assert ir.serde  # onnx-ir is what the result holds


class Branches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block()

    def forward(self, x):
        return torch.cond(x.sum() > 0, lambda x: self.block(x), lambda x: -x, (x,))


STACK_TRACE = "pkg.torch.onnx.stack_trace"


@pytest.mark.parametrize("model", [Net(), Branches()], ids=["net", "cond"])
def test_stack_traces_are_torchs_by_default_and_left_out_on_request(model):
    torch.manual_seed(0)
    x = torch.randn(3, 4)
    kept = hiercompile.export(model.eval(), (x,))
    left = hiercompile.export(model.eval(), (x,), stack_traces=False)
    nodes = list(kept.model.graph.all_nodes())  # subgraph ops too
    assert all("test_arguments.py" in n.metadata_props[STACK_TRACE] for n in nodes if n.op_type != "Constant")
    assert not any(n.metadata_props.get(STACK_TRACE) for n in left.model.graph.all_nodes())
    assert left.operations == kept.operations and left.hierarchy == kept.hierarchy  # the same ops and tags
    np.testing.assert_array_equal(run_ir(left.model, {"x": x.numpy()})[0], run_ir(kept.model, {"x": x.numpy()})[0])


def test_dynamic_shapes_are_captured_without_the_fake_tensor_cache(monkeypatch):
    from torch._subclasses.fake_tensor import FakeTensorMode

    modes = []
    real = FakeTensorMode.__init__
    monkeypatch.setattr(FakeTensorMode, "__init__", lambda self, *a, **k: real(self, *a, **k) or modes.append(self))
    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(3, 4)
    hiercompile.export(model, (x,))
    assert modes and all(m.cache_enabled for m in modes)  # static shapes: cache hits are cheap
    modes.clear()
    result = hiercompile.export(model, (x,), dynamic_shapes=({0: "batch"},))
    assert modes and not any(m.cache_enabled for m in modes)  # symbolic sizes: an entry costs more than a hit saves
    assert torch._dynamo.config.fake_tensor_cache_enabled  # the setting is back as it was
    y = torch.randn(5, 4)
    with torch.no_grad():
        want = model(y)
    got = run_ir(result.model, {"x": y.numpy()})
    np.testing.assert_allclose(got[0], want["hidden"].numpy(), atol=1e-6)
    np.testing.assert_allclose(got[1], want["scores"].numpy(), atol=1e-6)
