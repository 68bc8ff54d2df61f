"""Tags for a model another tool made from a tagged one (SPEC §3, "nodes made by other tools").

ONNX Runtime's optimizer, quantizers, simplifiers and converters rebuild the graph and
drop node metadata. :class:`RetagPass` maps every node of the transformed model back to
the tagged one by the evidence the tools leave: names, value names, and the graph's
structure, anchored at the inputs and weights they keep.
"""

from __future__ import annotations

__all__ = ["RetagPass", "RetagResult"]

import collections
import dataclasses
import json
import logging
from collections.abc import Iterable

import onnx_ir as ir

from .functionize import FUNCTION_DOMAIN, InlineFunctionsPass
from .tags import (
    CLASS_KEY,
    HIERARCHY_KEY,
    TAG_KEY,
    TAGS_KEY,
    VERSION_KEY,
    common_ancestor,
    get_tags,
    metadata_of,
    set_node_tags,
)

logger = logging.getLogger(__name__)

# ops a tool puts around the op it serves (quantizing an input, reshaping it for a Gemm)
HELPER_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "Cast",
        "CastLike",
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Transpose",
        "Identity",
        "Shape",
        "Mul",
        "ReorderInput",  # ONNX Runtime's blocked (NCHWc) layout
        "ReorderOutput",
    }
)
_MAX_REGION = 256  # more original nodes than this behind one node: not a fusion, no evidence


@dataclasses.dataclass
class RetagResult(ir.passes.PassResult):
    """How each node of the transformed model got its tags, and which got none.

    ``evidence``: rule -> number of nodes tagged by it; ``unmapped``: node name ->
    ``(op type, reason)`` for every node left untagged (nothing is guessed);
    ``matches``: node name -> the source node's name, for the nodes that are one.
    """

    evidence: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    unmapped: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    total: int = 0
    matches: dict[str, str] = dataclasses.field(default_factory=dict)  # node -> the source node it is

    @property
    def coverage(self) -> float:
        return 1.0 - len(self.unmapped) / self.total if self.total else 1.0


