"""RetagPass and ``hiercompile retag``: tags for what deployment tools make of a tagged model."""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import onnx_ir as ir
import pytest
import torch
from conftest import bert_config, bert_inputs, check_spec
from hiercompile.passes import FUNCTION_DOMAIN, HIERARCHY_KEY, TAG_KEY, TAGS_KEY, RetagPass, get_tags, set_node_tags

import hiercompile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

HIERARCHY = {
    "/M": {"class": "m.M", "module": "", "parent": None},
    "/M/A": {"class": "m.A", "module": "a", "parent": "/M"},
    "/M/B": {"class": "m.B", "module": "b", "parent": "/M"},
}
SOURCE = """
<ir_version: 10, opset_import: ["" : 20]>
g (float[2,4] x) => (float[2,4] y) <float[4] w = {1,2,3,4}, float[4] b = {1,1,1,1}> {
    sa = Add(x, w)
    sm = Mul(sa, b)
    y = Relu(sm)
}
"""
NAMES = {"Add": ("/a/Add_0", "/M/A"), "Mul": ("/b/Mul_0", "/M/B"), "Relu": ("/Relu_0", "/M")}


def tagged_source() -> ir.Model:
    model = ir.from_onnx_text(SOURCE)
    for node in model.graph:
        node.name, tag = NAMES[node.op_type]
        set_node_tags(node, [tag])
    model.metadata_props[HIERARCHY_KEY] = json.dumps(HIERARCHY)
    for value in model.graph.initializers.values():
        value.const_value.metadata_props[TAGS_KEY] = json.dumps(["/M/A" if value.name == "w" else "/M/B"])
    return model


def named(text: str, *names: str) -> ir.Model:
    model = ir.from_onnx_text(text)
    for node, name in zip(model.graph, names, strict=True):
        node.name = name
    return model


def test_a_fusion_carries_all_its_tags_under_the_innermost_module():
    target = named(
        """
        <ir_version: 10, opset_import: ["" : 20, "com.example" : 1]>
        g (float[2,4] x) => (float[2,4] y) <float[4] w = {1,2,3,4}, float[4] b = {1,1,1,1}> {
            t = com.example.AddMul(x, w, b)
            y = Relu(t)
        }
        """,
        "fused_0",
        "renamed_relu",
    )
    result = RetagPass(tagged_source())(target)
    fused, relu = list(target.graph)
    assert get_tags(fused) == ["/M", "/M/A", "/M/B"]  # primary: the innermost module holding both
    assert get_tags(relu) == ["/M"]
    assert result.coverage == 1.0 and result.evidence == {"fusion": 1, "output value": 1}
    assert target.metadata_props[HIERARCHY_KEY] == json.dumps(HIERARCHY)  # copied
    assert json.loads(target.graph.initializers["w"].const_value.metadata_props[TAGS_KEY]) == ["/M/A"]  # by name


def test_renamed_graph_is_followed_by_structure_and_helpers_serve_their_op():
    target = named(
        """
        <ir_version: 10, opset_import: ["" : 20]>
        g (float[2,4] x) => (float[2,4] y)
            <float[4] w2 = {1,2,3,4}, float[4] b = {1,1,1,1}, float s = {1.0}, uint8 z = {0}> {
            p = Add(x, w2)
            q = QuantizeLinear(p, s, z)
            r = DequantizeLinear(q, s, z)
            m = Mul(r, b)
            y = Relu(m)
        }
        """,
        "n0",
        "quant",
        "dequant",
        "n1",
        "n2",
    )
    result = RetagPass(tagged_source())(target)
    tags = {n.name: get_tags(n) for n in target.graph}
    assert tags == {"n0": ["/M/A"], "quant": ["/M/B"], "dequant": ["/M/B"], "n1": ["/M/B"], "n2": ["/M"]}
    assert result.evidence == {"structure": 2, "helper": 2, "output value": 1}  # the Mul reads through helpers
    assert result.matches == {"n0": "/a/Add_0", "n1": "/b/Mul_0", "n2": "/Relu_0"}
    # a weight no source weight names: the tags of its consumers
    assert json.loads(target.graph.initializers["w2"].const_value.metadata_props[TAGS_KEY]) == ["/M/A"]


