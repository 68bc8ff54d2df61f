"""The rules of :class:`~hiercompile.passes.RetagPass` over one transformed graph, one method each
(the pass's docstring states them)."""

from __future__ import annotations

__all__ = ["Matcher"]

import json
from collections.abc import Callable, Iterable

import onnx_ir as ir

from ._retag_graph import (
    HELPER_OPS,
    SourceIndex,
    as_after_helpers,
    data_inputs,
    feeds_an_op,
    name_prefixes,
    readers,
    reads,
    through_helpers,
    traced,
)
from .tags import TAGS_KEY, common_ancestor, get_tags, metadata_of

_MAX_GROUP = 8  # more new nodes than this between known values: no evidence of what each stands for


class Matcher:
    """The rules of :class:`RetagPass` over one transformed graph, one method each."""

    def __init__(self, source: SourceIndex, graph: ir.Graph) -> None:
        self.source = source
        self.graph = graph
        self.values: dict[ir.Value, ir.Value] = {}  # transformed value -> source value
        self.matched: dict[ir.Node, ir.Node] = {}  # one-to-one matches
        self.tags: dict[ir.Node, tuple[list[str], str]] = {}  # node -> (tags, rule)
        self.named: set[ir.Value] = set()  # values named after the source value they are (rules 1 and 3)
        outputs = (v for n in ir.traversal.RecursiveGraphIterator(graph) for v in n.outputs)
        for value in [*graph.inputs, *graph.initializers.values(), *outputs]:
            if value.name in source.values:  # rule 1
                self.values[value] = source.values[value.name]
                self.named.add(value)
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
        self.value_makers(nodes, named=True)
        self.by_prefix(nodes)
        self.groups(nodes)
        self.value_makers(nodes, named=False)
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
            known = through_helpers(value, self.values)
            if known is None:
                return None
            found.add(known)
        return found

    def makes(self, node: ir.Node, ends: list[ir.Value], rule: str) -> bool:
        """The node makes the source values ``ends``: it is their producer (same op), or a fusion
        of the source nodes between its inputs and them (rule 6)."""
        producer = ends[0].producer()
        if producer is not None and producer.op_type == node.op_type and len(ends) == len(node.outputs):
            return self.match(node, producer, rule)
        starts = self.starts(node)
        region = self.source.between(ends, starts) if starts is not None else None
        return region is not None and self.fuse(node, region)

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
        return bool(known) and self.makes(node, known, "output value")

    def named_after(self, node: ir.Node, value: ir.Value) -> bool:  # rule 3, a node named after a value
        producer = value.producer()
        starts = self.starts(node)
        if starts is None or len(node.outputs) != 1:
            same = producer is not None and producer.op_type == node.op_type and len(node.outputs) == 1
            return (
                same
                and len(data_inputs(node)) == len(data_inputs(producer))
                and self.match(node, producer, "output value")
            )
        region = self.source.between([value], starts)
        if region is None or (found := self.completed(node, region, value, starts)) is None:
            return False
        region, value = found
        if (len(region) == 1 and region[0].op_type == node.op_type) or self.unfused(node, region, value, starts):
            return self.match(node, value.producer(), "output value")
        if len(node.outputs) == 1 and value not in self.values.values():
            self.values[node.outputs[0]] = value  # it makes that value (in a layout of its own, perhaps)
        return self.fuse(node, region)

    def unfused(self, node: ir.Node, region: list[ir.Node], value: ir.Value, starts: set[ir.Value]) -> bool:
        """Whether ``node``, named after ``value``, is the op of its kind that made it, unfused: it
        reads all the region reads, and the region holds no more than that op and the ops the
        node's inputs skipped where they were read through helpers (a layout change standing for
        a transpose, the multiply that ends a hard-swish split in two)."""
        depth = max((traced(v, self.values)[1] for v in data_inputs(node)), default=0)
        producer = value.producer()
        return (
            producer is not None
            and producer.op_type == node.op_type
            and reads(region) == starts
            and len(region) <= 1 + depth
        )

    def completed(self, node: ir.Node, region: list[ir.Node], value: ir.Value, starts: set[ir.Value]):
        """``(region, value)``, grown on when the node reads more than the region does (rule 6)."""
        if not reads(region) < starts or len(node.outputs) != 1:
            return region, value
        return self.source.grown(region, value, starts, readers(node.outputs[0]))

    def forward(self, node: ir.Node) -> bool:  # rule 4
        data = {
            i: through_helpers(v, self.values)
            for i, v in enumerate(node.inputs)
            if v is not None and not v.is_initializer()
        }
        if not data or any(v is None for v in data.values()):
            return False

        def fits(candidate: ir.Node, forms: Callable[[ir.Value], list[ir.Value]]) -> bool:
            if candidate.op_type != node.op_type or len(candidate.inputs) != len(node.inputs):
                return False
            return all(candidate.inputs[i] in forms(value) for i, value in data.items())

        first = min(data)
        # the values it reads; else those or the forms helper nodes of the source made of them,
        # which a tool removed (a transpose a layout change made needless)
        for forms in ((lambda v: [v]), self.source.helper_forms):
            candidates = {
                c
                for value in forms(data[first])
                for c, index in self.source.consumers.get(value, [])
                if index == first and fits(c, forms)
            }
            if candidates:
                return len(candidates) == 1 and self.match(node, candidates.pop(), "structure")
        return False

    def by_value_suffix(self, node: ir.Node) -> bool:  # rule 3, inlined function bodies
        if not node.outputs or node.outputs[0] in self.values:
            return False
        starts = self.starts(node)
        if starts is None:
            return False
        names = [node.outputs[0].name or "", node.name or ""]  # a tool may name the node after the value
        names += ["_".join(node.name.split("_")[:k]) for k in range(node.name.count("_"), 0, -1)] if node.name else []
        candidates = list(dict.fromkeys(c for name in names for c in self.source.by_suffix(name)))
        if not candidates and node.name and node.op_type not in HELPER_OPS:
            return self.by_body_node(node, starts, makes=True)
        if node.op_type in HELPER_OPS:  # named after the value it reads, or a helper's form of it,
            passed = [c for c in candidates if any(c in self.source.helper_forms(start) for start in starts)]
            if len(passed) == 1:  # a form of what it reads (a copy, quantized): it makes nothing new
                self.values.setdefault(node.outputs[0], passed[0])
                return True
            # else after the one value the source makes from what it reads (a layout change back
            # after an op that fused its activation)
            return self.suffix_value(node.outputs[0], starts) is not None
        fitting = []  # regions that read only what it reads (it may read more: a residual it fused in)
        for candidate in candidates:
            region = self.source.region([candidate], starts)
            read = reads(region or [])
            if region and read and read <= starts:
                fitting.append((region, candidate))
        same = [c for r, c in fitting if self.unfused(node, r, c, starts)]
        if len(same) == 1:
            return self.match(node, same[0].producer(), "output value")
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
        for other in node.outputs[1:]:  # a split that fused several slices: each output is named as its slice
            self.suffix_value(other, starts)
        return self.fuse(node, region)

    def by_body_node(self, node: ir.Node, starts: set[ir.Value], makes: bool = False) -> bool:  # rules 3, 8
        """A node named after a body's node plus ``/…`` (``…/Mul_0/QuickGeluFusion/``) has the tags
        of the one source node so named nearest after what it reads, as a name extending a node's
        name does in the flat form. With ``makes``, only where it is that node, or fused the
        nodes up to it from what it reads (a sigmoid and the multiply it is named after), and then
        it makes that node's values."""
        prefixes = [p for p in name_prefixes(node.name) if node.name[len(p)] == "/" and "/" in p]
        named = list(dict.fromkeys(n for p in prefixes for n in self.source.nodes_by_suffix(p)))
        if not named or any(v in starts for n in named for v in n.outputs):
            return False  # none, or named after an op whose value it reads: it comes after that op
        regions = [(r, n) for n in named if (r := self.source.between(n.outputs, starts))]
        nearest = [n for r, n in regions if len(r) == min(len(r) for r, _ in regions)]
        if len(nearest) != 1:
            return False
        region = next(r for r, n in regions if n is nearest[0])
        if not makes:
            self.tags[node] = (get_tags(nearest[0]), "name prefix")
            return True
        if len(node.outputs) != len(nearest[0].outputs) or (len(region) == 1 and nearest[0].op_type != node.op_type):
            return False  # named after the first op it fused (``…/MatMul_0/MatMulAddFusion``): no value of it
        for mine, theirs in zip(node.outputs, nearest[0].outputs, strict=True):
            self.values.setdefault(mine, theirs)
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
        return bool(ends) and self.makes(node, ends, "structure")

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
        if not region or reads(region) != starts:  # the weights point elsewhere (a tool merged equal ones)
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
            (traced(v, self.values)[1] for v in node.inputs if v is not None and not v.is_initializer()), default=0
        )
        if len(sinks) == 1 and (same := as_after_helpers(node.outputs[0], sinks[0], depth)) is not None:
            self.values.setdefault(same, sinks[0])
        return self.fuse(node, region)

    def by_prefix(self, nodes: list[ir.Node]) -> None:  # rule 8
        for node in nodes:
            if node not in self.tags and node.name:
                found = next(
                    (self.source.by_name[p] for p in name_prefixes(node.name) if p in self.source.by_name), None
                )
                if found is not None:
                    self.tags[node] = (get_tags(found), "name prefix")
                elif node.op_type not in HELPER_OPS and (starts := self.starts(node)) is not None:
                    self.by_body_node(node, starts)
        # the tool's own names: a helper named after an op it made, or after that op's raw output
        # (named after a value of the source instead, it prepares that value for the ops reading it: rule 9)
        own: dict[str, ir.Node | None] = {v.name: None for v in self.values if v.name}
        for node in nodes:
            if node in self.tags and node.op_type not in HELPER_OPS:
                own.update(
                    {
                        v.name: node
                        for v in node.outputs  # not a value of the source (as such, or as an inlined body's)
                        if v.name and v not in self.values and not self.source.by_suffix(v.name)
                    }
                )
                own[node.name] = node
        for node in nodes:
            if node not in self.tags and node.op_type in HELPER_OPS and node.name:
                found = next((own[p] for p in name_prefixes(node.name) if p in own), None)
                if found is not None:
                    self.tags[node] = ([self.tags[found][0][0]], "name prefix")

    def groups(self, nodes: list[ir.Node]) -> None:  # rule 6, several new nodes for several old ones
        untagged = {n for n in nodes if n not in self.tags and n.op_type not in HELPER_OPS}
        seen: set[ir.Node] = set()
        for node in nodes:
            if node not in untagged or node in seen:
                continue
            group, stack = set(), [node]  # the untagged ops connected to it by data edges
            while stack and len(group) <= _MAX_GROUP:
                member = stack.pop()
                if member in group:
                    continue
                group.add(member)
                stack += [v.producer() for v in member.inputs if v is not None and v.producer() in untagged]
                stack += [user for v in member.outputs for user, _ in v.uses() if user in untagged]
            seen |= group
            if len(group) > _MAX_GROUP:
                continue
            starts = {through_helpers(v, self.values) for v in reads(group)}
            if None in starts or not (ends := self.ends(group, starts)):
                continue
            region = self.source.between(ends, starts)
            if region is not None:
                for member in group:
                    self.fuse(member, region)

    def ends(self, group: set[ir.Node], starts: set[ir.Value]) -> list[ir.Value] | None:
        """The source values an untagged group makes: those of the values leaving it, or of what a
        node reading one makes from it alone (the multiply that finishes a hard-swish a tool split
        in two, known by name, or named as an inlined body's value is: rule 3); None where one is
        unknown."""
        ends = []
        for value in (
            v for n in group for v in n.outputs if v.is_graph_output() or any(u not in group for u, _ in v.uses())
        ):
            if value in self.values:
                ends.append(self.values[value])
                continue
            users = [u for u, _ in value.uses() if u not in group]
            if value.is_graph_output() or not users or any(len(u.outputs) != 1 for u in users):
                return None
            if any(not {v for v in reads([u]) if v is not value} <= reads(group) for u in users):
                return None  # the reader also reads what the group does not
            made = [self.values.get(u.outputs[0]) or self.suffix_value(u.outputs[0], starts) for u in users]
            if None in made:
                return None
            ends += made
        return ends or None

    def is_named(self, value: ir.Value) -> bool:
        """Whether ``value`` is named after the source value it is (as such, or as an inlined body's)."""
        return value in self.named or (
            value in self.values and self.values[value] in self.source.by_suffix(value.name or "")
        )

    def suffix_value(self, value: ir.Value, starts: set[ir.Value]) -> ir.Value | None:
        """The one source value named as ``value`` from its first ``/`` on that the source makes
        from ``starts`` alone (rule 3); recorded as what ``value`` is."""
        if value in self.values:
            return self.values[value]
        fitting = [c for c in self.source.by_suffix(value.name or "") if self.source.between([c], starts)]
        if len(fitting) != 1:
            return None
        self.values[value] = fitting[0]
        self.named.add(value)
        return fitting[0]

    def value_makers(self, nodes: list[ir.Node], named: bool) -> None:  # rule 7
        """With ``named``, only values a node is named after; else, for ops, also those its readers
        showed (after the groups, which may stand for several source nodes: rule 6)."""
        for node in nodes:
            if node in self.tags:
                continue
            made = [self.values[v] for v in node.outputs if v in self.values]
            if named or node.op_type in HELPER_OPS:  # from its readers alone, a helper's value may be a copy
                made = [self.values[v] for v in node.outputs if self.is_named(v)]
            maker = next((v.producer() for v in made if v.producer() is not None and get_tags(v.producer())), None)
            if maker is not None:
                self.tags[node] = (get_tags(maker), "value maker")

    def helpers(self, nodes: list[ir.Node]) -> None:  # rule 9
        changed = True
        while changed:
            changed = False
            for node in nodes:
                if node in self.tags or node.op_type not in HELPER_OPS:
                    continue
                # helpers after it that lead to no op (a quantize-dequantize pair on a graph output) wait on nothing
                users = [u for v in node.outputs for u, _ in v.uses() if u in self.tags or feeds_an_op(u)]
                producers = [v.producer() for v in node.inputs if v is not None and v.producer() in self.tags]
                if users and not all(u in self.tags for u in users):
                    continue  # the op it serves is not tagged (yet)
                served = users or producers
                if served:
                    self.tags[node] = ([common_ancestor(self.tags[n][0][0] for n in served)], "helper")
                    changed = True

    def tag_initializers(self, root: str) -> None:  # rule 11
        for name, value in self.graph.initializers.items():
            found = self.source.initializer_tags.get(name) or {t for user, _ in value.uses() for t in get_tags(user)}
            metadata_of(value)[TAGS_KEY] = json.dumps(sorted(set(found or [root])))
