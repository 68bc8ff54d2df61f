"""BERT tiny end to end: tags, SPEC check, ONNX Runtime parity, DAG facts, CSE and tied weights."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import onnx
import pytest
import torch
from conftest import bert_config, bert_inputs, check_spec, run_onnx
from hiercompile.passes import HIERARCHY_KEY, TAG_KEY, get_tags

import hiercompile

SPEC_EXAMPLES = {
    "/BertModel",
    "/BertModel/BertEmbeddings",
    "/BertModel/BertEncoder/BertLayer.0/BertAttention/BertSelfAttention",
    "/BertModel/BertEncoder/BertLayer.0/BertAttention/BertSelfOutput",
    "/BertModel/BertEncoder/BertLayer.0/BertIntermediate/GELUActivation",
    "/BertModel/BertEncoder/BertLayer.1/BertOutput",
    "/BertModel/BertPooler",
}


def expected_tags(model: torch.nn.Module) -> set[str]:
    """Tags by docs/tags.md for a tree without same-class siblings, straight from named_modules()."""
    modules = dict(model.named_modules())
    tags = {}
    for path, module in modules.items():
        if path and type(module).__module__.startswith("torch."):
            continue
        segments = []
        parts = path.split(".") if path else []
        for i in range(len(parts) + 1):
            sub = ".".join(parts[:i])
            m = modules[sub]
            if sub and type(m).__module__.startswith("torch."):
                continue
            parent = modules[".".join(parts[: i - 1])] if i else None
            container = isinstance(parent, torch.nn.ModuleList | torch.nn.Sequential | torch.nn.ModuleDict)
            segments.append(type(m).__name__ + (f".{parts[i - 1]}" if container else ""))
        tags[path] = "/" + "/".join(segments)
    return set(tags.values())


def test_tags_equal_the_expectation_and_the_spec_examples(bert_export):
    model, _, result, out = bert_export
    expected = expected_tags(model)
    assert len(expected) == 18  # every kept module, with or without ops of its own
    saved = onnx.load(out / "model.onnx")
    meta = {p.key: p.value for p in saved.metadata_props}
    assert set(json.loads(meta[HIERARCHY_KEY])) == set(result.hierarchy) == expected
    assert meta["hiercompile.version"] == hiercompile.__version__
    node_tags = {p.value for n in saved.graph.node for p in n.metadata_props if p.key == TAG_KEY}
    # the 13 modules that run ops themselves; BertEncoder, BertLayer.K, BertAttention only call children
    assert len(node_tags) == 13
    assert SPEC_EXAMPLES <= node_tags <= expected
    wrappers = expected - node_tags
    assert {t.rsplit("/", 1)[-1].split(".")[0] for t in wrappers} == {"BertEncoder", "BertLayer", "BertAttention"}


def test_spec_checker_passes(bert_export):
    *_, out = bert_export
    check_spec(out / "model.onnx", out)


def test_onnx_runtime_matches_pytorch(bert_export):
    model, inputs, _, out = bert_export
    with torch.no_grad():
        expected = model(**inputs)
    got = run_onnx(out / "model.onnx", inputs)
    np.testing.assert_allclose(got[0], expected.last_hidden_state.numpy(), atol=1e-4)
    np.testing.assert_allclose(got[1], expected.pooler_output.numpy(), atol=1e-4)


def test_coverage_is_complete(bert_export):
    _, _, result, _ = bert_export
    assert result.coverage == 1.0
    assert all(get_tags(n) for n in result.model.graph if n.op_type != "Constant")
    assert all(get_tags(v) for v in result.model.graph.initializers.values())


def test_merged_mask_node_carries_both_layers(bert_export):
    _, _, result, _ = bert_export
    layer_tags = {f"/BertModel/BertEncoder/BertLayer.{i}/BertAttention/BertSelfAttention" for i in (0, 1)}
    merged = [n for n in result.model.graph if len(get_tags(n)) > 1]
    where = [n for n in merged if n.op_type == "Where"]
    assert len(where) == 1
    assert set(get_tags(where[0])) == layer_tags
    consumers = {get_tags(user)[0] for out in where[0].outputs for user, _ in out.uses()}
    assert consumers == layer_tags


def test_dags_are_induced_acyclic_and_nest(bert_export):
    _, _, result, out = bert_export
    full = result.graph
    assert nx.is_directed_acyclic_graph(full)
    dags = json.loads((out / "module_dags.json").read_text())
    assert set(dags) == set(result.hierarchy)
    for tag, dag in dags.items():
        nodes = set(dag["nodes"])
        induced = full.subgraph(nodes)
        assert {tuple(e) for e in dag["edges"]} == set(induced.edges)
        assert nx.is_directed_acyclic_graph(induced)
        for child in result.hierarchy[tag]["children"]:
            assert set(dags[child]["nodes"]) <= nodes
        assert len(nodes) == result.hierarchy[tag]["num_ops_total"]
    own_sets = [{n for n, d in full.nodes(data=True) if d["tags"][0] == t} for t in result.hierarchy]
    assert sum(map(len, own_sets)) == full.number_of_nodes()  # every op in exactly one module's own set
    assert dags["/BertModel"]["nodes"] == sorted(full.nodes)


def test_operations_and_hierarchy_json(bert_tiny, bert_export):
    _, _, result, out = bert_export
    ops = json.loads((out / "operations.json").read_text())
    hier = json.loads((out / "hierarchy.json").read_text())
    assert ops == json.loads(json.dumps(result.operations))
    word = ops["embeddings.word_embeddings.weight"]
    assert word["op_type"] == "Initializer"
    assert word["tags"] == ["/BertModel/BertEmbeddings"]
    gathers = [k for k, v in ops.items() if "embeddings.word_embeddings.weight" in v.get("inputs", [])]
    assert gathers and all(ops[g]["tags"] == ["/BertModel/BertEmbeddings"] for g in gathers)
    layer = hier["/BertModel/BertEncoder/BertLayer.1"]
    assert layer["parent"] == "/BertModel/BertEncoder"
    assert layer["module"] == "encoder.layer.1"
    assert layer["class"] == "transformers.models.bert.modeling_bert.BertLayer"
    assert layer["depth"] == 2
    assert layer["num_parameters"] == sum(p.numel() for p in bert_tiny.encoder.layer[1].parameters())
    assert set(layer["children"]) == {
        "/BertModel/BertEncoder/BertLayer.1/BertAttention",
        "/BertModel/BertEncoder/BertLayer.1/BertIntermediate",
        "/BertModel/BertEncoder/BertLayer.1/BertOutput",
    }
    assert hier["/BertModel"]["num_ops_total"] == sum(e["num_ops"] for e in hier.values())


@pytest.mark.slow
def test_tied_embeddings_give_an_initializer_two_tags(tmp_path):
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(bert_config()).eval()
    inputs = bert_inputs()
    result = hiercompile.export(model, (), tmp_path, kwargs=inputs)
    multi = {n: get_tags(v) for n, v in result.model.graph.initializers.items() if len(get_tags(v)) == 2}
    assert [
        "/BertForMaskedLM/BertModel/BertEmbeddings",
        "/BertForMaskedLM/BertOnlyMLMHead/BertLMPredictionHead",
    ] in multi.values()
    check_spec(tmp_path / "model.onnx", tmp_path)
    with torch.no_grad():
        expected = model(**inputs).logits.numpy()
    np.testing.assert_allclose(run_onnx(tmp_path / "model.onnx", inputs)[0], expected, atol=1e-4)


def test_single_onnx_file_output(bert_tiny, tmp_path):
    target = tmp_path / "sub" / "bert.onnx"
    hiercompile.export(bert_tiny, (), target, kwargs=bert_inputs(8))
    assert [p.name for p in target.parent.iterdir()] == ["bert.onnx"]
    check_spec(target)