def test_nothing_is_guessed_and_prefixes_count():
    target = named(
        """
        <ir_version: 10, opset_import: ["" : 20]>
        g (float[2,4] x, float[2,4] x2) => (float[2,4] y, float[2,4] k, float[2,4] z)
            <float[4] w = {1,2,3,4}, float[4] b = {1,1,1,1}> {
            a = Add(x2, w)
            m = Mul(a, b)
            y = Relu(m)
            k = Neg(x2)
            z = Sin(x)
        }
        """,
        "add",
        "mul",
        "relu",
        "/a/Add_0_extra",
        "stray",
    )
    result = RetagPass(tagged_source())(target)
    add, mul, relu, extra, sin = list(target.graph)
    assert [get_tags(n) for n in (add, mul, relu, extra)] == [["/M/A"], ["/M/B"], ["/M"], ["/M/A"]]
    # Relu by its output's name; Mul and Add back from it, through the values they hand on
    assert result.evidence == {"output value": 1, "structure": 2, "name prefix": 1}
    assert result.unmapped == {"stray": ("Sin", "no name, value or structure ties it to the tagged model")}
    assert TAG_KEY not in sin.metadata_props
    assert result.coverage == pytest.approx(4 / 5)


RESIDUAL = """
<ir_version: 10, opset_import: ["" : 20]>
g (float[2,4] x) => (float[2,4] y) <float[4] w = {1,2,3,4}> {
    p = Sin(x)
    h = Mul(p, w)
    s = Add(h, x)
    r = Relu(s)
    y = Neg(r)
}
"""


def tagged(text: str, tags: dict[str, str]) -> ir.Model:
    """A source model whose nodes are named ``/<op>_<k>`` and tagged by that name."""
    model = ir.from_onnx_text(text)
    counts: collections.Counter = collections.Counter()
    for node in model.graph:
        node.name = f"/{node.op_type}_{counts[node.op_type]}"
        counts[node.op_type] += 1
        set_node_tags(node, [tags[node.name]])
    model.metadata_props[HIERARCHY_KEY] = json.dumps(HIERARCHY)
    return model


def residual_source() -> ir.Model:
    """A block whose first op's output is summed with the block's input, then activated."""
    return tagged(RESIDUAL, {"/Sin_0": "/M/B", "/Mul_0": "/M/A", "/Add_0": "/M", "/Relu_0": "/M", "/Neg_0": "/M/B"})


def test_a_node_named_after_the_first_op_it_fused_stands_for_all_it_fused():
    # as ONNX Runtime fuses a convolution with the residual sum and the activation after it,
    # naming the fused node after the convolution's output
    target = named(
        """
        <ir_version: 10, opset_import: ["" : 20, "com.example" : 1]>
        g (float[2,4] x) => (float[2,4] y) <float[4] w = {1,2,3,4}> {
            p = Sin(x)
            t = com.example.MulAddRelu(p, w, x)
            y = Neg(t)
        }
        """,
        "sin",
        "h_fused",
        "neg",
    )
    result = RetagPass(residual_source())(target)
    assert {n.name: get_tags(n) for n in target.graph} == {
        "sin": ["/M/B"],
        "h_fused": ["/M", "/M/A"],  # Mul, Add and Relu: it reads the sum's other input
        "neg": ["/M/B"],
    }
    assert result.matches == {"sin": "/Sin_0", "neg": "/Neg_0"}  # the Neg reads the Relu's value


