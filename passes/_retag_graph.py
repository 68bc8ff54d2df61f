"""The tagged model indexed for :class:`~hiercompile.passes.RetagPass`, and the graph facts
its rules rest on: the original nodes behind a fused one, the helper nodes tools add, the
names tools derive from the ones they read."""

from __future__ import annotations

__all__ = [
    "HELPER_OPS",
    "SourceIndex",
    "as_after_helpers",
    "data_inputs",
    "feeds_an_op",
    "name_prefixes",
    "readers",
    "reads",
    "through_helpers",
    "traced",
]

import collections
from collections.abc import Iterable

import onnx_ir as ir

from .tags import get_tags

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
MAX_REGION = 256  # more original nodes than this behind one node: not a fusion, no evidence


class SourceIndex:
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
        self.nodes_by_last_segment: dict[str, list[ir.Node]] = collections.defaultdict(list)
        for node in self.nodes:
            self.nodes_by_last_segment[node.name.rsplit("/", 1)[-1]].append(node)
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

    def nodes_by_suffix(self, name: str) -> list[ir.Node]:
        """Source nodes whose names end as ``name`` does from its first ``/`` on: the same node of
        a function body, inlined by another tool under another prefix."""
        if "/" not in name:
            return []
        suffix = name[name.index("/") :]
        return [n for n in self.nodes_by_last_segment.get(name.rsplit("/", 1)[-1], []) if n.name.endswith(suffix)]

    def region(self, ends: Iterable[ir.Value], starts: set[ir.Value]) -> list[ir.Node] | None:
        """The original nodes between ``starts`` and ``ends``: what a fused node stands for."""
        found: dict[ir.Node, None] = {}
        stack = [v.producer() for v in ends if v.producer() is not None and v not in starts]
        while stack:
            node = stack.pop()
            if node in found or node.op_type == "Constant":
                continue
            found[node] = None
            if len(found) > MAX_REGION:
                return None
            for value in node.inputs:
                if value is None or value in starts or value.producer() is None:
                    continue
                stack.append(value.producer())
        return list(found) or None

    def between(self, ends: Iterable[ir.Value], starts: set[ir.Value]) -> list[ir.Node] | None:
        """:meth:`region`, when it reads nothing but ``starts``: the nodes a node reading
        ``starts`` and making ``ends`` can stand for."""
        region = self.region(ends, starts)
        return region if region is not None and reads(region) <= starts else None

    def helper_forms(self, value: ir.Value) -> list[ir.Value]:
        """``value`` and what chains of helper nodes of the source make of it (a transpose, a reshape)."""
        forms = [value]
        for form in forms:
            for user, index in self.consumers.get(form, []):
                if index == 0 and user.op_type in HELPER_OPS and len(forms) < 8:
                    forms.extend(user.outputs)
        return forms

    def grown(self, region: list[ir.Node], value: ir.Value, starts: set[ir.Value], uses: collections.Counter):
        """A region that reads less than the node it stands for, grown forward along the one
        consumer of its value until it reads all the node reads (a convolution that fused the
        residual sum), then on through ops reading nothing more (the activation after the sum) to
        the one value whose consumers are the node's (``uses``, op types past helpers).
        Returns (region, value), or None where the growth branches or stays ambiguous."""
        region = list(region)
        options: list[tuple[list[ir.Node], ir.Value]] = []
        while len(region) <= MAX_REGION:
            if reads(region) == starts:
                options.append((list(region), value))
            users = self.consumers.get(value, [])
            if len(users) != 1 or len(users[0][0].outputs) != 1 or not reads([*region, users[0][0]]) <= starts:
                break
            region.append(users[0][0])
            value = users[0][0].outputs[0]
        fitting = [(r, v) for r, v in options if readers(v, self.consumers) == uses]
        return fitting[0] if len(fitting) == 1 else (options[0] if len(options) == 1 else None)


def readers(value: ir.Value, consumers=None) -> collections.Counter:
    """The op types reading ``value``, looking past helper nodes (a layout change before a convolution);
    ``consumers``: the source's index (its graph is not the transformed one)."""
    found: collections.Counter = collections.Counter()
    users = [u for u, _ in (consumers.get(value, []) if consumers is not None else value.uses())]
    for user in users:
        if user.op_type in HELPER_OPS and len(user.outputs) == 1:
            found.update(readers(user.outputs[0], consumers))
        else:
            found[user.op_type] += 1
    return found


def name_prefixes(name: str) -> Iterable[str]:
    """The parts of ``name`` before each ``/``, ``_`` or ``:`` in it, longest first: the names
    a tool may have extended to name a node it derived (``…/MatMul_0`` for ``…/MatMul_0_quant``)."""
    for k in range(len(name) - 1, 0, -1):
        if name[k] in "/_:":
            yield name[:k]


def feeds_an_op(node: ir.Node) -> bool:
    """Whether ``node`` is an op, or a helper whose outputs reach an op through helpers."""
    if node.op_type not in HELPER_OPS:
        return True
    return any(feeds_an_op(user) for value in node.outputs for user, _ in value.uses())


def through_helpers(value: ir.Value, values: dict[ir.Value, ir.Value]) -> ir.Value | None:
    """The source value behind ``value``, looking back through helper nodes a tool added (a
    reshape before a Gemm); None when there is none yet."""
    return traced(value, values)[0]


def traced(value: ir.Value, values: dict[ir.Value, ir.Value]) -> tuple[ir.Value | None, int]:
    """:func:`through_helpers` and how many helper nodes it looked back through."""
    depth = 0
    while value not in values:
        producer = value.producer()
        if producer is None or producer.op_type not in HELPER_OPS or not producer.inputs or producer.inputs[0] is None:
            return None, depth
        value, depth = producer.inputs[0], depth + 1
    return values[value], depth


def reads(region: Iterable[ir.Node]) -> set[ir.Value]:
    """The data (not weights, not constants) the nodes of ``region`` read from outside it."""
    region = set(region)
    return {
        v
        for n in region
        for v in n.inputs
        if v is not None and v.producer() not in region and not v.is_initializer() and not is_constant(v)
    }


def data_inputs(node: ir.Node) -> list[ir.Value]:
    """The node's data inputs: not weights, not constants."""
    return [v for v in node.inputs if v is not None and not v.is_initializer() and not is_constant(v)]


def is_constant(value: ir.Value) -> bool:
    return value.producer() is not None and value.producer().op_type == "Constant"


def same_shape(a: ir.Value, b: ir.Value) -> bool:
    return a.shape is not None and b.shape is not None and list(a.shape) == list(b.shape)


def as_after_helpers(value: ir.Value, original: ir.Value, depth: int) -> ir.Value | None:
    """The value ``original`` is in the transformed model: ``value`` itself or what the helper
    nodes a tool put after it make (a reshape back after a Gemm). The first of the same shape
    where shapes say so, else the one as many helpers on as the node's input came through."""
    chain = [value]
    while True:
        uses = list(chain[-1].uses())
        if len(uses) != 1 or uses[0][0].op_type not in HELPER_OPS or len(uses[0][0].outputs) != 1:
            break
        chain.append(uses[0][0].outputs[0])
    same = [v for v in chain if same_shape(v, original)]
    if same:
        return same[0]
    return chain[depth] if depth < len(chain) else None
