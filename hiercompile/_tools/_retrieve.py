"""Query a tagged ONNX model by module, from the model file alone."""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from pathlib import Path

import networkx as nx
import onnx
import onnx_ir as ir

from .._artifacts import MODEL_FILE, check_not_top
from .._errors import InputError, NotTaggedError, QueryError, first_line
from .._graph import data_flow_graph, ops
from .._io import load_onnx
from ..passes import FUNCTION_DOMAIN, HIERARCHY_KEY, InlineFunctionsPass, get_tags, is_under, tag_depth

ModelSource = str | Path | ir.Model | onnx.ModelProto


def load_tagged(source: ModelSource) -> ir.Model:
    """An ``ir.Model`` from a path, a ModelProto or an ``ir.Model``, checked to carry our metadata."""
    if isinstance(source, ir.Model):
        model = source
    elif isinstance(source, onnx.ModelProto):
        model = ir.from_proto(source)
    else:
        model = load_file(Path(source))
    if HIERARCHY_KEY not in model.metadata_props:
        raise NotTaggedError(
            "the model has no hiercompile metadata: it was not exported by hiercompile; export the PyTorch model "
            "with `hiercompile export`, or, for what a tool made of an export, run "
            "`hiercompile retag MODEL --from EXPORT` (profile and verify take --from)"
        )
    return model


def model_file(path: Path) -> Path:
    """The model file a path stands for: the path itself, or an export folder's ``model.onnx``."""
    if path.is_dir():
        check_not_top(path)
        if not (path / MODEL_FILE).is_file():
            raise InputError(f"{path} is a folder without {MODEL_FILE}; pass an .onnx file or an export folder")
        return path / MODEL_FILE
    if not path.is_file():
        raise InputError(f"{path}: no such file; pass the path of an .onnx model or an export folder")
    return path


def load_file(path: Path) -> ir.Model:
    """An ONNX file (or an export folder's ``model.onnx``), any model: with one line when it is not one."""
    path = model_file(path)
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes), not an ONNX model; export it again")
    try:
        return load_onnx(path)
    except Exception as e:
        raise InputError(
            f"{path} is not a readable ONNX model ({first_line(e)}); check that it is a complete .onnx file"
        ) from e


def flat_view(model: ir.Model) -> ir.Model:
    """The model itself when flat; for the functions form, a copy with every call inlined (full tags)."""
    if not any(f.domain == FUNCTION_DOMAIN for f in model.functions.values()):
        return model
    flat = model.clone()
    InlineFunctionsPass()(flat)
    return flat


