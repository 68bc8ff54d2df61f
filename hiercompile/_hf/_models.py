"""Stage 0 (CLI): find the model a name stands for and make example inputs for it.

A name is a shipped preset (a configuration, built with random weights), a local
Hugging Face model directory (real weights), or a hub id. Nothing here knows a model
family: classes come from the configuration, inputs from ``forward``'s signature.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import warnings

import torch
from torch import nn

from .._errors import InputError, ModelLoadError, OptionWarning, first_line
from ._sources import DYNAMIC_AXES, ModelRef, hub_reachable, presets, resolve


@dataclasses.dataclass
class LoadedModel:
    model: nn.Module
    source: str
    random_weights: bool
    weights: str | None = None  # the folder its parameters' values are streamed from (they are on the meta device)


def _model_class(architecture: str) -> type:
    import transformers

    cls = getattr(transformers, architecture, None)
    if cls is None:
        raise ModelLoadError(f"transformers has no class {architecture!r}; upgrade transformers or fix the config")
    return cls


def _head(task: str | None, architecture: str | None) -> type:
    """The class to build: the task's auto class when a task is asked for, else the
    configuration's architecture (its own head), else ``AutoModel``."""
    import transformers

    if task is not None:
        from ._tasks import task_named

        return getattr(transformers, task_named(task).auto_class)
    return _model_class(architecture) if architecture else transformers.AutoModel


def from_preset(name: str, preset: dict, task: str | None = None) -> LoadedModel:
    import transformers

    settings = dict(preset["config"])
    config = transformers.AutoConfig.for_model(settings.pop("model_type"), **settings)
    torch.manual_seed(0)
    cls = _head(task, preset["architecture"])
    model = cls.from_config(config) if cls.__name__.startswith("Auto") else cls(config)
    return LoadedModel(model.eval(), f"preset {name}: {preset['description']}", random_weights=True)


def from_pretrained(
    name: str, local_files_only: bool = False, task: str | None = None, stream: bool = False
) -> LoadedModel:
    """Load config and weights with ``from_pretrained`` from a local directory, a cache or the hub;
    with ``stream``, build the model from a local directory's config with its parameters on the
    meta device, in the checkpoint's dtype, for its weights to be streamed from there."""
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(name, local_files_only=local_files_only)
    except (KeyError, ValueError) as e:  # a model_type this transformers does not know
        raise ModelLoadError(
            f"transformers {transformers.__version__} cannot read the configuration of {name!r}: {first_line(e)}; "
            "check config.json's model_type, or upgrade transformers"
        ) from e
    architectures = getattr(config, "architectures", None) or []
    cls = _head(task, architectures[0] if architectures else None)
    if stream:
        from .._exporter import empty_model

        dtype = getattr(config, "dtype", None) or torch.float32
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        build = cls.from_config if cls.__name__.startswith("Auto") else cls._from_config
        model = empty_model(build, config, dtype=dtype)
        source = f"{name} (weights streamed from its safetensors files, never loaded)"
        return LoadedModel(model.eval(), source, random_weights=False, weights=name)
    model = cls.from_pretrained(name, dtype="auto", local_files_only=local_files_only)
    return LoadedModel(model.eval(), f"{name} (weights from from_pretrained)", random_weights=False)


def load_model(ref: ModelRef | str, task: str | None = None, stream: bool = False) -> LoadedModel:
    """Build the model a name stands for (see :func:`hiercompile._hf._sources.resolve`), with the
    head ``task`` needs (None: the configuration's own architecture); ``stream``: a local
    directory's model with its parameters on the meta device (see :func:`from_pretrained`)."""
    ref = resolve(ref) if isinstance(ref, str) else ref
    if ref.kind == "preset":
        return from_preset(ref.name, presets()[ref.name], task)
    try:
        if ref.kind == "directory":
            return from_pretrained(ref.name, task=task, stream=stream)
        try:
            return from_pretrained(ref.name, local_files_only=True, task=task)  # the cache first: no round trip
        except (OSError, ValueError):
            if not hub_reachable():
                raise
            return from_pretrained(ref.name, task=task)
    except Exception as e:  # torch's, safetensors' and transformers' errors for a broken or foreign file
        if isinstance(e, ModelLoadError) or (ref.kind != "directory" and not isinstance(e, OSError | ValueError)):
            raise
        where = "the checkpoint folder" if ref.kind == "directory" else "the hub or the local cache"
        raise ModelLoadError(
            f"cannot load {ref.name!r} from {where}: {first_line(e)}; "
            + (
                "check that the folder holds the weights save_pretrained wrote"
                if ref.kind == "directory"
                else f"pass a preset ({', '.join(sorted(presets()))}) or a folder written by save_pretrained"
            )
        ) from e