def test_a_helper_named_after_a_tools_op_serves_that_op():
    # dynamic quantization: the integer op's raw output is cast and rescaled by helpers named
    # after it, before the sum of the module around it reads the result
    target = named(
        """
        <ir_version: 10, opset_import: ["" : 20, "com.example" : 1]>
        g (float[2,4] x) => (float[2,4] y) <float[4] w = {1,2,3,4}, float sc = {2.0}> {
            p = Sin(x)
            q = com.example.MulInteger(p, w)
            c = Cast<to = 1>(q)
            h2 = Mul(c, sc)
            s = Add(h2, x)
            r = Relu(s)
            y = Neg(r)
        }
        """,
        "sin",
        "f_/Mul_0_quant",
        "q_cast",
        "f_/Mul_0_quant_output_scale_mul",
        "add",
        "relu",
        "neg",
    )
    result = RetagPass(residual_source())(target)
    tags = {n.name: get_tags(n)[0] for n in target.graph}
    assert tags["q_cast"] == tags["f_/Mul_0_quant_output_scale_mul"] == tags["f_/Mul_0_quant"] == "/M/A"
    assert tags["add"] == "/M" and result.coverage == 1.0


def test_merged_ops_stand_for_what_they_merged_and_output_helpers_take_the_op_before():
    source = tagged(
        """
        <ir_version: 10, opset_import: ["" : 20]>
        g (float[2,4] x) => (float[2,4] y)
            <float[4,4] wa = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1},
             float[4,4] wb = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}> {
            a = MatMul(x, wa)
            b = MatMul(x, wb)
            y = Add(a, b)
        }
        """,
        {"/MatMul_0": "/M/A", "/MatMul_1": "/M/A", "/Add_0": "/M/B"},
    )
    # a simplifier merges the two projections of one input into one MatMul and a Split; a
    # quantizer puts a quantize-dequantize pair on the graph output
    target = named(
        """
        <ir_version: 10, opset_import: ["" : 20]>
        g (float[2,4] x) => (float[2,4] y)
            <float[4,8] w = {1,0,0,0,1,0,0,0, 0,1,0,0,0,1,0,0, 0,0,1,0,0,0,1,0, 0,0,0,1,0,0,0,1},
             float s = {1.0}, uint8 z = {0}> {
            m = MatMul(x, w)
            p, q = Split<axis = 1, num_outputs = 2>(m)
            r = Add(p, q)
            rq = QuantizeLinear(r, s, z)
            y = DequantizeLinear(rq, s, z)
        }
        """,
        "MatMul_0",
        "Split_1",
        "/Add_0",
        "y_QuantizeLinear",
        "y_DequantizeLinear",
    )
    result = RetagPass(source)(target)
    assert {n.name: get_tags(n)[0] for n in target.graph} == {
        "MatMul_0": "/M/A",
        "Split_1": "/M/A",  # both stand for the two MatMuls between x and the sum's inputs
        "/Add_0": "/M/B",
        "y_QuantizeLinear": "/M/B",
        "y_DequantizeLinear": "/M/B",
    }
    assert result.coverage == 1.0 and result.evidence["fusion"] == 2


def test_a_name_is_no_evidence_against_the_data_a_node_reads():
    # named after the sum, but reading only the Mul's input: it cannot stand for the sum,
    # which also reads x (a fusion accepts only regions reading what the node reads)
    target = named(
        """
        <ir_version: 10, opset_import: ["" : 20, "com.example" : 1]>
        g (float[2,4] x) => (float[2,4] y) <float[4] w = {1,2,3,4}> {
            p = Sin(x)
            t = com.example.Op(p, w)
            y = Neg(t)
        }
        """,
        "sin",
        "s_fused",
        "neg",
    )
    result = RetagPass(residual_source())(target)
    # it reads the weight only the Mul reads: it stands for that Mul
    assert get_tags(list(target.graph)[1]) == ["/M/A"] and result.coverage == 1.0


def test_an_op_is_followed_through_a_helper_a_tool_removed():
    source = tagged(
        """
        <ir_version: 10, opset_import: ["" : 20]>
        g (float[2,2] x) => (float[2,2] y) {
            t = Transpose<perm = [1, 0]>(x)
            y = Relu(t)
        }
        """,
        {"/Transpose_0": "/M/A", "/Relu_0": "/M/B"},
    )
    target = named(  # the layout changed: the transpose is gone, the Relu reads x itself
        """
        <ir_version: 10, opset_import: ["" : 20]>
        g (float[2,2] x) => (float[2,2] out) {
            out = Relu(x)
        }
        """,
        "renamed",
    )
    result = RetagPass(source)(target)
    assert result.matches == {"renamed": "/Relu_0"} and get_tags(next(iter(target.graph))) == ["/M/B"]


