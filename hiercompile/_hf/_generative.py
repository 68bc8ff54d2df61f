"""Stage 0 (generation): the files a task splits a model into, with example inputs and a cache.

A decoder with its cache is one model: ``input_ids``, ``attention_mask``,
``position_ids`` (when ``forward`` takes them) and ``past_key_values.N.key/value`` in,
``logits`` and ``present.N.key/value`` out. A sequence-to-sequence model is an encoder,
a decoder for the first step (no past) and a decoder with past, optimum's layout. Every
file is an export of the *whole* model entered at another point (its encoder, or its
forward with the encoder's output given), so a tag names the same module in every file,
and the cache plumbing adds no module.

Nothing here knows a model family. The cache is whatever the model returns with
``use_cache=True``; its tensors are named from their place in the cache object
(``layers.3.keys`` -> ``3.key``; an encoder-decoder cache's two halves -> ``3.decoder.key``
and ``3.encoder.key``), and each dimension's name from how it changes between two runs
that differ in batch size, past length and encoder length.
"""

from __future__ import annotations

__all__ = ["Component", "components"]

import contextlib
import dataclasses
import inspect
import re
import types
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from .._compat.torch import fake_tensor_mode, pytree
from .._compat.transformers import register_caches
from .._errors import InputError
from .._exporter import meta_parameters
from ._models import example_inputs
from ._tasks import BATCH, ENCODER_SEQUENCE, NEW_TOKENS, PAST, SEQUENCE, TOTAL, Task


@dataclasses.dataclass
class Component:
    """One file of a task: ``name`` (``model``, ``encoder_model``, ``decoder_model``,
    ``decoder_with_past_model``), the forward it enters the model by (None: the model's
    own), its example keyword inputs, their dynamic shapes and the ONNX input names."""

    name: str
    forward: Callable | None
    kwargs: dict[str, Any]
    dynamic_shapes: dict[str, Any] | None
    input_names: list[str] | None


@contextlib.contextmanager
def entered(model: nn.Module, forward: Callable | None) -> Iterator[None]:
    """The block runs with ``model.forward`` replaced by ``forward`` (an instance attribute:
    the class and every other instance are untouched)."""
    if forward is None:
        yield
        return
    model.forward = forward
    try:
        yield
    finally:
        del model.forward


def _with_signature(function: Callable, names: list[str]) -> Callable:
    """``function(**kwargs)`` with a signature naming ``names``: torch.export reads the
    parameter names to match ``dynamic_shapes`` and to name the inputs."""

    def call(**inputs: Any) -> Any:
        return function(**inputs)

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    call.__signature__ = inspect.Signature([inspect.Parameter(n, kind) for n in names])
    return call


# the cache's argument and output: ``cache`` from transformers 5.25, ``past_key_values`` before it,
# ``cache_params`` for state-space models; the ONNX inputs keep optimum's ``past_key_values.*``
_CACHE_NAMES = ("cache", "past_key_values", "cache_params")


def _cache_argument(model: nn.Module) -> str:
    """The name ``model.forward`` takes its cache by."""
    parameters = inspect.signature(model.forward).parameters
    return next((name for name in _CACHE_NAMES if name in parameters), "past_key_values")


def _cache_of(output: Any) -> Any:
    """The cache a forward returned, under whichever name it has."""
    return next((found for name in _CACHE_NAMES if (found := getattr(output, name, None)) is not None), None)