def _size(config: object, name: str, default: int) -> int:
    """An integer setting of the config, or of the first sub-config that has it (``vision_config``)."""
    configs = [config, *(v for v in vars(config).values() if hasattr(v, "to_dict"))] if config is not None else []
    for candidate in configs:
        value = getattr(candidate, name, None)
        if isinstance(value, list | tuple) and value and isinstance(value[0], int):
            value = value[0]
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return default


def example_inputs(model: nn.Module, *, batch: int = 1, seq_len: int = 16) -> dict[str, torch.Tensor | bool]:
    """Example keyword inputs for ``model.forward``, from its signature and config.

    Token inputs (``*input_ids``) are random ids below the vocabulary size, masks are
    ones, token types (when the config has ``type_vocab_size``) zeros, ``pixel_values``
    are images of the config's size and channels, ``input_values`` raw audio long enough
    for ``seq_len`` frames of the config's strided convolutions,
    ``input_features`` are spectrograms of the config's mel bins; ``use_cache`` is off.
    """
    if batch < 1 or seq_len < 1:
        raise InputError(f"batch and seq-len must be positive, got {batch} and {seq_len}")
    params = inspect.signature(model.forward).parameters
    config = getattr(model, "config", None)
    generator = torch.Generator().manual_seed(0)
    main = getattr(model, "main_input_name", None)
    inputs: dict[str, torch.Tensor | bool] = {}
    for name in params:
        if name.endswith("input_ids"):
            vocab = _size(config, "vocab_size", default=1000)
            inputs[name] = torch.randint(0, min(vocab, 1000), (batch, seq_len), generator=generator)
        elif name.endswith("attention_mask") and name.removesuffix("attention_mask") + "input_ids" in inputs:
            inputs[name] = torch.ones(batch, seq_len, dtype=torch.long)
        elif name.endswith("token_type_ids") and _size(config, "type_vocab_size", default=0) > 0:
            inputs[name] = torch.zeros(batch, seq_len, dtype=torch.long)
        elif name == "pixel_values":
            size = _size(config, "image_size", default=224)
            channels = _size(config, "num_channels", default=3)
            inputs[name] = torch.randn(batch, channels, size, size, generator=generator)
        elif name == "input_values":  # raw audio: enough samples for seq_len frames of its feature encoder
            hop = math.prod(getattr(config, "conv_stride", None) or (320,))
            inputs[name] = torch.randn(batch, (seq_len + 1) * hop, generator=generator)
        elif name == "input_features":
            frames = 2 * _size(config, "max_source_positions", default=seq_len)
            inputs[name] = torch.randn(batch, _size(config, "num_mel_bins", default=80), frames, generator=generator)
        elif name == "use_cache":
            inputs[name] = False
    if main is not None and main not in inputs:
        raise InputError(
            f"cannot make an example for {type(model).__name__}'s input {main!r}; "
            "use the Python API, hiercompile.export(model, args, kwargs), with your own inputs"
        )
    return inputs


def dynamic_shapes_for(inputs: dict[str, object], axes: list[str]) -> dict[str, dict | None]:
    """``dynamic_shapes`` for torch.export naming each chosen axis: ``batch`` is dim 0 of every
    tensor, ``seq`` dim 1 of 2-D (token) tensors, ``height`` and ``width`` dims 2 and 3 of 4-D
    (image) tensors. Inputs of one rank share one ``Dim`` per axis (a text's tokens and its
    mask); the batch of inputs of another rank is a size of its own, ``batch_<input>`` (a
    model's images apart from its texts). The ONNX inputs' dims carry these names."""
    unknown = sorted(set(axes) - set(DYNAMIC_AXES))
    if unknown:
        raise InputError(f"unknown dynamic axes {unknown}; choose from {', '.join(DYNAMIC_AXES)}")
    where = {"batch": (None, 0), "seq": (2, 1), "height": (4, 2), "width": (4, 3)}  # (tensor rank or any, dim)
    dims: dict[tuple[str, int], torch.export.Dim] = {}
    shapes: dict[str, dict | None] = {}
    used = set()
    for name, value in inputs.items():
        if not isinstance(value, torch.Tensor):
            shapes[name] = None
            continue
        chosen = {}
        for axis in axes:
            rank, dim = where[axis]
            if rank is None or value.dim() == rank:
                if (axis, value.dim()) not in dims:
                    first = not any(a == axis for a, _ in dims)
                    dims[axis, value.dim()] = torch.export.Dim(axis if first else f"{axis}_{name}")
                chosen[dim] = dims[axis, value.dim()]
                used.add(axis)
        shapes[name] = chosen or None
    unused = [axis for axis in axes if axis not in used]
    if unused:
        warnings.warn(
            f"no input has the axis {', '.join(unused)} (batch: dim 0 of every tensor; seq: dim 1 of token "
            "inputs; height, width: dims 2 and 3 of image inputs); it stays as the example's",
            OptionWarning,
            stacklevel=2,
        )
    return shapes
