"""HierarchyRetriever on BERT tiny, checked against named_modules() and the flat graph."""

from __future__ import annotations

import json

import onnx
import pytest
from hiercompile.passes import get_tags, is_under
from test_export_bert import expected_tags

from hiercompile import HierarchyRetriever, InputError, NotTaggedError, QueryError

LAYER0 = "/BertModel/BertEncoder/BertLayer.0"


@pytest.fixture(scope="module")
def retriever(bert_export):
    *_, out = bert_export
    return HierarchyRetriever(out / "model.onnx")


def test_modules_match_named_modules(bert_export, retriever):
    model, *_ = bert_export
    assert set(retriever.modules()) == expected_tags(model)
    assert retriever.modules()[0] == "/BertModel"
    order = retriever.modules()
    assert all(order.index(retriever.hierarchy[t]["parent"]) < order.index(t) for t in order[1:])
    assert retriever.get_modules_by_depth(1) == [
        "/BertModel/BertEmbeddings",
        "/BertModel/BertEncoder",
        "/BertModel/BertPooler",
    ]
    assert retriever.get_modules_by_depth(2) == [LAYER0, "/BertModel/BertEncoder/BertLayer.1"]
    assert len(retriever.get_module_subtree(LAYER0)) == 7
    assert all(is_under(t, LAYER0) for t in retriever.get_module_subtree(LAYER0))


def test_ops_partition_and_subtrees_nest(retriever):
    groups = retriever.group_operations_by_hierarchy()
    all_ops = [n for ops in groups.values() for n in ops]
    assert sorted(all_ops) == sorted(retriever.graph.nodes)  # every op in exactly one own set
    assert len(all_ops) == len(set(all_ops))
    for tag in retriever.modules():
        subtree = set(retriever.get_nodes_by_module(tag))
        assert set(retriever.get_nodes_by_module(tag, recursive=False)) == set(groups[tag])
        for child in retriever.modules():
            if retriever.hierarchy[child]["parent"] == tag:
                assert set(retriever.get_nodes_by_module(child)) <= subtree
    model_nodes = {n.name: n for n in retriever.model.graph}
    for name in retriever.get_nodes_by_module(LAYER0):
        assert is_under(get_tags(model_nodes[name])[0], LAYER0)


def test_parameters_and_dag(bert_tiny, retriever):
    assert "pooler.dense.weight" in retriever.parameters_of("/BertModel/BertPooler")
    # constant folding renames some weights (a transposed Linear weight) and drops zero biases,
    # so compare with the parameters that are still initializers under their own names
    names = set(retriever.model.graph.initializers)
    layer0 = {n for n, _ in bert_tiny.encoder.layer[0].named_parameters(prefix="encoder.layer.0")} & names
    layer1 = {n for n, _ in bert_tiny.encoder.layer[1].named_parameters(prefix="encoder.layer.1")} & names
    assert len(layer0) >= 8
    assert layer0 <= set(retriever.parameters_of(LAYER0))
    assert not layer1 & set(retriever.parameters_of(LAYER0))
    dag = retriever.module_dag(LAYER0)
    assert set(dag.nodes) == set(retriever.get_nodes_by_module(LAYER0))
    assert set(dag.edges) == set(retriever.graph.subgraph(dag.nodes).edges)
    assert sum(retriever.op_types(LAYER0).values()) == dag.number_of_nodes()


def test_unknown_tag_names_the_closest(retriever):
    with pytest.raises(QueryError, match=r"closest: /BertModel/BertEncoder/BertLayer\.1"):
        retriever.get_nodes_by_module("/BertModel/BertEncoder/BertLayer.7")


def test_untagged_and_corrupt_files(tmp_path):
    plain = tmp_path / "plain.onnx"
    onnx.save(
        onnx.parser.parse_model(
            '<ir_version: 10, opset_import: ["" : 20]> g (float[2] x) => (float[2] y) { y = Relu (x) }'
        ),
        plain,
    )
    with pytest.raises(NotTaggedError, match="not exported by hiercompile; export the PyTorch model"):
        HierarchyRetriever(plain)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(InputError, match="is not a readable ONNX model"):
        HierarchyRetriever(corrupt)
    with pytest.raises(InputError, match="no such file"):
        HierarchyRetriever(tmp_path / "missing.onnx")


def test_parameters_are_pytorchs_and_folded_constants_are_only_initializers(bert_export):
    model, *_, out = bert_export
    retriever = HierarchyRetriever(out / "model.onnx")
    side = json.loads((out / "hierarchy.json").read_text())
    for tag in retriever.modules():  # inspect's column, export's summary and hierarchy.json agree
        assert retriever.num_parameters(tag) == side[tag]["num_parameters"]
    assert retriever.num_parameters("/BertModel") == sum(p.numel() for p in model.parameters())
    names = set(dict(model.named_parameters())) | set(dict(model.named_buffers()))
    parameters = retriever.parameters_of("/BertModel")
    assert parameters and set(parameters) <= names  # no val_67
    folded = set(retriever.initializers_of("/BertModel")) - set(parameters)
    assert folded and not folded & names
