"""Export the files of a task side by side, on request: a sequence-to-sequence task with a cache writes three.

Each export is mostly Python (torch's tracer), one core's work. With ``jobs`` above one,
the files after the first are exported in new processes (spawned: each imports the
package and loads the model itself; nothing is forked from this process, whose thread
pools are running), while this process exports the first. Each sends back its result,
the ONNX model serialized. A spawned process pays its imports and the model's loading,
so this pays off for models whose export takes longer than that.
"""

from __future__ import annotations

__all__ = ["SEND_BYTES", "export_parts"]

import concurrent.futures
import logging
import multiprocessing
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import onnx_ir as ir
import torch

from .._exporter import ExportResult, Progress
from .._io import model_from_bytes

logger = logging.getLogger(__name__)

# weights above this are not sent back from a process (each file would hold a copy of them)
SEND_BYTES = 256 << 20

ExportOne = Callable[[Any, Progress | None], ExportResult]
Remote = Callable[[Any], tuple[Callable[..., ExportResult], tuple]]


def export_parts(
    parts: Sequence[Any],
    export_one: ExportOne,
    *,
    jobs: int = 1,
    remote: Remote | None = None,
    progress: Progress | None = None,
    on_component: Callable[[str], None] | None = None,
) -> dict[str, ExportResult]:
    """``{part.name: export_one(part, progress)}`` for each part, in order.

    Rules:

    1. With ``jobs`` 1 (or one part, or no ``remote``), the parts are exported one after
       the other, here.
    2. Otherwise each part but the first is exported in a spawned process, ``jobs - 1`` at
       a time, while this process exports the first: the process runs the function and
       arguments ``remote(part)`` gives (both must pickle) on one thread of torch's, and
       sends back its result with the model serialized and the warnings it raised, which
       are raised here again.
    3. An error in a process is raised here, once the first part is done.
    4. A process that ends without a result (killed, out of memory) has its part exported
       here, after the others.
    5. ``on_component`` and ``progress`` report each part in order: the first as it runs,
       the others with their steps' times once they are back.
    """
    if jobs <= 1 or len(parts) <= 1 or remote is None:
        results = {}
        for part in parts:
            if on_component:
                on_component(part.name)
            results[part.name] = export_one(part, progress)
        return results
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(min(jobs - 1, len(parts) - 1), mp_context=context) as pool:
        futures = [(part, pool.submit(_in_process, *remote(part))) for part in parts[1:]]
        if on_component:
            on_component(parts[0].name)
        results = {parts[0].name: export_one(parts[0], progress)}
        for part, future in futures:
            results[part.name] = _received(part, future, export_one, progress, on_component)
    return results


def _in_process(function: Callable[..., ExportResult], args: tuple) -> tuple:
    torch.set_num_threads(1)  # as torch's DataLoader workers: the cores are shared
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = function(*args)
            payload: tuple = ("result", _portable(result))
        except Exception as e:
            payload = ("error", e)
    raised = [(w.message, w.category, w.filename, w.lineno) for w in caught]
    try:  # an error torch made may not pickle: its text then
        multiprocessing.reduction.ForkingPickler.dumps(payload)
    except Exception:
        payload = ("error", RuntimeError(f"{type(payload[1]).__name__}: {payload[1]}"))
    return (*payload, raised)


def _received(
    part: Any,
    future: concurrent.futures.Future,
    export_one: ExportOne,
    progress: Progress | None,
    on_component: Callable[[str], None] | None,
) -> ExportResult:
    try:
        kind, value, raised = future.result()
    except concurrent.futures.process.BrokenProcessPool:
        logger.info("%s: its process ended without a result; exporting it here", part.name)
        if on_component:
            on_component(part.name)
        return export_one(part, progress)
    for message, category, filename, lineno in raised:
        warnings.warn_explicit(message, category, filename, lineno)
    if kind == "error":
        raise value
    if on_component:
        on_component(part.name)
    for step, seconds in value.timings.items():
        if progress:
            progress(step, None)
            progress(step, seconds)
    value.model = model_from_bytes(value.model)
    return value


def _portable(result: ExportResult) -> ExportResult:
    """``result`` with its model as bytes, which pickle sends whole."""
    result.model = ir.to_proto(result.model).SerializeToString()
    return result
