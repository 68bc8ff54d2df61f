"""The lower stage's table of ONNX translations: torch's own, built once per process.

``torch.onnx.export`` builds its table (``ONNXRegistry.from_torchlib``) at every call,
and infers the signature of each of its ~500 translations, though a model uses a few
dozen. Here the table is built once per process (and count of registered ops), and a
translation's signature is inferred, as torch infers it, when the translation is first
looked up. onnxscript's translations are imported as onnxscript makes them.
"""

from __future__ import annotations

__all__ = ["Tables", "new_registry", "registered_ops", "torchlib_tables"]

import dataclasses
import functools
import types
from collections.abc import Callable, Mapping

import torch
from torch.onnx._internal.exporter import _registration


class _Registry(_registration.ONNXRegistry):
    """torch's table, each translation's signature inferred, as torch infers it, when the
    translation is first looked up rather than when it is registered."""

    def __init__(self) -> None:
        super().__init__()
        self._unsigned: set[int] = set()  # ids of the entries whose signature is still to infer

    def add(self, target: torch._ops.OpOverload, function: object, is_complex: bool) -> None:
        meta = _registration.OnnxDecompMeta(
            onnx_function=function,
            fx_target=target,
            signature=None,
            is_custom=False,
            is_complex=is_complex,
            skip_signature_inference=True,
        )
        self._unsigned.add(id(meta))
        self._register(target, meta)

    def get_decomps(self, target: _registration.TorchOp) -> list[_registration.OnnxDecompMeta]:
        metas = super().get_decomps(target)
        for meta in metas:
            if id(meta) in self._unsigned:
                self._unsigned.discard(id(meta))
                meta.skip_signature_inference = False
                meta.__post_init__()  # torch's own inference
        return metas


def registered_ops() -> int:
    """How many ops the dispatcher has: torch's tables hold those loaded so far (a library
    imported later, ``quantized_decomposed``, registers its ops and their translations).
    Which op namespaces Python has looked at does not count: building the tables looks at
    more of them."""
    return len(torch._C._dispatch_get_all_op_names())


@dataclasses.dataclass(frozen=True)
class Tables:
    """A translation table and what torch's exporter derives from it: the decompositions it
    runs before translating (every op the table lacks) and the ops the table translates."""

    registry: _registration.ONNXRegistry
    decompositions: Mapping[torch._ops.OperatorBase, Callable]
    translated: frozenset

    @classmethod
    def of(cls, registry: _registration.ONNXRegistry) -> Tables:
        from torch.onnx._internal.exporter import _decomp

        translated = frozenset(_decomp.get_onnx_implemented_overloads(registry))
        table = _decomp.create_onnx_friendly_decomposition_table(set(translated))
        return cls(registry, types.MappingProxyType(table), translated)


def torchlib_tables(opset: int) -> Tables:
    """torch's tables for ``opset``, built once per process and count of :func:`registered_ops`:
    ``torch.onnx.export`` builds them at every call (about 0.4 s), which each file of a task,
    each graph of the compile backend and each export in a loop would pay again."""
    return _torchlib_tables(opset, registered_ops())


@functools.cache
def _torchlib_tables(opset: int, ops: int) -> Tables:
    return Tables.of(new_registry(opset))


def new_registry(opset: int) -> _registration.ONNXRegistry:
    """What ``ONNXRegistry.from_torchlib`` builds, without its cost (module docstring).
    Falls back to torch's own on another torch or onnxscript."""
    try:
        from onnxscript.function_libs.torch_lib import ops, registration  # noqa: F401 (ops: registers them)
        from torch.onnx._internal.exporter._torchlib import _torchlib_registry as torch_side

        torch_ops = torch_side.get_torchlib_ops()
        registry = _Registry()
        registry._opset_version = opset
        for meta in torch_ops:
            registry._register(meta.fx_target, meta)
        for name, functions in registration.default_registry.items():
            target = None if name.startswith("internal::") else _registration._get_overload(name)
            if target is None:
                continue
            for function in functions.overloads:
                registry.add(target, function, is_complex=False)
            for function in functions.complex:
                registry.add(target, function, is_complex=True)
        registry._cleanup_registry_based_on_opset_version()
    except (ImportError, AttributeError, TypeError):
        return _registration.ONNXRegistry.from_torchlib(opset_version=opset)
    return registry
