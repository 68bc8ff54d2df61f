"""Per-module time in ONNX Runtime: its profiler's kernel times, attributed to tags."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from .. import _ort
from .._artifacts import PROFILE_FILE, write_result
from .._axes import PAST, SEQUENCE, TOTAL
from .._errors import InputError, ProfileError, first_line
from .._io import onnx_writer
from ..passes import RetagPass, ancestors, get_tags
from ._retrieve import HierarchyRetriever, ModelSource, model_file

OVERHEAD = "(runtime, outside any op)"
"""The row for the part of a run ONNX Runtime spends outside op kernels (scheduling, copies)."""
UNATTRIBUTED = "(kernels of no known module)"
"""The row for kernels whose nodes no evidence ties to a module (retag left them untagged)."""

_KERNEL = "_kernel_time"


@dataclasses.dataclass
class ModuleTime:
    """Milliseconds per run of one module: its own ops and its whole subtree."""

    tag: str
    self_ms: float
    subtree_ms: float
    share: float  # subtree time / run time
    ops: int  # profiled kernels of its own


@dataclasses.dataclass
class ProfileReport:
    """Where a model's ONNX Runtime run time goes, module by module (hierarchy order).

    Every figure is a mean over the same typical runs (the middle half by duration):
    ``run_ms`` the ``model_run`` time, ``kernel_ms`` the time in kernels tied to a
    module, ``unattributed_ms`` in kernels no evidence ties to one, ``overhead_ms`` the
    rest. The modules' ``self_ms``, ``unattributed_ms`` and ``overhead_ms`` add up to
    ``run_ms``, and the root's ``subtree_ms`` is ``kernel_ms``.
    """

    modules: list[ModuleTime]
    run_ms: float
    kernel_ms: float
    overhead_ms: float
    runs: int
    kernels: int  # distinct kernels ORT ran per run
    unattributed_ms: float = 0.0  # kernels no evidence ties to a module
    unattributed: list[str] = dataclasses.field(default_factory=list)  # their names
    trace: list[dict] = dataclasses.field(default_factory=list)  # one typical run, as Chrome trace events

    def to_trace(self) -> dict:
        """The median typical run in Chrome's trace format (``chrome://tracing``, ui.perfetto.dev):
        a span per module, nested as the modules are, around the kernels that ran in it."""
        return {"traceEvents": self.trace, "displayTimeUnit": "ms"}

    def top(self, n: int = 10) -> list[ModuleTime]:
        """The ``n`` modules with the most time of their own."""
        return sorted(self.modules, key=lambda m: -m.self_ms)[:n]

    def to_json(self) -> dict:
        return {
            "run_ms": self.run_ms,
            "kernel_ms": self.kernel_ms,
            "overhead_ms": self.overhead_ms,
            "runs": self.runs,
            "kernels": self.kernels,
            "unattributed_ms": self.unattributed_ms,
            "unattributed": self.unattributed,
            "modules": {m.tag: dataclasses.asdict(m) for m in self.modules},
        }


def example_feeds(session: ort.InferenceSession, dims: dict[str, int], default_dim: int) -> dict[str, np.ndarray]:
    """Inputs for every graph input: symbolic dims from ``dims`` (else ``default_dim``), but for
    a generative export's mask length, which spans the cache and the new tokens (past +
    sequence) unless given; ints are ones."""
    rng = np.random.default_rng(0)
    dims = {TOTAL: dims.get(PAST, default_dim) + dims.get(SEQUENCE, default_dim), **dims}
    feeds = {}
    for arg in session.get_inputs():
        shape = [d if isinstance(d, int) else dims.get(str(d), default_dim) for d in arg.shape]
        if "int" in arg.type:
            feeds[arg.name] = np.ones(shape, dtype=np.int32 if "int32" in arg.type else np.int64)
        elif "bool" in arg.type:
            feeds[arg.name] = np.ones(shape, dtype=bool)
        else:
            dtype = np.float16 if "float16" in arg.type else np.float64 if "double" in arg.type else np.float32
            feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def profile(
    model: ModelSource,
    *,
    runs: int = 10,
    warmup: int = 2,
    feeds: dict[str, np.ndarray] | None = None,
    dims: dict[str, int] | None = None,
    default_dim: int = 2,
    output: str | Path | None = None,
    providers: Sequence[str] | None = None,
    source: ModelSource | None = None,
) -> ProfileReport:
    """Run ``model`` in ONNX Runtime with its profiler and attribute every kernel to a module.

    Works on the flat and the functions form (the latter is inlined first, which is
    what ONNX Runtime runs anyway). ORT's graph optimizations stay on, so times are
    those of a real deployment; ORT's optimized graph is tagged with
    :class:`~hiercompile.passes.RetagPass` (what ``hiercompile retag`` does), so a fused
    kernel counts for the innermost module holding what it fused. A kernel no evidence
    ties to a module is counted as unattributed, its own row.
    Without ``feeds``, inputs are generated: symbolic dims from ``dims`` (by name,
    else ``default_dim``; ``total_sequence_length`` is past + sequence length), integer
    inputs all ones, floats standard normal.
    ``output``: write ``profile.json`` there (a folder, or a ``.json`` path), stamped with
    the model file's hash. ``providers``: ONNX Runtime's execution providers, in order
    (default: the CPU's; ``["CUDAExecutionProvider", "CPUExecutionProvider"]`` times the
    CUDA kernels, with the same accounting). ``source``: the hiercompile export that
    ``model`` was made from by another tool (optimized, quantized): ``model`` is retagged
    from it first (:func:`hiercompile.retag`, in memory) and profiled as it is.
    """
    if runs < 1 or warmup < 0:
        raise InputError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    providers = list(providers or _ort.CPU)
    missing = [p for p in providers if p not in ort.get_available_providers()]
    if missing:
        raise ProfileError(
            f"onnxruntime offers no {', '.join(missing)} (it has {', '.join(ort.get_available_providers())}); "
            "for CUDA install onnxruntime-gpu"
        )
    path = model_file(Path(model)) if isinstance(model, str | Path) else None
    if source is not None:
        from ._retag import retag

        retriever = HierarchyRetriever(retag(path if path is not None else model, source).model)
    else:
        retriever = HierarchyRetriever(path if path is not None else model)
    report = _profile(retriever, path, runs, warmup, feeds, dims or {}, default_dim, providers)
    if output is not None:
        output = Path(output)
        write_result(output / PROFILE_FILE if output.suffix != ".json" else output, report.to_json(), path)
    return report


def _profile(
    retriever: HierarchyRetriever,
    path: Path | None,
    runs: int,
    warmup: int,
    feeds: dict[str, np.ndarray] | None,
    dims: dict[str, int],
    default_dim: int,
    providers: list[str],
) -> ProfileReport:
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.log_severity_level = 3  # not its note that the optimized file is machine-specific
        options.profile_file_prefix = str(Path(tmp) / "profile")
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")  # read for its node names only
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", "optimized.onnx.data"
        )
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        source = path if not retriever.inlined else None
        if source is None:  # an in-memory model or the inlined functions form: a file of its own (> 2 GB works)
            source = Path(tmp) / "model.onnx"
            onnx_writer(retriever.model)(source)
        try:
            session = _ort.session(source, options, providers)
            inputs = feeds if feeds is not None else example_feeds(session, dims, default_dim)
            for _ in range(warmup + runs):
                session.run(None, inputs)
        except Exception as e:
            raise ProfileError(
                f"profile step (ONNX Runtime run) failed: {first_line(e)}; check the inputs fit the model"
            ) from e
        events = json.loads(Path(session.end_profiling()).read_text())
        optimized = ir.load(options.optimized_model_filepath)  # weights stay in their file
        RetagPass(retriever.model)(optimized)
    kernel_tags = {n.name: get_tags(n)[0] for n in ir.traversal.RecursiveGraphIterator(optimized.graph) if get_tags(n)}
    run_events = [e for e in events if e.get("name") == "model_run"]
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith(_KERNEL)]
    if len(run_events) != warmup + runs:
        raise ProfileError(f"ONNX Runtime's profile has {len(run_events)} runs, expected {warmup + runs}")
    return _attribute(retriever, kernel_tags, run_events[warmup:], kernels, runs)


def _typical_runs(run_events: list[dict]) -> list[int]:
    """Indices of the middle half of the runs by duration (at least one): the runs a busy
    machine did not slow down or that did not happen to be quick, so outliers drop out."""
    order = sorted(range(len(run_events)), key=lambda i: run_events[i]["dur"])
    drop = len(order) // 4
    return sorted(order[drop : len(order) - drop])


def _attribute(
    retriever: HierarchyRetriever,
    kernel_tags: dict[str, str],
    run_events: list[dict],
    kernels: list[dict],
    runs: int,
) -> ProfileReport:
    """Attribute each run's kernels to modules, then average over the typical runs.

    Rules:

    1. A kernel belongs to the run whose ``model_run`` span holds its start, and its
       time to the module its node is tagged with (``kernel_tags``); a kernel whose
       node has no tag is unattributed.
    2. A run's overhead is its duration minus its kernels' time.
    3. Every figure is the mean over the same runs, the middle half by duration
       (:func:`_typical_runs`). Means over one set of runs add up: the modules' own
       times, the unattributed time and the overhead give the run time, and the root's
       subtree time the attributed kernel time, however loaded the machine was.
    """
    per_run: list[dict[str | None, float]] = []
    seen: dict[str, str | None] = {}
    for run in run_events:
        start, end = run["ts"], run["ts"] + run["dur"]
        own: dict[str | None, float] = {}
        for event in kernels:
            if not start <= event["ts"] <= end:
                continue
            kernel = event["name"][: -len(_KERNEL)]
            tag = seen[kernel] = kernel_tags.get(kernel)
            own[tag] = own.get(tag, 0.0) + event["dur"] / 1000
        per_run.append(own)
    typical = _typical_runs(run_events)

    def mean(values: list[float]) -> float:
        return math.fsum(values) / len(values)

    run_ms = mean([run_events[i]["dur"] / 1000 for i in typical])
    self_ms = {tag: mean([per_run[i].get(tag, 0.0) for i in typical]) for tag in retriever.modules()}
    unattributed_ms = mean([per_run[i].get(None, 0.0) for i in typical])
    kernel_ms = math.fsum(self_ms.values())
    modules = []
    for tag in retriever.modules():
        subtree_ms = math.fsum(self_ms[t] for t in retriever.get_module_subtree(tag))
        count = sum(1 for owner in seen.values() if owner == tag)
        modules.append(ModuleTime(tag, self_ms[tag], subtree_ms, subtree_ms / run_ms if run_ms else 0.0, count))
    unattributed = sorted(k for k, owner in seen.items() if owner is None)
    median = typical[len(typical) // 2]
    return ProfileReport(
        modules,
        run_ms,
        kernel_ms,
        run_ms - kernel_ms - unattributed_ms,
        runs,
        len(seen),
        unattributed_ms,
        unattributed,
        _trace(run_events[median], kernels, kernel_tags),
    )


def _trace(run: dict, kernels: list[dict], kernel_tags: dict[str, str]) -> list[dict]:
    """One run as Chrome trace events (``chrome://tracing``, Perfetto): the run, then a span per
    module around its kernels, nested as the modules are, the kernels inside.

    Rules:

    1. Kernels are taken in start order; a module's span opens at the first kernel of its
       subtree and closes at the end of the last one before a kernel outside it.
    2. A module that runs again after another one's kernels gets a span for each stretch.
    3. A kernel of no known module sits directly in the run; times are microseconds from
       the run's start, all on one track.
    """
    start = run["ts"]
    inside = sorted((e for e in kernels if start <= e["ts"] <= start + run["dur"]), key=lambda e: (e["ts"], -e["dur"]))
    events = [_span("model_run", "run", 0, run["dur"], {})]
    open_spans: list[list] = []  # [tag, start, end], outermost first

    def close(keep: list[str]) -> None:
        while open_spans and open_spans[-1][0] not in keep:
            tag, begin, end = open_spans.pop()
            events.append(_span(tag.rsplit("/", 1)[-1], "module", begin, end - begin, {"module": tag}))

    for event in inside:
        kernel = event["name"][: -len(_KERNEL)]
        tag = kernel_tags.get(kernel)
        chain = list(reversed(ancestors(tag))) if tag else []
        begin, end = event["ts"] - start, event["ts"] - start + event["dur"]
        close(chain)
        for t in chain[len(open_spans) :]:
            open_spans.append([t, begin, end])
        for span in open_spans:
            span[2] = max(span[2], end)
        op = event.get("args", {}).get("op_name", "")
        events.append(_span(kernel, "kernel", begin, event["dur"], {"module": tag or "", "op_type": op}))
    close([])
    return events


def _span(name: str, category: str, ts: float, dur: float, args: dict) -> dict:
    return {"name": name, "cat": category, "ph": "X", "ts": ts, "dur": dur, "pid": 1, "tid": 1, "args": args}