def _paths(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(attribute path, tensor) for every tensor held in ``obj``'s attributes, lists and dicts."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, list | tuple):
        for k, item in enumerate(obj):
            yield from _paths(item, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, dict):
        for k, item in obj.items():
            yield from _paths(item, f"{prefix}.{k}" if prefix else str(k))
    elif hasattr(obj, "__dict__") and not isinstance(obj, type | nn.Module):
        for k, item in vars(obj).items():
            yield from _paths(item, f"{prefix}.{k}" if prefix else k)


# where transformers' caches keep their tensors: layers.N.keys, in one of two caches for two halves
_CACHE_PATH = re.compile(r"^(?:(self_attention_cache|cross_attention_cache)\.)?layers\.(\d+)\.(keys|values)$")
_HALF = types.MappingProxyType({"self_attention_cache": ".decoder", "cross_attention_cache": ".encoder", None: ""})


def cache_names(cache: Any) -> list[str]:
    """Names of the cache's tensors in the order torch flattens it: ``N.key`` / ``N.value``,
    ``N.decoder.key`` / ``N.encoder.key`` for an encoder-decoder cache, else the path."""
    by_id = {id(t): path for path, t in _paths(cache)}
    names = []
    for leaf in pytree.tree_leaves(cache):
        path = by_id.get(id(leaf), str(len(names)))
        found = _CACHE_PATH.match(path)
        names.append(f"{found.group(2)}{_HALF[found.group(1)]}.{found.group(3)[:-1]}" if found else path)
    return names


def _cache_dims(caches: list[Any], sizes: list[dict[str, int]]) -> list[dict[int, str]]:
    """Each cache tensor's dynamic dims: a dim whose size follows one of the quantities that
    differ between the runs (batch, past length, encoder length) gets that quantity's name."""
    leaves = [pytree.tree_leaves(cache) for cache in caches]
    dims = []
    for tensors in zip(*leaves, strict=True):
        named = {}
        for d in range(tensors[0].dim()):
            for quantity in sizes[0]:
                if all(t.shape[d] == s[quantity] for t, s in zip(tensors, sizes, strict=True)):
                    named[d] = quantity
                    break
        dims.append(named)
    return dims


def _tokens(model: nn.Module, batch: int, length: int, seed: int) -> torch.Tensor:
    vocab = getattr(getattr(model, "config", None), "vocab_size", 1000) or 1000
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, min(vocab, 1000), (batch, length), generator=generator)


def _eager(model: nn.Module, call: Callable[[], Any]) -> Any:
    """``call()`` (a run of ``model``) without gradients. A model whose parameters are on the
    meta device runs on fake tensors and the tensors it returns come back as zeros: only
    the shapes of a cache or of an encoder's output matter to example inputs."""
    with torch.no_grad():
        if not meta_parameters(model):
            return call()
        with fake_tensor_mode(allow_non_fake_inputs=True):
            output = call()
    return pytree.tree_map_only(torch.Tensor, lambda t: torch.zeros(t.shape, dtype=t.dtype), output)


def _past_of(model: nn.Module, kwargs: dict[str, Any]) -> Any:
    cache = _eager(model, lambda: _cache_of(model(**kwargs, use_cache=True)))
    if cache is None:
        raise InputError(
            f"{type(model).__name__} returned no cache with use_cache=True; "
            "export it without the cache (the task without -with-past)"
        )
    return cache


def components(model: nn.Module, task: Task, *, batch: int = 2, seq_len: int = 4) -> list[Component]:
    """The files ``task`` makes of ``model``, each with example inputs two or more wide on
    every dynamic axis (torch.export specializes sizes 0 and 1)."""
    if task.layout == "single":
        return [Component("model", None, example_inputs(model, batch=batch, seq_len=seq_len), None, None)]
    batch, seq_len = max(batch, 2), max(seq_len, 2)
    if task.layout == "decoder":
        return [_decoder(model, batch, seq_len) if task.with_past else _decoder_without_past(model, batch, seq_len)]
    return _seq2seq(model, task, batch, seq_len)


def _decoder_without_past(model: nn.Module, batch: int, seq_len: int) -> Component:
    kwargs = example_inputs(model, batch=batch, seq_len=seq_len)
    shapes = {k: ({0: BATCH, 1: SEQUENCE} if isinstance(v, torch.Tensor) else None) for k, v in kwargs.items()}
    return Component("model", None, kwargs, shapes, None)