def test_an_op_named_as_a_value_it_reads_is_not_that_value():
    # inlined bodies: the block's `/Add_0` reads the value the model's own `/Add_0` made
    text = """
        <ir_version: 10, opset_import: ["" : 20]>
        g (float[2,4] x) => (float[2,4] y) {
            e = Add(x, x)
            c = Cos(x)
            s = Add(e, c)
            y = Neg(s)
        }
        """
    source = tagged(text, {"/Add_0": "/M/A", "/Cos_0": "/M/A", "/Add_1": "/M/B", "/Neg_0": "/M"})
    for node, value in zip(source.graph, ["/M/Add_0:0", "/M/Cos_0:0", "/M/b/Add_0:0"], strict=False):
        node.outputs[0].name = value
    target = named(text, "f_/Add_0", "f_/Cos_0", "g_/Add_0", "neg")
    for node in list(target.graph)[:3]:
        node.outputs[0].name = f"{node.name}:0"
    RetagPass(source)(target)
    assert [get_tags(n)[0] for n in target.graph] == ["/M/A", "/M/A", "/M/B", "/M"]


def test_a_node_making_a_value_of_the_source_takes_its_makers_tags_not_its_readers():
    source = tagged(
        """
        <ir_version: 10, opset_import: ["" : 20]>
        g (float[2,4] x) => (float[2,4] y, float[2,4] z)
            <float[4,4] w = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}, float[4] b = {1,1,1,1}> {
            m = MatMul(x, w)
            h = Add(m, b)
            y = Cos(h)
            z = Neg(y)
        }
        """,
        {"/MatMul_0": "/M/A", "/Add_0": "/M/A", "/Cos_0": "/M/B", "/Neg_0": "/M"},
    )
    # a Gemm and a reshape back named after the sum; a quantize-dequantize pair on the graph
    # output y, whose dequantize is named after it while another module reads it
    target = named(
        """
        <ir_version: 10, opset_import: ["" : 20]>
        g (float[2,4] x) => (float[2,4] y, float[2,4] z)
            <float[4,4] w = {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1}, float[4] b = {1,1,1,1},
             int64[2] shape = {2,4}, float s = {1.0}, uint8 q0 = {0}> {
            g = Gemm(x, w, b)
            h = Reshape(g, shape)
            y_QuantizeLinear_Input = Cos(h)
            yq = QuantizeLinear(y_QuantizeLinear_Input, s, q0)
            y = DequantizeLinear(yq, s, q0)
            z = Neg(y)
        }
        """,
        "Gemm_7",
        "gemm_output_reshape",
        "/Cos_0",
        "y_QuantizeLinear",
        "y_DequantizeLinear",
        "/Neg_0",
    )
    result = RetagPass(source)(target)
    assert {n.name: get_tags(n)[0] for n in target.graph} == {
        "Gemm_7": "/M/A",
        "gemm_output_reshape": "/M/A",  # it makes the sum /M/A made; the Cos of /M/B reads it
        "/Cos_0": "/M/B",
        "y_QuantizeLinear": "/M/B",
        "y_DequantizeLinear": "/M/B",  # it makes y, which /M/B made and /M reads
        "/Neg_0": "/M",
    }
    assert result.coverage == 1.0


