"""Tags for a model another tool made from a tagged one (docs/tags.md, "nodes other tools made").

ONNX Runtime's optimizer, quantizers, simplifiers and converters rebuild the graph and
drop node metadata. :class:`RetagPass` maps every node of the transformed model back to
the tagged one by the evidence the tools leave: names, value names, and the graph's
structure, anchored at the inputs and weights they keep.
"""

from __future__ import annotations

__all__ = ["RetagPass", "RetagResult"]

import collections
import dataclasses
import hashlib
import json
import logging

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common_passes

from ._retag_graph import SourceIndex
from ._retag_rules import Matcher
from .functionize import FUNCTION_DOMAIN, InlineFunctionsPass
from .namespace import NAMESPACE_KEY, NamespacePass
from .tags import (
    CLASS_KEY,
    HIERARCHY_KEY,
    TAG_KEY,
    VERSION_KEY,
    get_tags,
    set_node_tags,
)

logger = logging.getLogger(__name__)

RELATED_SHARE = 0.5  # a model comes from the source when at least this share of its weights does
_MIN_WEIGHT = 16  # fewer elements: a shape or a scalar, no evidence


@dataclasses.dataclass
class RetagResult(ir.passes.PassResult):
    """How each node of the transformed model got its tags, and which got none.

    ``evidence``: rule -> number of nodes tagged by it; ``unmapped``: node name (``<OpType #k>``
    for an unnamed one) -> ``(op type, reason)`` for every node left untagged (nothing is guessed);
    ``matches``: node name -> the source node's name, for the nodes that are one; ``values``: value
    name -> the name of the source value it is or stands for (a reshape back after a Gemm).
    """

    evidence: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    unmapped: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    total: int = 0
    matches: dict[str, str] = dataclasses.field(default_factory=dict)  # node -> the source node it is
    values: dict[str, str] = dataclasses.field(default_factory=dict)  # value -> the source value it stands for
    shared_weights: float | None = None  # share of the weights' elements that are the source's
    shared_inputs: tuple[int, int] = (0, 0)  # graph inputs named as the source's, of all

    @property
    def coverage(self) -> float:
        return 1.0 - len(self.unmapped) / self.total if self.total else 1.0

    @property
    def related(self) -> bool:
        """Whether the evidence says the model comes from the source (rule 13)."""
        if self.shared_weights is not None:
            return self.shared_weights >= RELATED_SHARE
        shared, inputs = self.shared_inputs
        return (shared >= 1 or not inputs) and self.coverage >= RELATED_SHARE

    def relation(self) -> str:
        """The evidence for :attr:`related`, in words."""
        shared, inputs = self.shared_inputs
        words = f"{shared} of its {inputs} inputs are named as the source's"
        if self.shared_weights is None:
            return f"{words}; it has no weights; {self.coverage:.0%} of its nodes are tied to the source's"
        return f"{words}; {self.shared_weights:.0%} of its weights (by element) are the source's"


