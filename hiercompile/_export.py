"""``hiercompile.export``: capture → tag → lower → carry → derive, and the result it returns."""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import networkx as nx
import onnx_ir as ir
import torch
from torch import nn

from . import _derive
from ._capture import capture
from ._errors import TagError
from ._io import json_writer, onnx_writer, write_files
from ._lower import lower
from ._tag_onnx import functionize, tag_onnx_model
from .passes import AddTagAttributesPass, KeepPredicate, ModuleHierarchy, call_indices, tag_fx_graph

STEPS = ("capture", "tag", "lower", "carry", "derive")
MODEL_FILE = "model.onnx"
ATTRIBUTES_FILE = "model.attributes.onnx"
FUNCTIONS_FILE = "model.functions.onnx"

Progress = Callable[[str, float | None], None]
"""Called with (step, None) when a step starts and (step, seconds) when it ends."""


class AttributesWarning(UserWarning):
    """The attribute form of the tags makes a model that ONNX tools reject."""


@dataclasses.dataclass
class ExportResult:
    """A tagged ONNX model and what was derived from it.

    Attributes:
        model: the tagged ONNX model.
        hierarchy: ``hierarchy.json``: tag -> class, module path, parent, depth,
            children, parameter and op counts.
        graph: the model's data-flow DAG (networkx); nodes carry ``op_type`` and ``tags``.
        module_dags: tag -> that module's DAG, the subgraph induced by its subtree's ops.
        operations: ``operations.json``: node/initializer name -> op_type, inputs, outputs, tags.
        timings: seconds per step.
        attributes: whether :meth:`save` also writes the attribute form.
        functions: whether :meth:`save` also writes the functions form.
        external_data: weights in ``<model file>.data`` (None: only past protobuf's 2 GB limit).
    """

    model: ir.Model
    hierarchy: dict[str, dict]
    graph: nx.DiGraph
    module_dags: dict[str, nx.DiGraph]
    operations: dict[str, dict]
    timings: dict[str, float]
    attributes: bool = False
    functions: bool = False
    external_data: bool | None = None

    @property
    def coverage(self) -> float:
        """Share of non-Constant ops that carry a tag (1.0 for every successful export)."""
        total = self.graph.number_of_nodes()
        return sum(1 for _, d in self.graph.nodes(data=True) if d["tags"]) / total if total else 1.0

    def dags_json(self) -> dict[str, dict]:
        """``module_dags.json``: tag -> ``{"nodes", "edges"}``."""
        return {
            tag: {"nodes": sorted(dag.nodes), "edges": sorted([list(e) for e in dag.edges])}
            for tag, dag in self.module_dags.items()
        }

    def attributes_model(self) -> ir.Model:
        """A copy of the model with the tags also as node attributes (invalid ONNX: see SPEC §4)."""
        copy = self.model.clone()
        AddTagAttributesPass()(copy)
        return copy

    def functions_model(self) -> ir.Model:
        """A copy of the model with every kept module instance as a call of a local function (SPEC §6)."""
        return functionize(self.model.clone()).model

    def save(self, output: str | Path) -> list[Path]:
        """Write the artifacts atomically and return their paths.

        ``output`` ending in ``.onnx`` writes only the model there; any other path is a
        directory that receives ``model.onnx``, ``hierarchy.json``, ``module_dags.json``,
        ``operations.json``, with ``functions`` ``model.functions.onnx`` and, with
        ``attributes``, ``model.attributes.onnx``.
        """
        output = Path(output)
        if output.suffix == ".onnx":
            return write_files(output.parent, {output.name: onnx_writer(self.model, self.external_data)})
        files = {
            MODEL_FILE: onnx_writer(self.model, self.external_data),
            "hierarchy.json": json_writer(self.hierarchy),
            "module_dags.json": json_writer(self.dags_json()),
            "operations.json": json_writer(self.operations),
        }
        if self.functions:
            files[FUNCTIONS_FILE] = onnx_writer(self.functions_model(), self.external_data)
        if self.attributes:
            warnings.warn(
                f"{ATTRIBUTES_FILE} carries tags as node attributes: onnx.checker and ONNX Runtime reject it. "
                f"Use {MODEL_FILE} to run; `hiercompile strip-attributes` turns it back into a valid model.",
                AttributesWarning,
                stacklevel=2,
            )
            files[ATTRIBUTES_FILE] = onnx_writer(self.attributes_model(), self.external_data)
        return write_files(output, files)