def _decoder_inputs(model: nn.Module, batch: int, past: int, new: int, seed: int) -> dict[str, Any]:
    """input_ids of ``new`` tokens after a cache of ``past``, with their mask and positions."""
    takes = inspect.signature(model.forward).parameters
    inputs: dict[str, Any] = {"input_ids": _tokens(model, batch, new, seed)}
    if "attention_mask" in takes:
        inputs["attention_mask"] = torch.ones(batch, past + new, dtype=torch.long)
    if "position_ids" in takes:
        inputs["position_ids"] = torch.arange(past, past + new).expand(batch, new).contiguous()
    prefix = {"input_ids": _tokens(model, batch, past, seed + 1)}
    if "attention_mask" in takes:
        prefix["attention_mask"] = torch.ones(batch, past, dtype=torch.long)
    inputs["past_key_values"] = _past_of(model, prefix)
    return inputs


def _decoder(model: nn.Module, batch: int, seq_len: int) -> Component:
    register_caches(model)
    kwargs = _decoder_inputs(model, batch, seq_len, NEW_TOKENS, seed=0)
    other = _decoder_inputs(model, batch + 1, seq_len + 1, NEW_TOKENS, seed=0)
    sizes = [{BATCH: batch, PAST: seq_len}, {BATCH: batch + 1, PAST: seq_len + 1}]
    cache = kwargs["past_key_values"]
    dims = _cache_dims([cache, other["past_key_values"]], sizes)
    names = cache_names(cache)
    shapes: dict[str, Any] = {"input_ids": {0: BATCH, 1: SEQUENCE}}
    if "attention_mask" in kwargs:
        shapes["attention_mask"] = {0: BATCH, 1: TOTAL}
    if "position_ids" in kwargs:
        shapes["position_ids"] = {0: BATCH, 1: SEQUENCE}
    table: dict[str, torch.export.Dim] = {}
    shapes["past_key_values"] = [_dims(d, table) for d in dims]
    original = model.forward
    parameters = list(kwargs)

    argument = _cache_argument(model)

    def forward(**inputs: Any) -> dict[str, torch.Tensor]:
        given = _leaves(inputs["past_key_values"])  # before the model updates the cache in place
        inputs[argument] = inputs.pop("past_key_values")
        output = original(**inputs, use_cache=True)
        return {"logits": output.logits, **_present(_cache_of(output), given)}

    input_names = [*parameters[:-1], *(f"past_key_values.{n}" for n in names)]
    return Component("model", _with_signature(forward, parameters), kwargs, shapes, input_names)


def _dims(named: dict[int, str], table: dict[str, torch.export.Dim]) -> dict[int, torch.export.Dim]:
    """One ``Dim`` per name, shared through ``table`` (a past length may be 0: the first step)."""
    return {d: table.setdefault(n, torch.export.Dim(n, min=0 if n == PAST else 1)) for d, n in named.items()}


def _leaves(cache: Any) -> list[torch.Tensor]:
    return pytree.tree_leaves(cache) if cache is not None else []


