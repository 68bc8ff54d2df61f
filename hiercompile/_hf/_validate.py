"""Validation after export (``--validate``): ONNX Runtime against PyTorch, per file and over
a greedy decode that feeds each step's ``present.*`` back as ``past_key_values.*``.

Per file, the example inputs run in both and every output is compared. With a cache,
ONNX Runtime decodes from an empty past (the first step has a past of length 0), and
PyTorch runs the whole sequence at once, without a cache: the logits of every step must
agree, which checks the cache plumbing as well as the numbers.
"""

from __future__ import annotations

__all__ = ["Validation", "greedy_decode", "validate"]

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import torch
from torch import nn

from .._compat.torch import pytree
from .._errors import ValidationError
from .._ort import session
from ._generative import Component, entered
from ._tasks import PAST, Task

PAST_PREFIX, PRESENT_PREFIX = "past_key_values.", "present."


@dataclasses.dataclass
class Validation:
    """``diffs``: (file, output) -> max abs difference from PyTorch; ``atol``: the tolerance;
    ``tokens``: the greedy decode's tokens (with a cache), per batch row."""

    diffs: dict[tuple[str, str], float]
    atol: float
    tokens: list[list[int]] | None = None

    @property
    def worst(self) -> tuple[tuple[str, str], float]:
        return max(self.diffs.items(), key=lambda item: item[1])


def feeds_of(component: Component, wanted: set[str]) -> dict[str, np.ndarray]:
    """The component's example inputs by ONNX input name (cache tensors in torch's order), for
    the ``wanted`` names: an input no op reads was left out of the file."""
    tensors = {k: v for k, v in component.kwargs.items() if not isinstance(v, bool | None)}
    leaves = pytree.tree_leaves(list(tensors.values()))
    names = component.input_names or list(tensors)
    return {n: t.numpy().copy() for n, t in zip(names, leaves, strict=True) if n in wanted}


def _compare(model: nn.Module, component: Component, sess: ort.InferenceSession) -> dict[str, float]:
    feeds = feeds_of(component, {i.name for i in sess.get_inputs()})
    with torch.no_grad(), entered(model, component.forward):
        want = model(**copy.deepcopy(component.kwargs))  # the model updates a given cache in place
    leaves = [t for t in pytree.tree_leaves(dict(want)) if isinstance(t, torch.Tensor)]
    got = sess.run(None, feeds)
    names = [o.name for o in sess.get_outputs()]
    return {n: _diff(g, w.numpy()) for n, g, w in zip(names, got, leaves, strict=True)}


def _diff(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max()) if got.size else 0.0


def _zeros(arg: Any, batch: int) -> np.ndarray:
    """An empty past for a cache input: batch rows, length 0 on the past axis."""
    shape = [d if isinstance(d, int) else (batch if d == "batch_size" else 0) for d in arg.shape]
    return np.zeros(shape, dtype=np.float16 if "float16" in arg.type else np.float32)