class _Steps:
    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.progress:
            self.progress(name, None)
        start = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - start
        if self.progress:
            self.progress(name, self.timings[name])


def export(
    model: nn.Module,
    args: tuple = (),
    kwargs: dict[str, Any] | None = None,
    output: str | Path | None = None,
    *,
    keep: KeepPredicate | None = None,
    dynamic_shapes: Any = None,
    attributes: bool = False,
    functions: bool = False,
    scoped_names: bool = True,
    namespace: bool = False,
    external_data: bool | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Export ``model`` to ONNX with every op tagged by the module it ran in.

    Args:
        model: any ``torch.nn.Module``.
        args, kwargs: example inputs for ``model.forward``.
        output: a directory for all artifacts, a ``.onnx`` path for the model only, or None.
        keep: which modules appear in tags (default: classes that are not PyTorch built-ins).
        dynamic_shapes: passed to ``torch.export.export``.
        attributes: also write ``model.attributes.onnx`` with the seed notes' node attributes.
        functions: also write ``model.functions.onnx``, each module a local function.
        scoped_names: name nodes ``/module/path/OpType_n`` (the exporter's names stay in metadata).
        namespace: set each node's ``namespace`` metadata to its tag path, so Model Explorer
            groups nodes by this hierarchy.
        external_data: save weights beside the model (None: only when they exceed 2 GB).
        progress: called as each step starts and ends.
    """
    kwargs = dict(kwargs or {})
    step = _Steps(progress)
    with step("capture"):
        program = capture(model, args, kwargs, dynamic_shapes)
    hierarchy = ModuleHierarchy(model, keep)
    result = export_program(
        program, hierarchy, step=step, attributes=attributes, scoped_names=scoped_names, namespace=namespace
    )
    result.functions = functions
    result.external_data = external_data
    if output is not None:
        result.save(output)
    return result


def export_program(
    program: torch.export.ExportedProgram,
    hierarchy: ModuleHierarchy,
    *,
    step: _Steps | None = None,
    attributes: bool = False,
    normalize_path: Callable[[str], str] = str,
    scoped_names: bool = True,
    namespace: bool = False,
) -> ExportResult:
    """Tag, lower, carry and derive: everything after capture, shared with the compile backend.

    ``normalize_path`` maps the module stacks' paths to ``named_modules()`` paths.
    """
    step = step or _Steps(None)
    with step("tag"):
        _tag_fx(program, hierarchy, normalize_path)
    with step("lower"):
        onnx_model, decomposed = lower(program)
    with step("carry"):
        fx_tags = _tag_fx(decomposed, hierarchy, normalize_path)
        tag_onnx_model(
            onnx_model,
            fx_tags=fx_tags,
            fx_calls=call_indices(decomposed.graph),
            hierarchy=_derive.hierarchy_metadata(hierarchy),
            root_tag=hierarchy.root.tag,
            scoped_names=scoped_names,
            namespace=namespace,
        )
    with step("derive"):
        graph = _derive.data_flow_graph(onnx_model.graph)
        return ExportResult(
            model=onnx_model,
            hierarchy=_derive.hierarchy_summary(hierarchy, graph),
            graph=graph,
            module_dags=_derive.module_dags(graph, hierarchy.tags),
            operations=_derive.operations(onnx_model.graph),
            timings=step.timings,
            attributes=attributes,
        )


def _tag_fx(program: Any, hierarchy: ModuleHierarchy, normalize_path: Callable[[str], str]) -> dict[str, str]:
    try:
        return tag_fx_graph(program.graph, hierarchy, normalize_path=normalize_path)
    except KeyError as e:
        raise TagError(
            f"tag step failed: module path {e.args[0]!r} on an op's nn_module_stack is not a submodule "
            "of the model; export the same object you pass as model"
        ) from e