def test_an_op_split_in_two_stands_for_the_op_it_replaced():
    # ONNX Runtime inlines HardSwish as an unnamed HardSigmoid and a Mul named after nothing,
    # whose output keeps the source value's name
    source = tagged(
        """
        <ir_version: 10, opset_import: ["" : 20]>
        g (float[2,4] x) => (float[2,4] y) {
            c = Sin(x)
            h = HardSwish(c)
            y = Neg(h)
        }
        """,
        {"/Sin_0": "/M/A", "/HardSwish_0": "/M/B", "/Neg_0": "/M"},
    )
    target = named(
        """
        <ir_version: 10, opset_import: ["" : 20]>
        g (float[2,4] x) => (float[2,4] y) {
            c = Sin(x)
            s = HardSigmoid<alpha = 0.1666667>(c)
            h = Mul(c, s)
            y = Neg(h)
        }
        """,
        "/Sin_0",
        "",
        "",
        "/Neg_0",
    )
    result = RetagPass(source)(target)
    assert [get_tags(n)[0] for n in target.graph] == ["/M/A", "/M/B", "/M/B", "/M"]
    assert result.unmapped == {}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """BERT tiny and models of the zoo, flat and functions form."""
    from transformers import BertModel
    from zoo.models import build

    root = tmp_path_factory.mktemp("retag")
    torch.manual_seed(0)
    bert = BertModel(bert_config()).eval()
    hiercompile.export(bert, (), root / "bert", kwargs=bert_inputs(), functions=True)
    for name in ZOO:
        model, inputs = build(name)
        hiercompile.export(model, (), root / name, kwargs=inputs, functions=True)
    return root