def _step(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    wanted = {i.name for i in sess.get_inputs()}
    outputs = sess.run(None, {k: v for k, v in feeds.items() if k in wanted})
    return dict(zip((o.name for o in sess.get_outputs()), outputs, strict=True))


def _as_past(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {PAST_PREFIX + k.removeprefix(PRESENT_PREFIX): v for k, v in outputs.items() if k.startswith(PRESENT_PREFIX)}


def greedy_decode(
    sessions: dict[str, ort.InferenceSession], layout: str, inputs: dict[str, np.ndarray], steps: int, start: int = 0
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Greedy decoding in ONNX Runtime: (tokens ``[batch, steps]``, last-position logits per step).

    ``layout`` ``"decoder"``: ``inputs`` holds ``input_ids`` (the prompt), the model one file
    with a cache. ``"seq2seq"``: ``inputs`` are the encoder's, decoding starts from ``start``.
    """
    tokens, logits = [], []
    if layout == "decoder":
        sess = sessions["model"]
        ids = inputs["input_ids"]
        batch, length = ids.shape[0], 0
        state = {a.name: _zeros(a, batch) for a in sess.get_inputs() if a.name.startswith(PAST_PREFIX)}
        for _ in range(steps):
            new = ids.shape[1]
            feeds = {"input_ids": ids, "attention_mask": np.ones((batch, length + new), dtype=np.int64)}
            feeds["position_ids"] = np.broadcast_to(np.arange(length, length + new), (batch, new)).copy()
            out = _step(sess, {**feeds, **state})
            logits.append(out["logits"][:, -1])
            ids = out["logits"][:, -1].argmax(-1)[:, None].astype(np.int64)
            tokens.append(ids[:, 0])
            length += new
            state = _as_past(out)
        return np.stack(tokens, 1), logits
    hidden = _step(sessions["encoder_model"], inputs)["last_hidden_state"]
    batch = hidden.shape[0]
    context = {"encoder_hidden_states": hidden}
    if "attention_mask" in inputs:
        context["encoder_attention_mask"] = inputs["attention_mask"]
    ids = np.full((batch, 1), start, dtype=np.int64)
    state: dict[str, np.ndarray] = {}
    for k in range(steps):
        sess = sessions["decoder_model" if k == 0 else "decoder_with_past_model"]
        out = _step(sess, {"input_ids": ids, **context, **state})
        logits.append(out["logits"][:, -1])
        ids = out["logits"][:, -1].argmax(-1)[:, None].astype(np.int64)
        tokens.append(ids[:, 0])
        state = {**state, **_as_past(out)}  # the encoder half comes from the first step only
    return np.stack(tokens, 1), logits


def _reference(model: nn.Module, layout: str, inputs: dict[str, np.ndarray], tokens: np.ndarray, start: int):
    """PyTorch's logits for the same sequence at once, without a cache: the position of each step."""
    given = {k: torch.from_numpy(v) for k, v in inputs.items()}
    generated = torch.from_numpy(tokens[:, :-1])
    with torch.no_grad():
        if layout == "decoder":
            ids = torch.cat([given["input_ids"], generated], 1)
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
            return [logits[:, given["input_ids"].shape[1] - 1 + k] for k in range(tokens.shape[1])]
        decoder_ids = torch.cat([torch.full((tokens.shape[0], 1), start), generated], 1)
        logits = model(**given, decoder_input_ids=decoder_ids, use_cache=False).logits
        return [logits[:, k] for k in range(tokens.shape[1])]


def validate(
    model: nn.Module,
    task: Task,
    parts: list[Component],
    exported: dict[str, ir.Model | Path],
    *,
    atol: float = 1e-4,
    steps: int = 4,
) -> Validation:
    """Compare every file with PyTorch on its example inputs and, with a cache, over a greedy
    decode of ``steps`` tokens; a difference beyond ``atol`` is a :class:`ValidationError`.
    ``exported``: each file's model, in memory or written (its weights may be elsewhere)."""
    sessions = {name: session(m) for name, m in exported.items()}
    diffs = {}
    for component in parts:
        for output, diff in _compare(model, component, sessions[component.name]).items():
            diffs[(component.name, output)] = diff
    result = Validation(diffs, atol)
    if task.with_past:
        first = parts[0]
        inputs = feeds_of(first, {i.name for i in sessions[first.name].get_inputs()})
        inputs = {k: v for k, v in inputs.items() if not k.startswith(PAST_PREFIX)}
        if task.layout == "decoder":
            inputs = {"input_ids": inputs["input_ids"]}
        start = int(getattr(getattr(model, "config", None), "decoder_start_token_id", None) or 0)
        tokens, got = greedy_decode(sessions, task.layout, inputs, steps, start)
        want = _reference(model, task.layout, inputs, tokens, start)
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            diffs[("greedy decode", f"logits of step {k} ({PAST} {'0' if k == 0 else 'grown'})")] = _diff(g, w.numpy())
        result.tokens = tokens.tolist()
    (where, output), diff = result.worst
    if diff > atol:
        raise ValidationError(
            f"validate step: {where}'s output {output} differs from PyTorch by {diff:.2e}, more than --atol "
            f"{atol:g}; run `hiercompile verify` on the model to find the first module that diverges"
        )
    return result
