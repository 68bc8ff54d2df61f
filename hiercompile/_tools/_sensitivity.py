"""``hiercompile.sensitivity``: which modules a quantization hurts, tried one module at a time.

ONNX Runtime's and AIMET's per-op analyses pair tensors by name on an unoptimized graph;
here a module is quantized alone (its ops resolved through the tags) and the model's
outputs are compared with the float export's on the same inputs. The worst modules are
then kept in float, one more at a time, until the whole model quantized by that
:class:`Policy` meets the tolerance; the policy written is the one measured.
"""

from __future__ import annotations

__all__ = ["ModuleSensitivity", "SensitivityReport", "sensitivity"]

import dataclasses
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnx_ir as ir

from .. import _ort
from .._errors import InputError
from .._io import json_writer, write_files
from ..passes import get_tags, is_under
from ._diff import largest_difference, leaving_values
from ._profile import example_feeds
from ._quantize import FLOAT, MODES, STATIC, WEIGHT_OPS, Policy, apply, read_calibration, weight_dtypes
from ._retrieve import HierarchyRetriever, model_file
from ._verify import run_exposing_values

Progress = Callable[[int, int, str, float], None]
"""Called after each trial with (done, total, module tag, seconds it took)."""


@dataclasses.dataclass(frozen=True)
class ModuleSensitivity:
    """One module quantized alone: its weighted ops quantized, and the model's outputs against
    the float export's (largest absolute difference; lowest cosine similarity of an output).
    ``own_abs_diff``: the largest difference of the values leaving the module, which, with
    every other module in float, its own ops alone make (``verify --from``'s own error, against
    the export instead of PyTorch); None when none could be compared."""

    tag: str
    ops: int
    max_abs_diff: float
    cosine: float
    own_abs_diff: float | None = None


@dataclasses.dataclass
class SensitivityReport:
    """The modules tried, worst first; the error with all of them quantized; with a tolerance,
    the policy that keeps the fewest worst modules in float and meets it, and its error."""

    mode: str
    modules: list[ModuleSensitivity]
    all_quantized: tuple[float, float]
    policy: Policy | None = None
    policy_error: tuple[float, float] | None = None
    runs: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {
            "mode": self.mode,
            "modules": [dataclasses.asdict(m) for m in self.modules],
            "all_quantized": {"max_abs_diff": self.all_quantized[0], "cosine": self.all_quantized[1]},
            "policy": self.policy.to_json() if self.policy else None,
            "policy_error": dict(zip(("max_abs_diff", "cosine"), self.policy_error, strict=True))
            if self.policy_error
            else None,
        }


def sensitivity(
    export: str | Path,
    *,
    mode: str = "dynamic",
    depth: int | None = None,
    feeds: Mapping[str, np.ndarray] | None = None,
    dims: Mapping[str, int] | None = None,
    atol: float | None = None,
    min_cosine: float | None = None,
    policy: str | Path | None = None,
    progress: Progress | None = None,
    calibration: str | Path | Mapping[str, np.ndarray] | None = None,
) -> SensitivityReport:
    """Quantize each module of a hiercompile export alone in ``mode`` and measure the error of
    the model's outputs against the float export's, on ``feeds`` (default: the inputs
    ``profile`` makes, symbolic dims from ``dims``).

    The modules tried: those whose own ops read weights (``depth`` None), or the modules
    at ``depth`` with their subtrees; ops outside them stay as exported. With ``atol``
    (largest absolute difference) and/or ``min_cosine``, the worst modules are kept in
    float one more at a time until the model quantized by that policy meets them;
    ``policy``: write that policy there (JSON), for ``hiercompile quantize --policy``. Time
    grows with the modules tried: one quantization and one run each, ``progress`` called
    after each. ``calibration``: for ``static`` and ``qdq``, as :func:`hiercompile.quantize` takes it.
    """
    if mode not in MODES:
        raise InputError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    if policy is not None and atol is None and min_cosine is None:
        raise InputError(
            "a policy keeps modules in float until the output meets a tolerance: give --atol or --min-cosine"
        )
    if calibration is not None and mode not in STATIC:
        raise InputError(f"calibration applies to static and qdq quantization, not {mode}; leave it out")
    samples = read_calibration(calibration) if calibration is not None else None
    source = model_file(Path(export))
    retriever = HierarchyRetriever(source)
    trials = _trials(retriever, depth)
    if not trials:
        raise InputError(
            f"no module {'at depth ' + str(depth) + ' ' if depth is not None else ''}has ops with weights to "
            "quantize; `hiercompile inspect` shows the tree"
        )
    start = time.perf_counter()
    reference = _ort.session(retriever.model)
    inputs = dict(feeds) if feeds is not None else example_feeds(reference, dict(dims or {}), 2)
    outputs = [value.name for value in retriever.model.graph.outputs]
    values = run_exposing_values(retriever.model, inputs)
    expected = [values[name] for name in outputs]
    leaving = leaving_values(retriever.model)
    names = [node.name for node in retriever.model.graph]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "quantized.onnx"

        runs = 0

        def measure(chosen: Mapping[str, str], tag: str | None = None) -> tuple[float, float, float | None]:
            """The model quantized as ``chosen``: its outputs' error and, for ``tag``, that module's own."""
            nonlocal runs
            runs += 1
            apply(source, target, chosen, samples)
            if tag is None:
                return (*_error(expected, _ort.session(target).run(None, inputs)), None)
            got = run_exposing_values(ir.load(target), inputs)
            own = largest_difference(leaving.get(tag, []), values, got, {name: name for name in got})
            return (*_error(expected, [got[name] for name in outputs]), own)

        for done, (tag, nodes) in enumerate(trials.items(), 1):
            began = time.perf_counter()
            members = set(nodes)
            diff, cosine, own = measure({n: mode if n in members else FLOAT for n in names}, tag)
            weighted = sum(1 for n in nodes if _weighted(retriever.model.graph.node(n)))
            rows.append(ModuleSensitivity(tag, weighted, diff, cosine, own))
            if progress:
                progress(done, len(trials), tag, time.perf_counter() - began)
        rows.sort(key=lambda r: (-r.max_abs_diff, r.cosine))

        def error(chosen: Mapping[str, str]) -> tuple[float, float]:
            return measure(chosen)[:2]

        report = SensitivityReport(mode, rows, error(_policy(mode, rows, []).assign(retriever)))
        if atol is not None or min_cosine is not None:
            report.policy, report.policy_error = _search(
                rows, mode, retriever, error, report.all_quantized, atol, min_cosine
            )
    report.runs, report.seconds = runs, time.perf_counter() - start
    if policy is not None:
        path = Path(policy)
        write_files(path.parent, {path.name: json_writer(report.policy.to_json())})
    return report