def _present(cache: Any, given: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The cache's tensors as ``present.*`` outputs, leaving out those passed through
    unchanged from ``given`` (an encoder-decoder cache's encoder half after the first
    step). ``given`` holds the tensors themselves, so no id is reused while we compare."""
    unchanged = {id(t) for t in given}
    names = cache_names(cache)
    return {
        f"present.{name}": tensor
        for name, tensor in zip(names, pytree.tree_leaves(cache), strict=True)
        if id(tensor) not in unchanged
    }


def _seq2seq(model: nn.Module, task: Task, batch: int, seq_len: int) -> list[Component]:
    """Encoder, decoder (first step: no past) and, with past, the decoder that takes one."""
    register_caches(model)
    encoder = model.get_encoder()
    encoder_kwargs = _tensors(example_inputs(encoder, batch=batch, seq_len=seq_len))

    def encode(**inputs: Any) -> dict[str, torch.Tensor]:
        return {"last_hidden_state": encoder(**inputs).last_hidden_state}

    encoder_names = list(encoder_kwargs)
    encoder_shapes = {
        k: {0: BATCH, 1: ENCODER_SEQUENCE} if v.dim() == 2 else {0: BATCH} for k, v in encoder_kwargs.items()
    }
    found = [Component("encoder_model", _with_signature(encode, encoder_names), encoder_kwargs, encoder_shapes, None)]
    masked = "attention_mask" in encoder_kwargs
    original = model.forward
    argument = _cache_argument(model)

    def decode(**inputs: Any) -> dict[str, torch.Tensor]:
        cache = inputs.get("past_key_values")
        given = _leaves(cache)
        output = original(
            decoder_input_ids=inputs["input_ids"],
            encoder_outputs=(inputs["encoder_hidden_states"],),
            attention_mask=inputs.get("encoder_attention_mask"),
            use_cache=True,
            **{argument: cache},
        )
        return {"logits": output.logits, **_present(_cache_of(output), given)}

    first = _decoder_step(model, encoder, encoder_kwargs, batch, 0, seq_len, masked)
    shapes = _step_shapes(first, masked)
    found.append(Component("decoder_model", _with_signature(decode, list(first)), first, shapes, None))
    if task.with_past:
        step = _decoder_step(model, encoder, encoder_kwargs, batch, seq_len, NEW_TOKENS, masked)
        other = _decoder_step(
            model,
            encoder,
            _tensors(example_inputs(encoder, batch=batch + 1, seq_len=seq_len + 2)),
            batch + 1,
            seq_len + 1,
            NEW_TOKENS,
            masked,
        )
        encoder_length = step["encoder_hidden_states"].shape[1]
        sizes = [
            {BATCH: batch, PAST: seq_len, ENCODER_SEQUENCE: encoder_length},
            {BATCH: batch + 1, PAST: seq_len + 1, ENCODER_SEQUENCE: other["encoder_hidden_states"].shape[1]},
        ]
        if sizes[0][ENCODER_SEQUENCE] == sizes[1][ENCODER_SEQUENCE]:  # fixed by the model (audio frames)
            for size in sizes:
                del size[ENCODER_SEQUENCE]
        table: dict[str, torch.export.Dim] = {}
        dims = _cache_dims([step["past_key_values"], other["past_key_values"]], sizes)
        shapes = {**_step_shapes(step, masked), "past_key_values": [_dims(d, table) for d in dims]}
        names = [*list(step)[:-1], *(f"past_key_values.{n}" for n in cache_names(step["past_key_values"]))]
        found.append(Component("decoder_with_past_model", _with_signature(decode, list(step)), step, shapes, names))
    return found


def _tensors(kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}


def _decoder_step(
    model: nn.Module,
    encoder: nn.Module,
    encoder_kwargs: dict[str, torch.Tensor],
    batch: int,
    past: int,
    new: int,
    masked: bool,
) -> dict[str, Any]:
    """A decoder step's inputs: ``new`` tokens after ``past`` ones (a cache of them when
    ``past``), the encoder's output for ``encoder_kwargs`` and its mask."""
    hidden = _eager(model, lambda: encoder(**encoder_kwargs).last_hidden_state)
    inputs: dict[str, Any] = {"input_ids": _tokens(model, batch, new, seed=0), "encoder_hidden_states": hidden}
    if masked:
        inputs["encoder_attention_mask"] = encoder_kwargs["attention_mask"]
    if past:
        inputs["past_key_values"] = _eager(
            model,
            lambda: _cache_of(
                model(
                    decoder_input_ids=_tokens(model, batch, past, seed=1),
                    encoder_outputs=(hidden,),
                    attention_mask=inputs.get("encoder_attention_mask"),
                    use_cache=True,
                )
            ),
        )
    return inputs


def _step_shapes(inputs: dict[str, Any], masked: bool) -> dict[str, Any]:
    shapes: dict[str, Any] = {
        "input_ids": {0: BATCH, 1: SEQUENCE},
        "encoder_hidden_states": {0: BATCH, 1: ENCODER_SEQUENCE},
    }
    if masked:
        shapes["encoder_attention_mask"] = {0: BATCH, 1: ENCODER_SEQUENCE}
    return shapes
