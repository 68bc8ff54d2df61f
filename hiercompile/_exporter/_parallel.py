"""Export the files of a task side by side: a sequence-to-sequence task with a cache writes three.

Each file is captured and lowered from the same loaded model, and each export is mostly
Python (torch's tracer), one core's work. With more than one core, the files after the
first are exported in forked processes, which inherit the loaded model and the lower
stage's tables, while this process exports the first; each sends back its result, the
ONNX model serialized. A tiny speech-recognition model's three files: 4.2 s one after
the other, about 2.5 s side by side on 2 cores.
"""

from __future__ import annotations

__all__ = ["export_parts", "side_by_side"]

import logging
import multiprocessing
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import onnx
import onnx_ir as ir
import torch
from torch import nn

from ._export import ExportResult, Progress

logger = logging.getLogger(__name__)

# weights above this are not sent back from a process (each file would hold a copy of them)
SEND_BYTES = 256 << 20

ExportOne = Callable[[Any, Progress | None], ExportResult]


def side_by_side(model: nn.Module, parts: Sequence[Any], streamed: bool) -> bool:
    """Whether ``parts`` are exported in processes of their own: more than one file, more
    than one core, processes that can be forked (POSIX), and weights in memory (not
    streamed from their files) of at most :data:`SEND_BYTES`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    size = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return (
        len(parts) > 1
        and cores > 1
        and not streamed
        and size <= SEND_BYTES
        and "fork" in multiprocessing.get_all_start_methods()
    )


def export_parts(
    parts: Sequence[Any],
    export_one: ExportOne,
    *,
    side: bool,
    progress: Progress | None = None,
    on_component: Callable[[str], None] | None = None,
) -> dict[str, ExportResult]:
    """``{part.name: export_one(part, progress)}`` for each part, in order.

    Rules:

    1. Without ``side``, the parts are exported one after the other, here.
    2. With it, each part but the first is exported in a forked process (one thread of
       torch's), and the first here meanwhile; a process sends back its result with the
       model serialized, and the warnings it raised, which are raised here again.
    3. An error in a process is raised here, once the first part is done.
    4. A process that ends without a result (killed, out of memory) has its part exported
       here, after the others.
    5. ``on_component`` and ``progress`` report each part in order: the first as it runs,
       the others with their steps' times once they are back.
    """
    if not side:
        results = {}
        for part in parts:
            if on_component:
                on_component(part.name)
            results[part.name] = export_one(part, progress)
        return results
    context = multiprocessing.get_context("fork")
    children = []
    try:
        for part in parts[1:]:
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(send, export_one, part), daemon=True)
            with warnings.catch_warnings():
                # Python 3.12+ warns of fork with other threads running: torch's idle
                # intra-op workers; the child runs on one thread of its own (rule 2)
                warnings.filterwarnings("ignore", message=r".*multi-threaded.*fork", category=DeprecationWarning)
                process.start()
            send.close()
            children.append((part, process, receive))
        if on_component:
            on_component(parts[0].name)
        results = {parts[0].name: export_one(parts[0], progress)}
        for part, process, receive in children:
            results[part.name] = _received(part, process, receive, export_one, progress, on_component)
        return results
    finally:
        for _, process, receive in children:
            receive.close()
            if process.is_alive():
                process.terminate()
            process.join()


def _child(send: Any, export_one: ExportOne, part: Any) -> None:
    torch.set_num_threads(1)  # as torch's DataLoader workers: the cores are shared
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = export_one(part, None)
            payload: tuple = ("result", _portable(result))
        except BaseException as e:
            payload = ("error", e)
    raised = [(w.message, w.category, w.filename, w.lineno) for w in caught]
    try:
        send.send((*payload, raised))
    except Exception:  # an error torch made that does not pickle: its text
        send.send(("error", RuntimeError(f"{type(payload[1]).__name__}: {payload[1]}"), raised))
    send.close()


def _received(
    part: Any,
    process: Any,
    receive: Any,
    export_one: ExportOne,
    progress: Progress | None,
    on_component: Callable[[str], None] | None,
) -> ExportResult:
    try:
        kind, value, raised = receive.recv()
    except EOFError:
        process.join()
        logger.info(
            "%s: its process ended (exit code %s) without a result; exporting it here", part.name, process.exitcode
        )
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
    value.model = ir.from_proto(onnx.ModelProto.FromString(value.model))
    return value


def _portable(result: ExportResult) -> ExportResult:
    """``result`` with its model as bytes, which pickle sends whole."""
    result.model = ir.to_proto(result.model).SerializeToString()
    return result