def _weighted(node: ir.Node) -> bool:
    return node.op_type in WEIGHT_OPS and ir.DataType.FLOAT in weight_dtypes(node)


def _trials(retriever: HierarchyRetriever, depth: int | None) -> dict[str, list[str]]:
    """The modules to try, each with the nodes it quantizes: its own ops (``depth`` None, for
    modules whose own ops read weights), or its subtree's (the modules at ``depth``)."""
    nodes = [(node.name, (get_tags(node) or [""])[0], _weighted(node)) for node in retriever.model.graph]
    if depth is None:
        owners = sorted({tag for _, tag, weighted in nodes if weighted and tag})
        return {tag: [name for name, t, _ in nodes if t == tag] for tag in owners}
    found = {}
    for tag in retriever.get_modules_by_depth(depth):
        members = [(name, weighted) for name, t, weighted in nodes if t and is_under(t, tag)]
        if any(weighted for _, weighted in members):
            found[tag] = [name for name, _ in members]
    return found


def _error(expected: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float]:
    """Largest absolute difference over the outputs, and the lowest cosine similarity of one."""
    diff, cosine = 0.0, 1.0
    for a, b in zip(expected, got, strict=True):
        a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
        if a.size == 0:
            continue
        diff = max(diff, float(np.abs(a - b).max()))
        norms = float(np.linalg.norm(a) * np.linalg.norm(b))
        cosine = min(cosine, float(a @ b / norms) if norms else float(np.array_equal(a, b)))
    return diff, cosine


def _meets(found: tuple[float, float], atol: float | None, min_cosine: float | None) -> bool:
    return (atol is None or found[0] <= atol) and (min_cosine is None or found[1] >= min_cosine)


def _policy(mode: str, rows: list[ModuleSensitivity], kept: list[str]) -> Policy:
    """The modules tried in ``mode`` but those ``kept`` in float, and the rest as exported (a
    module named stands for its subtree, less the modules named below it)."""
    return Policy(FLOAT, {row.tag: FLOAT if row.tag in kept else mode for row in rows})


def _search(
    rows: list[ModuleSensitivity],
    mode: str,
    retriever: HierarchyRetriever,
    error: Callable[[Mapping[str, str]], tuple[float, float]],
    everything: tuple[float, float],
    atol: float | None,
    min_cosine: float | None,
) -> tuple[Policy, tuple[float, float]]:
    """Keep the worst modules in float, one more at a time, until the policy's model meets the
    tolerance (it does once every module tried is kept: the model is then as exported)."""
    kept: list[str] = []
    found = everything
    for row in rows:
        if _meets(found, atol, min_cosine):
            break
        kept.append(row.tag)
        found = error(_policy(mode, rows, kept).assign(retriever))
    return _policy(mode, rows, kept), found