# a vision model, a decoder, a convolutional model with layer norms, an encoder-decoder, and a
# mobile network (depthwise convolutions, hard-swish, squeeze-excite), and a mobile vision transformer
ZOO = ["resnet", "gpt2", "convnext", "whisper", "mobilenet", "mobilevit"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bert", *ZOO])
def test_deployment_tools_keep_their_tags(exports, name, tmp_path):
    from deploy_tools import KNOWN_GAPS, TEXT_ONLY, TOOLS, wrong_makers

    per_tool: dict[str, dict[str, collections.Counter]] = collections.defaultdict(dict)
    for form in ("model.onnx", "model.functions.onnx"):
        label = "functions" if "functions" in form else "flat"
        source = exports / name / form
        flat = hiercompile.HierarchyRetriever(source).model
        original = {n.name: (n.op_type, get_tags(n)) for n in flat.graph}
        for tool_name, tool in TOOLS.items():
            if tool_name in TEXT_ONLY and name != "bert":
                continue
            if tool_name.startswith("onnx.version_converter") and form == "model.functions.onnx":
                continue  # it drops the model's functions: its output is no model
            transformed = tmp_path / f"{form}.{len(per_tool)}.onnx"
            tool(source, transformed)
            result = hiercompile.retag(transformed, source, tmp_path / "tagged.onnx")
            if (name, label, tool_name) in KNOWN_GAPS:  # stated in the table; fixed, the entry goes
                assert result.coverage < 0.99, (name, label, tool_name)
                continue
            assert result.coverage >= 0.99, (tool_name, form, result.unmapped)
            wrong = wrong_makers(result.model, flat)
            assert not wrong, (tool_name, form, wrong)  # every value the source made: on its maker's module
            model = result.model
            for node in model.graph:  # every node kept from the original keeps its tags
                if node.name in original and original[node.name][0] == node.op_type:
                    assert get_tags(node) == original[node.name][1], (tool_name, node.name)
            if result.coverage == 1.0 and loads(transformed):  # ORT fails on some of its own outputs
                check_spec(tmp_path / "tagged.onnx")
            if not any(f.domain == FUNCTION_DOMAIN for f in model.functions.values()):  # inlined by the tool
                per_tool[tool_name][form] = collections.Counter(get_tags(n)[0] for n in model.graph if get_tags(n))
    for tool_name, forms in per_tool.items():  # both forms, one tool: the same ops in the same modules
        if len(forms) == 2:
            assert forms["model.onnx"] == forms["model.functions.onnx"], tool_name


def loads(path: Path) -> bool:
    """Whether ONNX Runtime loads a file (it fails on some functions-form models it optimized itself)."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception:
        return False
    return True


def test_retag_command(exports, tmp_path, capsys):
    from deploy_tools import TOOLS

    from hiercompile._cli import main

    transformed = tmp_path / "optimized.onnx"
    TOOLS["ORT optimized, EXTENDED"](exports / "bert" / "model.onnx", transformed)
    assert main(["retag", str(transformed), "--from", str(exports / "bert")]) == 0
    err = capsys.readouterr().err
    assert f"wrote {tmp_path / 'optimized.tagged.onnx'}: 79 of 79 nodes tagged (100.0%)" in err
    check_spec(tmp_path / "optimized.tagged.onnx")
    profile = hiercompile.profile(transformed, runs=2, source=exports / "bert")
    assert profile.unattributed == [] and sum(m.ops for m in profile.modules) == profile.kernels
    assert main(["retag", str(transformed), "--from", str(tmp_path / "nowhere")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_a_model_that_does_not_come_from_the_source_is_refused(exports, tmp_path, capsys):
    from deploy_tools import TOOLS

    from hiercompile._cli import main

    small = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()).eval()
    hiercompile.export(small, (torch.randn(2, 4),), tmp_path / "small")
    with pytest.raises(hiercompile.RetagError, match=r"0 of its 1 inputs .* 0% of its weights"):
        hiercompile.retag(tmp_path / "small" / "model.onnx", exports / "bert")
    optimized = tmp_path / "optimized.onnx"
    TOOLS["ORT optimized, ALL"](exports / "bert" / "model.onnx", optimized)
    assert main(["retag", str(optimized), "--from", str(exports / "gpt2")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the model does not come from") and "% of its weights" in err
    assert not (tmp_path / "optimized.tagged.onnx").exists()
    result = hiercompile.retag(optimized, exports / "bert")  # its own source: the evidence holds
    assert result.related and result.shared_weights > 0.9 and result.shared_inputs == (2, 2)


def test_a_model_calling_functions_it_lost_is_a_warning(exports, tmp_path):
    from deploy_tools import TOOLS

    converted = tmp_path / "converted.onnx"
    TOOLS["onnx.version_converter to opset 21"](exports / "bert" / "model.functions.onnx", converted)
    with pytest.warns(hiercompile.BrokenModelWarning, match="calls functions it does not define"):
        hiercompile.retag(converted, exports / "bert" / "model.functions.onnx")


def test_every_untagged_node_is_its_own_entry_named_or_not():
    source = tagged_source()
    target = ir.from_onnx_text("""
<ir_version: 10, opset_import: ["" : 20]>
g (float[2,4] x, float[3] p, float[3] q) => (float[2,4] y, float[3] r, float[3] s)
    <float[4] w = {1,2,3,4}, float[4] b = {1,1,1,1}> {
    sa = Add(x, w)
    sm = Mul(sa, b)
    y = Relu(sm)
    r = Sub(p, q)
    s = Div(p, q)
}
""")
    for node in target.graph:
        node.name = {"Add": "/a/Add_0", "Mul": "/b/Mul_0", "Relu": "/Relu_0"}.get(node.op_type, "")
    result = RetagPass(source)(target)
    assert sorted(op for op, _ in result.unmapped.values()) == ["Div", "Sub"]  # two entries, not one ""
    assert all(name.startswith("<") for name in result.unmapped)
    assert result.coverage == 3 / 5


def test_a_source_grouped_by_module_gives_its_retag_the_same_groups():
    from hiercompile.passes import NamespacePass

    source = tagged_source()
    NamespacePass()(source)
    target = ir.from_onnx_text(SOURCE)
    for node in target.graph:
        node.name = NAMES[node.op_type][0]
    RetagPass(source)(target)
    assert {n.op_type: n.metadata_props.get("namespace") for n in target.graph} == {
        "Add": "M/A",
        "Mul": "M/B",
        "Relu": "M",
    }
    plain = ir.from_onnx_text(SOURCE)
    RetagPass(tagged_source())(plain)  # a source without groups: none added
    assert not any("namespace" in n.metadata_props for n in plain.graph)
