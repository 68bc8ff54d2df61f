"""``hiercompile.diff``: what changed, module by module, between two tagged models.

Two exports (of two versions of a model), or an export and what a tool made of it: the
second is retagged from the first when its nodes lost their tags (ONNX Runtime's optimizer,
a quantizer), so both sides are read by the same module tags.

Rules:

1. A module's ops are the nodes whose primary tag it is; its op types before and after are
   counted, and the difference names what was fused or split (``-MatMul 2, -Mul 1, +FusedMatMul 1``).
2. A weight belongs to the modules its tags name (the first); one of both models by name is
   the same or changed (values compared), one of one model only is removed or added (a
   quantizer's ``…_quantized`` copy is added, the float one removed).
3. With ``run``, both models run on the same inputs and the values each module's own ops
   hand outside its subtree are compared with their counterparts (same name, or the value retag says stands for it);
   the largest difference is the module's.
"""

from __future__ import annotations

__all__ = ["DiffReport", "ModuleDiff", "diff", "largest_difference", "leaving_values"]

import collections
import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx_ir as ir

from .. import _ort
from .._errors import InputError
from ..passes import RetagResult, get_tags, is_under
from ._profile import example_feeds
from ._retag import retag
from ._retrieve import HierarchyRetriever, ModelSource, load_file, load_tagged
from ._verify import run_exposing_values


@dataclasses.dataclass
class ModuleDiff:
    """One module: op types before and after, weights by fate, and the largest difference of
    the values leaving it (with ``run``; None when none could be compared)."""

    tag: str
    before: dict[str, int]
    after: dict[str, int]
    weights: dict[str, int] = dataclasses.field(default_factory=dict)
    max_abs_diff: float | None = None

    @property
    def added(self) -> dict[str, int]:
        return dict(collections.Counter(self.after) - collections.Counter(self.before))

    @property
    def removed(self) -> dict[str, int]:
        return dict(collections.Counter(self.before) - collections.Counter(self.after))

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or set(self.weights) - {"same"})

    def summary(self) -> str:
        """``-MatMul 2, -Mul 1, +FusedMatMul 1``, or ``unchanged``."""
        parts = [f"-{op} {n}" for op, n in sorted(self.removed.items())]
        parts += [f"+{op} {n}" for op, n in sorted(self.added.items())]
        return ", ".join(parts) or "unchanged"


@dataclasses.dataclass
class DiffReport:
    """Every module of the first model, in hierarchy order; the retag that tagged the second,
    when it had to be (its ``model`` is the second, tagged)."""

    modules: list[ModuleDiff]
    second: ir.Model
    retagged: RetagResult | None = None

    def changed(self) -> list[ModuleDiff]:
        return [m for m in self.modules if m.changed]

    def to_json(self) -> dict:
        return {
            "modules": {
                m.tag: {
                    "before": m.before,
                    "after": m.after,
                    "added": m.added,
                    "removed": m.removed,
                    "weights": m.weights,
                    "max_abs_diff": m.max_abs_diff,
                }
                for m in self.modules
            },
            "retag_coverage": self.retagged.coverage if self.retagged else None,
        }


def diff(
    first: ModelSource,
    second: ModelSource,
    *,
    run: bool = False,
    feeds: Mapping[str, np.ndarray] | None = None,
    dims: Mapping[str, int] | None = None,
) -> DiffReport:
    """Compare two tagged models module by module (rules above). ``second`` is retagged from
    ``first`` when any of its nodes has no tag. With ``run``, both run in ONNX Runtime on
    ``feeds`` (default: the inputs ``profile`` makes, symbolic dims from ``dims``)."""
    retriever = HierarchyRetriever(first)
    before = retriever.model
    after = load_file(Path(second)) if isinstance(second, str | Path) else second
    retagged = None
    if any(not get_tags(node) for node in after.graph):
        retagged = retag(after, first)
        after = retagged.model
    else:
        after = load_tagged(after)
    modules = retriever.modules()
    ops_before, ops_after = _op_types(before), _op_types(after)
    weights = _weights(before, after)
    found = [ModuleDiff(tag, ops_before.get(tag, {}), ops_after.get(tag, {}), weights.get(tag, {})) for tag in modules]
    if run:
        _run(before, after, found, retagged, feeds, dims)
    return DiffReport(found, after, retagged)