class RetagPass(ir.passes.InPlacePass):
    """Tag the nodes and initializers of a model that a tool made from the tagged ``source``.

    Rules, tried in this order for each node (a later rule only for nodes still untagged):

    1. **Values.** Graph inputs, initializers and node outputs whose names exist in the
       source are the same values; a weight named after a source weight plus ``_…``
       (``val_63_quantized``) stands for it.
    2. **Name.** A node with a source node's name and op type has its tags.
    3. **Output values.** A node that makes a source value (or is named after one, alone
       or plus ``_…``, as onnxslim and ONNX Runtime's layout optimizer name what they
       fuse) has the tags of the node that made it (same op), or
       is a fusion of the source nodes between its inputs and that value (rule 6). An
       inlined function body's value is named as the source's from its first ``/`` on,
       under another prefix (the node's output, or the node itself plus ``_…``): of the
       source values so named, for a helper node the one it reads (or a form helper nodes
       of the source made of it), else the one whose producing nodes read only those
       inputs and are fewest, is it. A node named after a value but reading more than the
       nodes making it (a convolution that fused the residual sum after it) stands for
       those nodes and the ones after them up to where they read all it reads, then on
       through ops reading nothing more to the one value read by the ops reading its
       output (the activation after the sum).
    4. **Structure, forward.** A node whose data inputs (weights aside: tools merge equal
       ones) are all known values, looking back through helper nodes, and that with its
       op type and those values at the same positions matches exactly one source node,
       has its tags; its outputs become that node's values. This follows renamed graphs
       (inlined functions, simplifiers) from the inputs they keep. With no such node, the
       values may be read through helper nodes of the source a tool removed (a transpose
       a layout change made needless).
    5. **Structure, backward.** A node whose output a matched node reads at position k
       makes the value the source node reads there: same op, it is that value's
       producer; otherwise a fusion (rule 6).
    5b. **Structure, through weights.** A weight of the source that one node reads names
       that node: a node reading such weights stands for those nodes and the ones
       between them and its data inputs (same op, a single one: that node), when the
       data those nodes read is exactly the data it reads; its output, or the value of
       the same shape after its helper nodes (a reshape back after a Gemm), is what they
       make.
    6. **Fusion.** A node that stands for several source nodes (those between the values
       its inputs and outputs match, looking through helper nodes) carries all their
       tags; its primary tag is the innermost module holding them all. Every input
       must be traced first, so the region has its lower bound, and the region reads
       nothing the node does not. A connected group of up to 8 untagged ops between known
       values (three projections merged into one MatMul and a Split; the ``HardSigmoid`` of a
       hard-swish split in two, whose ``Mul`` makes the known value) stands, each of its
       nodes, for the source nodes between those values.
    7. **Value makers.** A node the rules above leave untagged that makes a value of the
       source (by name, or standing for it: a reshape back after a Gemm, the bias sum that
       finishes a quantized convolution) takes the tags of that value's maker, not of its
       readers. A helper (rule 9) makes a value only where it is named after it (as such, or
       as an inlined body's value): found from its readers alone, it may be a copy made for
       them (a quantize-dequantize pair before an op), and serves them.
    8. **Name prefix.** A node whose name extends a source node's name by ``/``, ``_`` or
       ``:`` (``…/MatMul_0_quant``, ``…/MatMul_3/MatMulScaleFusion/``) has its tags; named so
       after an inlined body's node, it has those of the nearest node so named after what it
       reads. A
       helper whose name so extends the name of a tagged op of the transformed model, or of
       an output of that op the source does not have (``…/Conv_0_quant_output_scale_mul``,
       ``…_output_quantized_cast``: finishing the op's raw output), serves that op.
       Named after a value of the source, it prepares that value for its readers (rule 9).
    9. **Helpers.** A quantize, dequantize, cast, reshape or similar node a tool put
       around an op takes the innermost module of the ops it feeds once all are tagged,
       or, feeding none (a graph output, through more helpers), of the ops that feed it.
    10. Nothing else is guessed: a node no rule reaches stays untagged and is listed in
        the result with its op and why, each node its own entry (an unnamed one as
        ``<OpType #k>``). Nodes inside control-flow branches are matched like the others.
    11. An initializer keeps the tags of the source initializer of its name; else it gets
        the sorted tags of its consumers; else the root's. The hierarchy and version
        metadata are copied, and where the source grouped its nodes by module for viewers
        (``namespace``, :class:`NamespacePass`), the retagged nodes are grouped so too.
        Nodes a tool left out of order (float16 conversion) are sorted, as ONNX requires.
    12. ``source`` may be the functions form: the main graph is matched against it inlined,
        a call of a function a tool kept is the source's call of that name (or its one call
        of that function), and the bodies of the functions a tool kept as functions keep their
        relative tags, or get those of the source body's node of the same name and op.
    13. **Relation.** The result states whether the model comes from the source: at least
        half of its weights' elements are the source's (same name and size, named after one,
        or holding the same non-zero values in any layout, as a blocked-layout copy does); a
        model without weights needs a graph input named as the source's and half its nodes
        tied. :func:`hiercompile.retag` refuses a model that does not.
    """

    def __init__(self, source: ir.Model) -> None:
        super().__init__()
        self.source = source

    def call(self, model: ir.Model) -> RetagResult:
        graph = model.graph
        nodes = [n for n in ir.traversal.RecursiveGraphIterator(graph) if n.op_type != "Constant"]
        flat = self.source
        if any(f.domain == FUNCTION_DOMAIN for f in flat.functions.values()):
            flat = flat.clone()
            InlineFunctionsPass()(flat)
        matcher = Matcher(SourceIndex(flat), graph)
        self._calls(model, matcher)
        matcher.run(nodes)
        nodes += self._function_bodies(model, matcher)
        result = RetagResult(model, modified=True, total=len(nodes))
        result.shared_weights = _shared_weights(graph, flat.graph)
        source_inputs = {v.name for v in flat.graph.inputs}
        result.shared_inputs = (sum(v.name in source_inputs for v in graph.inputs), len(graph.inputs))
        result.matches = {node.name: original.name for node, original in matcher.matched.items()}
        result.values = {mine.name: theirs.name for mine, theirs in matcher.values.items() if mine.name and theirs.name}
        for node in nodes:
            if node in matcher.tags:
                node_tags, rule = matcher.tags[node]
                set_node_tags(node, node_tags)
                result.evidence[rule] += 1
            else:  # every node its own entry: an unnamed one (or one of a repeated name) by its place
                key = (
                    node.name
                    if node.name and node.name not in result.unmapped
                    else f"<{node.op_type} #{len(result.unmapped)}>"
                )
                result.unmapped[key] = (node.op_type, "no name, value or structure ties it to the tagged model")
        hierarchy = json.loads(self.source.metadata_props.get(HIERARCHY_KEY, "{}"))
        root = next((tag for tag, entry in hierarchy.items() if entry.get("parent") is None), "/")
        matcher.tag_initializers(root)
        for key in (HIERARCHY_KEY, VERSION_KEY):
            if key in self.source.metadata_props:
                model.metadata_props[key] = self.source.metadata_props[key]
        if any(  # the source grouped its nodes by module for viewers: so is its retag
            n.metadata_props.get(NAMESPACE_KEY) == n.metadata_props.get(TAG_KEY, "").lstrip("/") != ""
            for n in flat.graph.all_nodes()
        ):
            NamespacePass()(model)
        common_passes.TopologicalSortPass()(model)
        logger.info(
            "retagged %d of %d nodes: %s", result.total - len(result.unmapped), result.total, dict(result.evidence)
        )
        return result

    def _calls(self, model: ir.Model, matcher: Matcher) -> None:
        """Rule 12: a call of a function the model kept is the source's call of that name, or its
        one call of that function."""
        kept = {key for key, f in model.functions.items() if f.domain == FUNCTION_DOMAIN}
        source_calls = [n for n in self.source.graph if n.domain == FUNCTION_DOMAIN]
        for node in model.graph:
            if (node.domain, node.op_type, node.overload) not in kept:
                continue
            same = [n for n in source_calls if n.op_type == node.op_type]
            named = [n for n in same if n.name == node.name]
            found = named or (same if len(same) == 1 else [])
            if found:
                matcher.tags[node] = (get_tags(found[0]), "call")

    def _function_bodies(self, model: ir.Model, matcher: Matcher) -> list[ir.Node]:
        """Rule 12: the nodes of the functions form's bodies a tool kept as functions."""
        found = []
        for identifier, function in model.functions.items():
            original = self.source.functions.get(identifier)
            if function.domain != FUNCTION_DOMAIN:
                continue
            by_name = {n.name: n for n in original} if original is not None else {}
            for node in function:
                if node.op_type == "Constant":
                    continue
                found.append(node)
                if TAG_KEY in node.metadata_props:
                    matcher.tags[node] = (get_tags(node), "kept")
                elif (same := by_name.get(node.name)) is not None and same.op_type == node.op_type:
                    matcher.tags[node] = (get_tags(same), "name")
                    if CLASS_KEY in same.metadata_props:
                        node.metadata_props[CLASS_KEY] = same.metadata_props[CLASS_KEY]
        return found