class _Source:
    """The tagged model, indexed for the evidence rules."""

    def __init__(self, model: ir.Model) -> None:
        graph = model.graph
        every = list(ir.traversal.RecursiveGraphIterator(graph))  # control-flow branches too
        self.nodes = [n for n in every if n.op_type != "Constant"]
        self.by_name = {n.name: n for n in self.nodes if n.name}
        self.position = {n: k for k, n in enumerate(every)}
        self.values: dict[str, ir.Value] = {v.name: v for v in [*graph.inputs, *graph.initializers.values()] if v.name}
        self.consumers: dict[ir.Value, list[tuple[ir.Node, int]]] = collections.defaultdict(list)
        for node in every:
            for value in node.outputs:
                if value.name:
                    self.values[value.name] = value
            for index, value in enumerate(node.inputs):
                if value is not None:
                    self.consumers[value].append((node, index))
        self.initializer_tags = {name: get_tags(v) for name, v in graph.initializers.items()}
        self.by_last_segment: dict[str, list[ir.Value]] = collections.defaultdict(list)
        for name, value in self.values.items():
            self.by_last_segment[name.rsplit("/", 1)[-1]].append(value)

    def value_named_in(self, name: str) -> ir.Value | None:
        """The source value a tool named a node after (``relu_1`` for ``relu_1_nchwc``, or the
        whole name, as onnxslim does): the longest source value name it equals or extends by ``_``."""
        parts = name.split("_")
        for k in range(len(parts), 0, -1):
            value = self.values.get("_".join(parts[:k]))
            if value is not None and value.producer() is not None:
                return value
        return None

    def weight_behind(self, name: str) -> ir.Value | None:
        """The source weight a tool derived a new weight from and named after it
        (``val_63_quantized``, ``val_63_scale``): the longest source weight name it extends by ``_``."""
        parts = name.split("_")
        for k in range(len(parts) - 1, 0, -1):
            value = self.values.get("_".join(parts[:k]))
            if value is not None and value.is_initializer():
                return value
        return None

    def by_suffix(self, name: str) -> list[ir.Value]:
        """Source values whose names end as ``name`` does from its first ``/`` on: the same value
        of a function body, inlined by another tool under another prefix."""
        if "/" not in name:
            return []
        suffix = name[name.index("/") :]
        return [v for v in self.by_last_segment.get(name.rsplit("/", 1)[-1], []) if v.name.endswith(suffix)]

    def region(self, ends: Iterable[ir.Value], starts: set[ir.Value]) -> list[ir.Node] | None:
        """The original nodes between ``starts`` and ``ends``: what a fused node stands for."""
        found: dict[ir.Node, None] = {}
        stack = [v.producer() for v in ends if v.producer() is not None and v not in starts]
        while stack:
            node = stack.pop()
            if node in found or node.op_type == "Constant":
                continue
            found[node] = None
            if len(found) > _MAX_REGION:
                return None
            for value in node.inputs:
                if value is None or value in starts or value.producer() is None:
                    continue
                stack.append(value.producer())
        return list(found) or None

    def grown(self, region: list[ir.Node], value: ir.Value, starts: set[ir.Value], uses: collections.Counter):
        """A region that reads less than the node it stands for, grown forward along the one
        consumer of its value until it reads all the node reads (a convolution that fused the
        residual sum), then on through ops reading nothing more (the activation after the sum) to
        the one value whose consumers are the node's (``uses``, op types past helpers).
        Returns (region, value), or None where the growth branches or stays ambiguous."""
        region = list(region)
        options: list[tuple[list[ir.Node], ir.Value]] = []
        while len(region) <= _MAX_REGION:
            if _reads(region) == starts:
                options.append((list(region), value))
            users = self.consumers.get(value, [])
            if len(users) != 1 or len(users[0][0].outputs) != 1 or not _reads([*region, users[0][0]]) <= starts:
                break
            region.append(users[0][0])
            value = users[0][0].outputs[0]
        fitting = [(r, v) for r, v in options if _uses(v, self.consumers) == uses]
        return fitting[0] if len(fitting) == 1 else (options[0] if len(options) == 1 else None)


def _uses(value: ir.Value, consumers=None) -> collections.Counter:
    """The op types reading ``value``, looking past helper nodes (a layout change before a convolution);
    ``consumers``: the source's index (its graph is not the transformed one)."""
    found: collections.Counter = collections.Counter()
    users = [u for u, _ in (consumers.get(value, []) if consumers is not None else value.uses())]
    for user in users:
        if user.op_type in HELPER_OPS and len(user.outputs) == 1:
            found.update(_uses(user.outputs[0], consumers))
        else:
            found[user.op_type] += 1
    return found


def _prefixes(name: str) -> Iterable[str]:
    """The parts of ``name`` before each ``/``, ``_`` or ``:`` in it, longest first: the names
    a tool may have extended to name a node it derived (``…/MatMul_0`` for ``…/MatMul_0_quant``)."""
    for k in range(len(name) - 1, 0, -1):
        if name[k] in "/_:":
            yield name[:k]


def _through_helpers(value: ir.Value, values: dict[ir.Value, ir.Value]) -> ir.Value | None:
    """The source value behind ``value``, looking back through helper nodes a tool added (a
    reshape before a Gemm); None when there is none yet."""
    return _traced(value, values)[0]


def _traced(value: ir.Value, values: dict[ir.Value, ir.Value]) -> tuple[ir.Value | None, int]:
    """:func:`_through_helpers` and how many helper nodes it looked back through."""
    depth = 0
    while value not in values:
        producer = value.producer()
        if producer is None or producer.op_type not in HELPER_OPS or not producer.inputs or producer.inputs[0] is None:
            return None, depth
        value, depth = producer.inputs[0], depth + 1
    return values[value], depth