def _natural(tag: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", tag)]


class HierarchyRetriever:
    """Answers "what ran in module X" on a tagged ONNX model.

    Tags are the strings of docs/tags.md (``/Model/Stack/Block.0``); ops are node names of
    the flat model (the functions form is inlined first, with full tags). An op
    belongs to the module of its primary tag.
    """

    def __init__(self, source: ModelSource) -> None:
        loaded = load_tagged(source)
        self.model = flat_view(loaded)
        self.inlined = self.model is not loaded  # the source was the functions form
        self.hierarchy: dict[str, dict] = json.loads(self.model.metadata_props[HIERARCHY_KEY])
        self.graph: nx.DiGraph = data_flow_graph(self.model.graph)
        # every op, in subgraphs too (docs/tags.md), in graph order: name -> (op type, primary tag)
        self._ops: dict[str, tuple[str, str]] = {}
        self.untagged: list[str] = []  # nodes no tag reached (a tool's output retagged in part), named or not
        for node, _ in ops(self.model.graph):
            tags = get_tags(node)
            if tags:
                self._ops[node.name] = (node.op_type, tags[0])
            else:
                self.untagged.append(node.name or f"<unnamed {node.op_type}>")
        self._own: dict[str, list[str]] = {tag: [] for tag in self.hierarchy}
        for name, (_, tag) in self._ops.items():
            self._own.setdefault(tag, []).append(name)

    def _check(self, tag: str) -> str:
        if tag not in self.hierarchy:
            close = difflib.get_close_matches(tag, list(self.hierarchy), n=3, cutoff=0.5)
            hint = f"closest: {', '.join(close)}" if close else "list them with `hiercompile inspect`"
            raise QueryError(f"no module {tag!r} in this model; {hint}")
        return tag

    def modules(self) -> list[str]:
        """Every kept module's tag, depth first, parents before children, siblings by tag (``.2`` before ``.10``)."""
        children: dict[str | None, list[str]] = {}
        for tag, entry in sorted(self.hierarchy.items(), key=lambda item: _natural(item[0])):
            children.setdefault(entry["parent"], []).append(tag)
        order: list[str] = []
        stack = list(reversed(children.get(None, [])))
        while stack:
            tag = stack.pop()
            order.append(tag)
            stack.extend(reversed(children.get(tag, [])))
        return order

    def depth(self, tag: str) -> int:
        return tag_depth(self._check(tag))

    def get_modules_by_depth(self, depth: int) -> list[str]:
        """Tags at ``depth`` (the root is depth 0)."""
        return [t for t in self.modules() if tag_depth(t) == depth]

    def get_module_subtree(self, tag: str) -> list[str]:
        """``tag`` and every module below it."""
        self._check(tag)
        return [t for t in self.modules() if is_under(t, tag)]

    def get_nodes_by_module(self, tag: str, recursive: bool = True) -> list[str]:
        """Names of the ops of ``tag`` (and, with ``recursive``, of its subtree), in graph order;
        ops inside control-flow subgraphs count for the module they ran in."""
        tags = self.get_module_subtree(tag) if recursive else [self._check(tag)]
        wanted = set(tags)
        return [name for name, (_, owner) in self._ops.items() if owner in wanted]

    def group_operations_by_hierarchy(self) -> dict[str, list[str]]:
        """Tag -> names of the ops the module runs itself (every op in exactly one list)."""
        return {tag: list(self._own.get(tag, [])) for tag in self.modules()}

    def op_types(self, tag: str, recursive: bool = True) -> Counter:
        """Histogram of op types of the module."""
        return Counter(self._ops[n][0] for n in self.get_nodes_by_module(tag, recursive))

    def initializers_of(self, tag: str) -> list[str]:
        """Initializers that ops of the module's subtree consume, in graph order: its weights as
        ONNX holds them, and the constants the exporter folded (``val_67``, a transposed weight)."""
        tags = set(self.get_module_subtree(tag))
        return [name for name, v in self.model.graph.initializers.items() if tags & set(get_tags(v))]

    def parameters_of(self, tag: str) -> list[str]:
        """Of :meth:`initializers_of`, those named after a parameter or buffer of the module's
        subtree (``dense.weight``), not the exporter's folded constants. A parameter of the root
        module itself has a name without a dot, as folded constants do: it is left out."""
        path = self.hierarchy[self._check(tag)]["module"]
        prefix = f"{path}." if path else ""
        return [name for name in self.initializers_of(tag) if name.startswith(prefix) and "." in name]

    def num_parameters(self, tag: str) -> int:
        """PyTorch's parameter count of the module's subtree, as the export recorded it; for a file
        without it, the elements of the initializers the subtree uses."""
        recorded = self.hierarchy[self._check(tag)].get("num_parameters")
        if recorded is not None:
            return recorded
        inits = self.model.graph.initializers
        return sum(inits[name].const_value.size for name in self.initializers_of(tag) if inits[name].const_value)

    def module_dag(self, tag: str) -> nx.DiGraph:
        """The module's DAG: the subgraph of the main graph's DAG induced by its subtree's ops."""
        return self.graph.subgraph([n for n in self.get_nodes_by_module(tag) if n in self.graph]).copy()
