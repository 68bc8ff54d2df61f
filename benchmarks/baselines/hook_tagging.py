"""The hook-based tagging the design notes started from, implemented as well as it can be.

Forward pre/post hooks on every module keep a module stack while the TorchScript
exporter (``torch.onnx.export(..., dynamo=False)``) traces the model. Each ONNX node
is then mapped to a module:

1. by its scope name (the TorchScript exporter names nodes ``/encoder/layer.0/.../MatMul``),
   if the hooks saw that module run;
2. else by a parameter it consumes (``encoder.layer.0.output.dense.weight`` -> that module);
3. else by the module of the node that produced its first tagged input (its "parent");
4. else the root (the "root fallback").

The tag is hiercompile's tag (``hiercompile.ModuleHierarchy``) of the innermost kept module
on the matched path, and the result is written in hiercompile's format, so the same
tools (``check_spec.py``, ``hiercompile.verify``) can judge both approaches.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import json
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from hiercompile import ModuleHierarchy, __version__
from hiercompile._tools._verify import _tensors

STRATEGIES = ("scope", "parameter", "parent", "root")


@dataclasses.dataclass
class HookResult:
    model: onnx.ModelProto
    strategy: collections.Counter  # how many nodes each strategy tagged


class _Positional(nn.Module):
    """Feeds named tensors to the model and returns a tuple, as the TorchScript tracer needs."""

    def __init__(self, model: nn.Module, names: list[str], extra: dict) -> None:
        super().__init__()
        self.model = model
        self.names = names
        self.extra = extra

    def forward(self, *tensors):
        return tuple(_tensors(self.model(**dict(zip(self.names, tensors, strict=True)), **self.extra)))


def _scope_path(node_name: str) -> str | None:
    """``/model/encoder/layer.0/attention/MatMul`` -> ``encoder.layer.0.attention`` (without the wrapper)."""
    if not node_name.startswith("/") or node_name.count("/") < 2:
        return None
    scope = node_name.rsplit("/", 1)[0].strip("/").split("/")
    if scope[0] != "model":
        return None
    return ".".join(scope[1:])


def hook_export(model: nn.Module, kwargs: dict, path: Path) -> HookResult:
    """Export ``model`` with TorchScript and tag it the hook-based way; write the result to ``path``."""
    tensors = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    extra = {k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)}
    executed: set[str] = set()
    stack: list[str] = []
    names = {m: n for n, m in model.named_modules()}
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(lambda m, _: stack.append(names[m])))
        handles.append(module.register_forward_hook(lambda m, _i, _o: executed.add(stack.pop())))
    wrapper = _Positional(model, list(tensors), extra).eval()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, tuple(tensors.values()), str(path), dynamo=False, input_names=list(tensors), opset_version=18
            )
    finally:
        for handle in handles:
            handle.remove()
    proto = onnx.load(str(path))
    hierarchy = ModuleHierarchy(model)
    modules = dict(model.named_modules())
    params = {name.removeprefix("model."): name for name, _ in wrapper.named_parameters()}

    def tag_of_path(path: str) -> str:
        parts = path.split(".") if path else []
        prefixes = ["", *(".".join(parts[: i + 1]) for i in range(len(parts)))]
        return hierarchy.tag_of_stack([p for p in prefixes if p in modules])

    producer_tag: dict[str, str] = {}
    strategy: collections.Counter = collections.Counter()
    tags: dict[int, str] = {}
    for index, node in enumerate(proto.graph.node):
        if node.op_type == "Constant":
            continue
        scope = _scope_path(node.name)
        initializer_inputs = [i.removeprefix("model.") for i in node.input if i.removeprefix("model.") in params]
        parents = [producer_tag[i] for i in node.input if i in producer_tag]
        if scope is not None and scope in modules and (scope in executed or scope == ""):
            tag, how = tag_of_path(scope), "scope"
        elif initializer_inputs:
            tag, how = tag_of_path(initializer_inputs[0].rsplit(".", 1)[0]), "parameter"
        elif parents:
            tag, how = parents[0], "parent"
        else:
            tag, how = hierarchy.root.tag, "root"
        tags[index] = tag
        strategy[how] += 1
        for output in node.output:
            producer_tag[output] = tag
    _write_spec_metadata(proto, hierarchy, tags)
    onnx.save(proto, str(path))
    return HookResult(proto, strategy)


def _write_spec_metadata(proto: onnx.ModelProto, hierarchy: ModuleHierarchy, tags: dict[int, str]) -> None:
    consumers: dict[str, set[str]] = collections.defaultdict(set)
    for index, node in enumerate(proto.graph.node):
        if index in tags:
            entry = node.metadata_props.add()
            entry.key, entry.value = "hiercompile.tag", tags[index]
            for name in node.input:
                consumers[name].add(tags[index])
    for initializer in proto.graph.initializer:
        entry = initializer.metadata_props.add()
        entry.key = "hiercompile.tags"
        entry.value = json.dumps(sorted(consumers.get(initializer.name) or {hierarchy.root.tag}))
    meta = {info.tag: {"class": info.qualified_class, "module": info.path, "parent": info.parent} for info in hierarchy}
    for key, value in (
        ("hiercompile.hierarchy", json.dumps(meta, sort_keys=True)),
        ("hiercompile.version", __version__),
    ):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
