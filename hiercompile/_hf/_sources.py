"""What a model name on the command line points to, told apart without loading any model.

A name is a shipped preset (a configuration, built with random weights), a local
checkpoint folder (``config.json`` and weights, as ``save_pretrained`` writes them) or
a hub id. Everything here reads JSON only, so a wrong name, a folder without a
configuration or a sequence longer than the model allows fails at once, before torch
is loaded or anything is built.
"""

from __future__ import annotations

__all__ = ["DYNAMIC_AXES", "ModelRef", "check_sizes", "hub_reachable", "position_limit", "presets", "resolve"]

import dataclasses
import json
import os
import socket
import urllib.parse
from importlib import resources
from pathlib import Path

from .._errors import InputError, ModelLoadError
from ._tasks import CACHE_POSITIONS

CONFIG_FILE = "config.json"
DYNAMIC_AXES = ("batch", "seq", "height", "width")  # the axes ``export --dynamic`` can make dynamic
# configuration keys that bound a token sequence's length (position embeddings)
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_target_positions")


def presets() -> dict[str, dict]:
    """Shipped presets: name -> ``{"description", "architecture", "config"}``."""
    folder = resources.files(__package__) / "presets"
    return {
        entry.name.removesuffix(".json"): json.loads(entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    }


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """A model name, resolved: ``kind`` is ``"preset"``, ``"directory"`` or ``"hub"``; ``config``
    the configuration as JSON when it is known before loading."""

    name: str
    kind: str
    config: dict | None


def hub_reachable() -> bool:
    """Whether the hub's host resolves (and offline mode is off): offline, the hub client
    would otherwise retry for half a minute before failing."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or ""
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def _cached_config(name: str) -> dict | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        path = try_to_load_from_cache(name, CONFIG_FILE)
    except ValueError:  # not a valid repository id
        return None
    return json.loads(Path(path).read_text(encoding="utf-8")) if isinstance(path, str) else None


def read_config(path: Path) -> dict:
    """A checkpoint's ``config.json``: a JSON object with a ``model_type``, else :class:`ModelLoadError`."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path} is not JSON text ({e}); write it again with save_pretrained") from e
    if not isinstance(config, dict):
        raise ModelLoadError(
            f"{path} holds a JSON {type(config).__name__}, not an object of settings; write it with save_pretrained"
        )
    if not isinstance(config.get("model_type"), str) or not config["model_type"]:
        raise ModelLoadError(
            f"{path} names no model_type, which says which transformers model to build; "
            "add the model type transformers knows the model by, or write the file with save_pretrained"
        )
    return config


def resolve(name: str) -> ModelRef:
    """The model ``name`` stands for: a preset, a local folder, or a hub id (in that order).

    Raises :class:`ModelLoadError` for a folder without ``config.json``, a file, and a
    name that is neither a preset nor a folder while the hub is out of reach and its
    cache does not hold it.
    """
    available = presets()
    if name in available:
        return ModelRef(name, "preset", available[name]["config"])
    path = Path(name)
    if path.is_dir():
        config = path / CONFIG_FILE
        if not config.is_file():
            raise ModelLoadError(
                f"{path} has no {CONFIG_FILE}: pass a folder written by save_pretrained (config.json and weights) "
                f"or a preset ({', '.join(sorted(available))})"
            )
        return ModelRef(name, "directory", read_config(config))
    if path.exists():
        raise ModelLoadError(f"{path} is a file; pass a preset, a checkpoint folder or a hub id")
    cached = _cached_config(name)
    if cached is None and not hub_reachable():
        raise ModelLoadError(
            f"{name!r} is not a preset ({', '.join(sorted(available))}) nor a folder, and the hub is out of reach "
            "with nothing cached for it; offline, save the model with save_pretrained and pass that folder"
        )
    return ModelRef(name, "hub", cached)


def position_limit(config: dict | None) -> int | None:
    """The longest token sequence a configuration's position embeddings allow (also in
    sub-configurations such as ``text_config``), or None when it sets none."""
    if not config:
        return None
    limits = [config[k] for k in _POSITION_KEYS if isinstance(config.get(k), int)]
    limits += [limit for v in config.values() if isinstance(v, dict) and (limit := position_limit(v)) is not None]
    return min(limits) if limits else None


def check_sizes(batch: int, seq_len: int, config: dict | None, extra: int | None = 0) -> None:
    """The example sizes, checked against the configuration before anything is built; ``extra``:
    the positions the examples use beyond ``seq_len`` (a cache's past and the new tokens), None
    while the task is not known yet (the limit alone is checked, and the message says what a
    cache needs)."""
    if batch < 1 or seq_len < 1:
        raise InputError(f"--batch and --seq-len must be at least 1, got {batch} and {seq_len}")
    limit = position_limit(config)
    if limit is None or seq_len + (extra or 0) <= limit:
        return
    if extra is None:
        largest = f"{limit} or less ({limit - CACHE_POSITIONS} or less for a task with a cache)"
    else:
        largest = f"{limit - extra} or less"
    needs = f" (with the cache, the examples run {seq_len + extra} positions: past + new tokens)" if extra else ""
    raise InputError(
        f"--seq-len {seq_len} is beyond the model's position limit of {limit}{needs}; choose --seq-len {largest}"
    )
