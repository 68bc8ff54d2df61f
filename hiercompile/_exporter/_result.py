"""The result of an export: the tagged model, what was derived from it, and the files it saves."""

from __future__ import annotations

__all__ = ["ExportResult"]

import dataclasses
import warnings
from pathlib import Path

import networkx as nx
import onnx_ir as ir

from .. import _artifacts
from .._artifacts import ATTRIBUTES_FILE, Output
from .._errors import AttributesWarning
from .._io import Writer, json_writer, onnx_writer
from ..passes import AddTagAttributesPass
from ._functions import functionize
from ._options import SaveOptions


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
        training: whether the model was captured in training mode (default: eval mode).
        capture_strategy: which of torch's capture strategies made the graph
            (``"non-strict"``, ``"strict"`` or ``"draft"``).
    """

    model: ir.Model
    hierarchy: dict[str, dict]
    graph: nx.DiGraph
    module_dags: dict[str, nx.DiGraph]
    operations: dict[str, dict]
    timings: dict[str, float]
    training: bool = False
    capture_strategy: str = "non-strict"

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
        """A copy of the model with the tags also as node attributes (invalid ONNX: see docs/tags.md)."""
        copy = self.model.clone()
        AddTagAttributesPass()(copy)
        return copy

    def functions_model(self) -> ir.Model:
        """A copy of the model with every kept module instance a call of a local function (the functions form)."""
        return functionize(self.model.clone()).model

    def save(
        self,
        output: str | Path,
        *,
        functions: bool = False,
        attributes: bool = False,
        external_data: bool | None = None,
    ) -> list[Path]:
        """Write the artifacts atomically and return their paths.

        ``output`` ending in ``.onnx`` writes the model there (and the functions and
        attribute forms beside it as ``<stem>.functions.onnx`` / ``<stem>.attributes.onnx``);
        any other path is a folder that receives ``model.onnx``, ``hierarchy.json``,
        ``module_dags.json``, ``operations.json`` and ``manifest.json``, plus
        ``model.functions.onnx`` with ``functions`` and ``model.attributes.onnx`` with
        ``attributes``. Files an earlier run left there and this one does not write are
        removed. ``external_data``: weights in ``<model file>.data`` (None: only past
        protobuf's 2 GB limit).
        """
        out = Output(output)
        return out.write_run(self.files(out, SaveOptions(functions, attributes, external_data)))

    def files(self, out: Output, options: SaveOptions | None = None) -> dict[str, Writer]:
        """The files :meth:`save` writes into ``out``, by name, not yet written: the rows of the
        artifact table an export makes (a single ``.onnx`` output takes the model forms only)."""
        options = options or SaveOptions()
        files: dict[str, Writer] = {}
        for artifact in _artifacts.ARTIFACTS:  # read when called: the table is the one place
            if artifact.make is None or (artifact.option and not getattr(options, artifact.option)):
                continue
            if artifact.name == ATTRIBUTES_FILE:
                warnings.warn(
                    f"{out.name_of(artifact)} carries tags as node attributes: onnx.checker and ONNX Runtime "
                    f"reject it. Use {out.model_name} to run; `hiercompile strip-attributes` turns it back into a "
                    "valid model.",
                    AttributesWarning,
                    stacklevel=3,
                )
            if artifact.kind == "model":
                files[out.name_of(artifact)] = onnx_writer(artifact.make(self), options.external_data)
            elif not out.single:
                files[artifact.name] = json_writer(artifact.make(self))
        return files