def _op_types(model: ir.Model) -> dict[str, dict[str, int]]:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for node in model.graph:
        tags = get_tags(node)
        if tags and node.op_type != "Constant":
            counts[tags[0]][node.op_type] += 1
    return {tag: dict(c) for tag, c in counts.items()}


def _weights(before: ir.Model, after: ir.Model) -> dict[str, dict[str, int]]:
    fates: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    mine, theirs = before.graph.initializers, after.graph.initializers
    for name, value in mine.items():
        tag = (get_tags(value) or [""])[0]
        other = theirs.get(name)
        if other is None:
            fates[tag]["removed"] += 1
        elif other.const_value is None or value.const_value is None:  # no values to compare: said so
            fates[tag]["not compared"] += 1
        else:
            a, b = value.const_value.numpy(), other.const_value.numpy()
            fates[tag]["same" if a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b) else "changed"] += 1
    for name, value in theirs.items():
        if name not in mine:
            fates[(get_tags(value) or [""])[0]]["added"] += 1
    return {tag: dict(c) for tag, c in fates.items()}


def _run(
    before: ir.Model,
    after: ir.Model,
    found: list[ModuleDiff],
    retagged: RetagResult | None,
    feeds: Mapping[str, np.ndarray] | None,
    dims: Mapping[str, int] | None,
) -> None:
    """Rule 3: the largest difference of each module's values that leave it."""
    if feeds is None:
        feeds = example_feeds(_ort.session(before), dict(dims or {}), 2)
    missing = sorted({v.name for v in after.graph.inputs} - set(feeds))
    if missing:
        raise InputError(f"the second model takes inputs the first does not ({', '.join(missing)}); pass feeds=")
    mine = run_exposing_values(before, dict(feeds))
    theirs = run_exposing_values(after, dict(feeds))
    counterpart = {name: name for name in theirs}  # same name: the same value (retag's rule 1)
    if retagged is not None:
        for value, source in retagged.values.items():
            if value in theirs and source not in theirs:
                counterpart.setdefault(source, value)
    leaving = leaving_values(before)
    for module in found:
        module.max_abs_diff = largest_difference(leaving.get(module.tag, []), mine, theirs, counterpart)


def leaving_values(model: ir.Model) -> dict[str, list[str]]:
    """Per primary tag, the values its own ops hand to ops outside its subtree or to the graph's outputs."""
    owner = {n.name: (get_tags(n) or [""])[0] for n in model.graph}
    leaving: dict[str, list[str]] = collections.defaultdict(list)
    outputs = set(model.graph.outputs)
    for node in model.graph:
        tag = owner[node.name]
        for value in node.outputs:
            outside = any(not is_under(owner.get(user.name, ""), tag) for user, _ in value.uses())
            if value in outputs or outside:
                leaving[tag].append(value.name)
    return dict(leaving)


def largest_difference(
    names: list[str], mine: Mapping[str, np.ndarray], theirs: Mapping[str, np.ndarray], counterpart: Mapping[str, str]
) -> float | None:
    """The largest absolute difference between the numeric values ``names`` and their
    counterparts of the same shape; None when none can be compared."""
    diffs = []
    for name in names:
        other = counterpart.get(name)
        if name in mine and other in theirs and np.shape(mine[name]) == np.shape(theirs[other]):
            a, b = np.asarray(mine[name]), np.asarray(theirs[other])
            if np.issubdtype(a.dtype, np.number) and a.size:
                diffs.append(float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()))
    return max(diffs) if diffs else None