def _reads(region: Iterable[ir.Node]) -> set[ir.Value]:
    """The data (not weights, not constants) the nodes of ``region`` read from outside it."""
    region = set(region)
    return {
        v
        for n in region
        for v in n.inputs
        if v is not None and v.producer() not in region and not v.is_initializer() and not _is_constant(v)
    }


def _data(node: ir.Node) -> list[ir.Value]:
    """The node's data inputs: not weights, not constants."""
    return [v for v in node.inputs if v is not None and not v.is_initializer() and not _is_constant(v)]


def _is_constant(value: ir.Value) -> bool:
    return value.producer() is not None and value.producer().op_type == "Constant"


def _same_shape(a: ir.Value, b: ir.Value) -> bool:
    return a.shape is not None and b.shape is not None and list(a.shape) == list(b.shape)


def _as(value: ir.Value, original: ir.Value, depth: int) -> ir.Value | None:
    """The value ``original`` is in the transformed model: ``value`` itself or what the helper
    nodes a tool put after it make (a reshape back after a Gemm). The first of the same shape
    where shapes say so, else the one as many helpers on as the node's input came through."""
    chain = [value]
    while True:
        uses = list(chain[-1].uses())
        if len(uses) != 1 or uses[0][0].op_type not in HELPER_OPS or len(uses[0][0].outputs) != 1:
            break
        chain.append(uses[0][0].outputs[0])
    same = [v for v in chain if _same_shape(v, original)]
    if same:
        return same[0]
    return chain[depth] if depth < len(chain) else None


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
       source values so named, the one its traced data inputs carry (a reshaped or
       rescaled form of it), else the one whose producing nodes read only those inputs
       and are fewest, is it.
    4. **Structure, forward.** A node whose data inputs (weights aside: tools merge equal
       ones) are all known values, looking back through helper nodes, and that with its
       op type and those values at the same positions matches exactly one source node,
       has its tags; its outputs become that node's values. This follows renamed graphs
       (inlined functions, simplifiers) from the inputs they keep.
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
       must be traced first, so the region has its lower bound.
    7. **Name prefix.** A node whose name extends a source node's name by ``/``, ``_`` or
       ``:`` (``…/MatMul_0_quant``, ``…/MatMul_3/MatMulScaleFusion/``) has its tags. A
       helper whose name so extends the name of a tagged op of the transformed model, or of
       an output of that op the source does not have (``…/Conv_0_quant_output_scale_mul``,
       ``…_output_quantized_cast``: finishing the op's raw output), serves that op.
    8. **Helpers.** A quantize, dequantize, cast, reshape or similar node a tool put
       around an op takes the innermost module of the ops it feeds once all are tagged,
       or, feeding none (a graph output), of the ops that feed it.
    9. Nothing else is guessed: a node no rule reaches stays untagged and is listed in
       the result with its op and why. Nodes inside control-flow branches are matched
       like the others.
    10. An initializer keeps the tags of the source initializer of its name; else it gets
        the sorted tags of its consumers; else the root's. The hierarchy and version
        metadata are copied.
    11. ``source`` may be the functions form: the main graph is matched against it inlined,
        and the bodies of the functions a tool kept as functions keep their relative tags,
        or get those of the source body's node of the same name and op.
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
        matcher = _Matcher(_Source(flat), graph)
        matcher.run(nodes)
        nodes += self._function_bodies(model, matcher)
        result = RetagResult(model, modified=True, total=len(nodes))
        result.matches = {node.name: original.name for node, original in matcher.matched.items()}
        for node in nodes:
            if node in matcher.tags:
                node_tags, rule = matcher.tags[node]
                set_node_tags(node, node_tags)
                result.evidence[rule] += 1
            else:
                result.unmapped[node.name] = (node.op_type, "no name, value or structure ties it to the tagged model")
        hierarchy = json.loads(self.source.metadata_props.get(HIERARCHY_KEY, "{}"))
        root = next((tag for tag, entry in hierarchy.items() if entry.get("parent") is None), "/")
        matcher.tag_initializers(root)
        for key in (HIERARCHY_KEY, VERSION_KEY):
            if key in self.source.metadata_props:
                model.metadata_props[key] = self.source.metadata_props[key]
        logger.info(
            "retagged %d of %d nodes: %s", result.total - len(result.unmapped), result.total, dict(result.evidence)
        )
        return result

    def _function_bodies(self, model: ir.Model, matcher: _Matcher) -> list[ir.Node]:
        """Rule 11: the nodes of the functions form's bodies a tool kept as functions."""
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


class _Matcher:
    """The rules of :class:`RetagPass` over one transformed graph, one method each."""

    def __init__(self, source: _Source, graph: ir.Graph) -> None:
        self.source = source
        self.graph = graph
        self.values: dict[ir.Value, ir.Value] = {}  # transformed value -> source value
        self.matched: dict[ir.Node, ir.Node] = {}  # one-to-one matches
        self.tags: dict[ir.Node, tuple[list[str], str]] = {}  # node -> (tags, rule)
        outputs = (v for n in ir.traversal.RecursiveGraphIterator(graph) for v in n.outputs)
        for value in [*graph.inputs, *graph.initializers.values(), *outputs]:
            if value.name in source.values:  # rule 1
                self.values[value] = source.values[value.name]
        for name, value in graph.initializers.items():
            if value not in self.values and (weight := source.weight_behind(name)) is not None:
                self.values[value] = weight

    def run(self, nodes: list[ir.Node]) -> None:
        exact = (self.by_name, self.by_output_value, self.by_value_suffix, self.forward, self.backward)
        for rules in (exact, (*exact, self.through_weights)):  # rule 5b once the exact ones found all they can
            changed = True
            while changed:
                changed = False
                for node in nodes:
                    if node not in self.tags and any(rule(node) for rule in rules):
                        changed = True
        self.by_prefix(nodes)
        self.helpers(nodes)

    # --- recording --------------------------------------------------------------------------------

    def match(self, node: ir.Node, original: ir.Node, rule: str) -> bool:
        self.matched[node] = original
        self.tags[node] = (get_tags(original), rule)
        if len(node.outputs) == len(original.outputs):
            for mine, theirs in zip(node.outputs, original.outputs, strict=True):
                self.values.setdefault(mine, theirs)
        return True

    def fuse(self, node: ir.Node, region: Iterable[ir.Node]) -> bool:
        ordered = sorted(region, key=self.source.position.__getitem__)
        every = list(dict.fromkeys(t for n in ordered for t in get_tags(n)))
        if not every:
            return False
        self.tags[node] = ([common_ancestor(every), *every], "fusion")  # rule 6
        return True

    def starts(self, node: ir.Node) -> set[ir.Value] | None:
        """The source values of the node's data inputs, through helpers; None until all are known."""
        found = set()
        for value in node.inputs:
            if value is None or value.is_initializer():
                continue
            known = _through_helpers(value, self.values)
            if known is None:
                return None
            found.add(known)
        return found

    def fuse_up_to(self, node: ir.Node, ends: list[ir.Value]) -> bool:
        """Rule 6 for a node whose outputs are the source values ``ends``."""
        starts = self.starts(node)
        region = self.source.region(ends, starts) if starts is not None else None
        return region is not None and _reads(region) <= starts and self.fuse(node, region)

    # --- the rules --------------------------------------------------------------------------------

    def by_name(self, node: ir.Node) -> bool:  # rule 2
        original = self.source.by_name.get(node.name)
        return original is not None and original.op_type == node.op_type and self.match(node, original, "name")

    def by_output_value(self, node: ir.Node) -> bool:  # rule 3
        known = [self.values[v] for v in node.outputs if v in self.values]
        named = (
            not known
            and node.op_type not in HELPER_OPS  # a reshape named after the value it prepares is no fusion
            and (value := self.source.value_named_in(node.name)) is not None
        )
        if named:
            return self.named_after(node, value)
        if not known:
            return False
        producer = known[0].producer()
        if producer is not None and producer.op_type == node.op_type and len(known) == len(node.outputs):
            return self.match(node, producer, "output value")
        return self.fuse_up_to(node, known)

    def named_after(self, node: ir.Node, value: ir.Value) -> bool:  # rule 3, a node named after a value
        producer = value.producer()
        starts = self.starts(node)
        if starts is None or len(node.outputs) != 1:
            same = producer is not None and producer.op_type == node.op_type and len(node.outputs) == 1
            return same and len(_data(node)) == len(_data(producer)) and self.match(node, producer, "output value")
        region = self.source.region([value], starts)
        if region is None or (found := self.completed(node, region, value, starts)) is None:
            return False
        region, value = found
        if len(region) == 1 and region[0].op_type == node.op_type:
            return self.match(node, region[0], "output value")
        if len(node.outputs) == 1 and value not in self.values.values():
            self.values[node.outputs[0]] = value  # it makes that value (in a layout of its own, perhaps)
        return self.fuse(node, region)

    def completed(self, node: ir.Node, region: list[ir.Node], value: ir.Value, starts: set[ir.Value]):
        """``(region, value)``, grown on when the node reads more than the region does (rule 6)."""
        if not _reads(region) < starts or len(node.outputs) != 1:
            return region, value
        return self.source.grown(region, value, starts, _uses(node.outputs[0]))

    def forward(self, node: ir.Node) -> bool:  # rule 4
        data = {
            i: _through_helpers(v, self.values)
            for i, v in enumerate(node.inputs)
            if v is not None and not v.is_initializer()
        }
        if not data or any(v is None for v in data.values()):
            return False

        def fits(candidate: ir.Node) -> bool:
            if candidate.op_type != node.op_type or len(candidate.inputs) != len(node.inputs):
                return False
            return all(value is candidate.inputs[i] for i, value in data.items())

        first = min(data)
        candidates = {c for c, index in self.source.consumers.get(data[first], []) if index == first and fits(c)}
        return len(candidates) == 1 and self.match(node, candidates.pop(), "structure")

    def by_value_suffix(self, node: ir.Node) -> bool:  # rule 3, inlined function bodies
        if not node.outputs or node.outputs[0] in self.values:
            return False
        starts = self.starts(node)
        if starts is None:
            return False
        names = [node.outputs[0].name or "", node.name or ""]  # a tool may name the node after the value
        names += ["_".join(node.name.split("_")[:k]) for k in range(node.name.count("_"), 0, -1)] if node.name else []
        candidates = list(dict.fromkeys(c for name in names for c in self.source.by_suffix(name)))
        passed = [c for c in candidates if c in starts]
        if len(passed) == 1:  # the value it reads, reshaped or rescaled: a helper, or a tool's own form of it
            self.values.setdefault(node.outputs[0], passed[0])
            producer = passed[0].producer()
            if node.op_type in HELPER_OPS or producer is None:
                return True
            self.tags[node] = (get_tags(producer), "output value")
            return True
        if node.op_type in HELPER_OPS:
            return False
        fitting = []  # regions that read only what it reads (it may read more: a residual it fused in)
        for candidate in candidates:
            region = self.source.region([candidate], starts)
            reads = _reads(region or [])
            if region and reads and reads <= starts:
                fitting.append((region, candidate))
        smallest = [f for f in fitting if len(f[0]) == min((len(r) for r, _ in fitting), default=0)]
        if len(smallest) != 1:  # the one it stands for is the smallest; a tie says nothing
            return False
        region, value = smallest[0]
        if (found := self.completed(node, region, value, starts)) is None:
            return False
        region, value = found
        if len(region) == 1 and region[0].op_type == node.op_type:
            return self.match(node, region[0], "output value")
        self.values.setdefault(node.outputs[0], value)
        return self.fuse(node, region)

    def backward(self, node: ir.Node) -> bool:  # rule 5
        ends = []
        for value in node.outputs:
            for user, index in value.uses():
                original = self.matched.get(user)
                if original is not None and index < len(original.inputs) and original.inputs[index] is not None:
                    self.values.setdefault(value, original.inputs[index])
                    ends.append(original.inputs[index])
                    break
        if not ends:
            return False
        producer = ends[0].producer()
        if producer is not None and producer.op_type == node.op_type and len(ends) == len(node.outputs):
            return self.match(node, producer, "structure")
        return self.fuse_up_to(node, ends)

    def through_weights(self, node: ir.Node) -> bool:  # rule 5b
        if node.op_type in HELPER_OPS:
            return False
        seeds = set()
        for value in node.inputs:
            if value is not None and value.is_initializer() and value in self.values:
                users = self.source.consumers.get(self.values[value], [])
                if len(users) == 1 and self.values[value].is_initializer():
                    seeds.add(users[0][0])
        starts = self.starts(node)
        if not seeds or starts is None:
            return False
        # the weights' readers and every node between them and the data it reads
        region = self.source.region([v for n in seeds for v in n.outputs], starts)
        if not region or _reads(region) != starts:  # the weights point elsewhere (a tool merged equal ones)
            return False
        inside = set(region)
        if len(inside) == 1 and region[0].op_type == node.op_type:
            return self.match(node, region[0], "structure")
        sinks = [
            value
            for n in self.source.nodes
            if n in inside
            for value in n.outputs
            if value.is_graph_output() or any(user not in inside for user, _ in self.source.consumers.get(value, []))
        ]
        depth = max(
            (_traced(v, self.values)[1] for v in node.inputs if v is not None and not v.is_initializer()), default=0
        )
        if len(sinks) == 1 and (same := _as(node.outputs[0], sinks[0], depth)) is not None:
            self.values.setdefault(same, sinks[0])
        return self.fuse(node, region)

    def by_prefix(self, nodes: list[ir.Node]) -> None:  # rule 7
        for node in nodes:
            if node not in self.tags and node.name:
                found = next((self.source.by_name[p] for p in _prefixes(node.name) if p in self.source.by_name), None)
                if found is not None:
                    self.tags[node] = (get_tags(found), "name prefix")
        # the tool's own names: a helper named after an op it made, or after that op's raw output
        own: dict[str, ir.Node] = {}
        for node in nodes:
            if node in self.tags and node.op_type not in HELPER_OPS:
                own.update({v.name: node for v in node.outputs if v.name and v not in self.values})
                own[node.name] = node
        for node in nodes:
            if node not in self.tags and node.op_type in HELPER_OPS and node.name:
                found = next((own[p] for p in _prefixes(node.name) if p in own), None)
                if found is not None:
                    self.tags[node] = ([self.tags[found][0][0]], "name prefix")

    def helpers(self, nodes: list[ir.Node]) -> None:  # rule 8
        changed = True
        while changed:
            changed = False
            for node in nodes:
                if node in self.tags or node.op_type not in HELPER_OPS:
                    continue
                users = [u for v in node.outputs for u, _ in v.uses()]
                producers = [v.producer() for v in node.inputs if v is not None and v.producer() in self.tags]
                if users and not all(u in self.tags for u in users):
                    continue  # the op it serves is not tagged (yet)
                served = users or producers
                if served:
                    self.tags[node] = ([common_ancestor(self.tags[n][0][0] for n in served)], "helper")
                    changed = True

    def tag_initializers(self, root: str) -> None:  # rule 10
        for name, value in self.graph.initializers.items():
            found = self.source.initializer_tags.get(name) or {t for user, _ in value.uses() for t in get_tags(user)}
            metadata_of(value)[TAGS_KEY] = json.dumps(sorted(set(found or [root])))