def _shared_weights(graph: ir.Graph, source: ir.Graph) -> float | None:
    """Share of ``graph``'s weight elements that are ``source``'s: by name and size, by a name
    extending a source weight's (``…_quantized``), or by the same non-zero values in any layout.
    None when it has no weights."""
    weights = {n: v.const_value for n, v in graph.initializers.items() if v.const_value is not None}
    weights = {n: w for n, w in weights.items() if w.size >= _MIN_WEIGHT}
    total = sum(w.size for w in weights.values())
    if not total:
        return None
    originals = {n: v.const_value for n, v in source.initializers.items() if v.const_value is not None}
    untied = {
        n: w
        for n, w in weights.items()
        if not ((n in originals and originals[n].size == w.size) or any(s in originals for s in _stems(n)))
    }
    if untied:  # the same values in another layout (a blocked copy, a transpose)
        signatures = {_values_signature(w) for w in originals.values() if w.size >= _MIN_WEIGHT}
        untied = {n: w for n, w in untied.items() if _values_signature(w) not in signatures}
    return 1.0 - sum(w.size for w in untied.values()) / total


def _stems(name: str) -> list[str]:
    """The names ``name`` extends by ``_…`` (``val_63`` for ``val_63_quantized``)."""
    parts = name.split("_")
    return ["_".join(parts[:k]) for k in range(len(parts) - 1, 0, -1)]


def _values_signature(tensor: ir.TensorProtocol) -> str:
    """The tensor's non-zero values, sorted: the same for a copy in any layout (padding aside)."""
    array = tensor.numpy()
    values = np.sort(array[array != 0], axis=None) if array.dtype.kind in "fiu" else array
    return hashlib.sha1(np.ascontiguousarray(values).tobytes()).hexdigest() + str(array.dtype)
