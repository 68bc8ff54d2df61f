"""Cut one module instance out of a tagged model as a standalone, valid ONNX model."""

from __future__ import annotations

import json
from pathlib import Path

import onnx_ir as ir

from .._errors import QueryError
from .._io import onnx_writer, write_files
from ..passes import HIERARCHY_KEY, get_tags, is_under
from ..passes.partition import partition
from ._retrieve import HierarchyRetriever, ModelSource


def extract(model: ModelSource, tag: str, output: str | Path | None = None) -> ir.Model:
    """The ops of module ``tag`` (and its subtree) as a model of their own.

    An op merged out of several modules (it carries several tags) is included when
    any of its tags lies in the subtree, as it would be in the module exported alone.

    Graph inputs are the values the module receives from the rest of the graph (with
    their types and shapes), graph outputs the values it hands back or that are model
    outputs. The initializers and ``Constant`` nodes it uses are copied inside. Tags
    are the full tags of the original model; the hierarchy metadata keeps the subtree.
    ``tag`` must be exact: ``.../Block.0`` never matches ``.../Block.1``.
    """
    retriever = HierarchyRetriever(model)
    retriever.get_module_subtree(tag)  # unknown tags fail here, with the closest ones named
    source = retriever.model.clone()
    graph = source.graph
    inside = {n for n in graph if n.op_type != "Constant" and any(is_under(t, tag) for t in get_tags(n))}
    if not inside:
        raise QueryError(f"module {tag!r} runs no op of its own or below it; extract its parent instead")
    for node in list(inside):
        inside.update(v.producer() for v in node.inputs if v is not None and _is_constant_output(v))
    cut = partition(graph, inside)
    params = cut.params  # before they leave the source graph
    inputs = {v: ir.Value(name=v.name, type=v.type, shape=v.shape) for v in cut.inputs if not v.is_initializer()}
    for node in cut.nodes:
        for index, value in enumerate(node.inputs):
            if value in inputs:
                node.replace_input_with(index, inputs[value])
    graph.outputs.clear()
    graph.remove(cut.nodes, safe=False)
    for value in params:
        graph.initializers.pop(value.name)
    hierarchy = json.loads(source.metadata_props[HIERARCHY_KEY])
    subtree = {t: dict(e) for t, e in hierarchy.items() if is_under(t, tag)}
    subtree[tag]["parent"] = None
    extracted = ir.Model(
        ir.Graph(
            list(inputs.values()),
            cut.outputs,
            nodes=cut.nodes,
            initializers=params,
            opset_imports=graph.opset_imports,
            name=tag,
        ),
        ir_version=source.ir_version,
        producer_name=source.producer_name,
        functions=source.functions.values(),
        metadata_props={**source.metadata_props, HIERARCHY_KEY: json.dumps(subtree, sort_keys=True)},
    )
    if output is not None:
        output = Path(output)
        write_files(output.parent, {output.name: onnx_writer(extracted)})
    return extracted


def _is_constant_output(value: ir.Value) -> bool:
    producer = value.producer()
    return producer is not None and producer.op_type == "Constant"
