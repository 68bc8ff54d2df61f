"""torch's ONNX exporter, by its private stages (``torch.onnx._internal.exporter``).

``torch.onnx.export`` builds its table of translations (``ONNXRegistry.from_torchlib``) at
every call, inferring the signature of each of its ~500 translations, though a model uses a
few dozen; it decomposes the whole program again, and runs type promotion over every op.
The lower stage instead builds the table once per process (a translation's signature is
inferred, as torch infers it, when it is first looked up), decomposes only the ops without
a translation (:mod:`hiercompile._exporter._decompose`), and runs type promotion only on a
program it would change. Each of these takes torch's stages one by one, as its ``export``
runs them, without replacing any of torch's functions.

Checked on torch 2.13, 2.14 and 2.15. Without these names (another torch), or with
``HIERCOMPILE_SAFE=1``, :func:`translate` is ``torch.onnx.export(program, dynamo=True)``,
which builds its own table and decomposes and promotes everything.
"""

from __future__ import annotations

__all__ = [
    "Tables",
    "default_opset",
    "dims_from_axes",
    "export_dims",
    "exporter_opset",
    "needs_promotion",
    "new_registry",
    "registered_ops",
    "rename_axes",
    "torchlib_tables",
    "translate",
    "usable",
]

import dataclasses
import functools
import logging
import types
from collections.abc import Callable, Mapping
from typing import Any

import onnx_ir as ir
import torch

from . import required
from .torch import OperatorBase, OpOverload, size_oblivious

logger = logging.getLogger(__name__)

try:
    from torch.onnx._internal.exporter import _registration
except ImportError:  # pragma: no cover - another torch: translate() runs torch.onnx.export
    _registration = None


class _Registry(_registration.ONNXRegistry if _registration is not None else object):
    """torch's table, each translation's signature inferred, as torch infers it, when the
    translation is first looked up rather than when it is registered."""

    def __init__(self) -> None:
        super().__init__()
        self._unsigned: set[int] = set()  # ids of the entries whose signature is still to infer

    def add(self, target: OpOverload, function: object, is_complex: bool) -> None:
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


def usable() -> bool:
    """Whether this torch has the exporter's private stages (else :func:`translate` is its public export)."""
    if _registration is None:
        logger.debug("torch.onnx._internal.exporter._registration is missing: torch.onnx.export runs")
    return _registration is not None


def registered_ops() -> int:
    """How many ops the dispatcher has: torch's tables hold those loaded so far (a library
    imported later, ``quantized_decomposed``, registers its ops and their translations).
    Which op namespaces Python has looked at does not count: building the tables looks at
    more of them."""
    names = required("torch._C", "_dispatch_get_all_op_names", "keeping translation tables per registered ops")
    return len(names())  # torch 2.11 to 2.15


@dataclasses.dataclass(frozen=True)
class Tables:
    """A translation table and what torch's exporter derives from it: the decompositions it
    runs before translating (every op the table lacks) and the ops the table translates."""

    registry: _registration.ONNXRegistry
    decompositions: Mapping[OperatorBase, Callable]
    translated: frozenset

    @classmethod
    def of(cls, registry: _registration.ONNXRegistry) -> Tables:
        from torch.onnx._internal.exporter import _decomp

        translated = frozenset(_decomp.get_onnx_implemented_overloads(registry))
        table = _decomp.create_onnx_friendly_decomposition_table(set(translated))
        return cls(registry, types.MappingProxyType(table), translated)


def torchlib_tables(opset: int) -> Tables:
    """torch's tables for ``opset``, built once per process and count of :func:`registered_ops`:
    ``torch.onnx.export`` builds them at every call, which each file of a task,
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


def default_opset() -> int:
    """The opset ``torch.onnx.export`` writes by default (``torch.onnx._constants``, torch 2.11 to 2.15:
    20); 20 without that name."""
    try:
        from torch.onnx import _constants
    except ImportError:  # pragma: no cover - another torch
        return 20
    return _constants.ONNX_DEFAULT_OPSET


def exporter_opset() -> int:
    """The opset torch's translations are written for: an older one is reached by conversion."""
    from torch.onnx._internal.exporter import _constants

    return _constants.TORCHLIB_OPSET


def needs_promotion(graph_module: torch.fx.GraphModule) -> bool:
    """Whether torch's type-promotion pass would change ``graph_module`` (or a subgraph):
    an op with a promotion rule has an argument of another dtype than the rule asks for.

    Read from the values the capture recorded on each node (``meta["val"]``), as the pass
    reads them after running every node again with fake tensors; where a value is not
    there or not of a kind the pass knows, the answer is yes, and the pass decides.
    """
    from torch.onnx._internal.fx import type_utils
    from torch.onnx._internal.fx.passes import type_promotion

    def promotes(arg: Any, dtype: torch.dtype | None) -> bool:  # the cases of the pass's _maybe_promote_arg
        if dtype is None:
            return False
        if isinstance(arg, torch.fx.Node):
            value = arg.meta.get("val")
            if isinstance(value, torch.Tensor):
                return value.dtype != dtype
            if type_utils.is_torch_symbolic_type(value):
                return type_utils.from_scalar_type_to_torch_dtype(type(value)) != dtype
            return True
        if (scalar := type_utils.from_scalar_type_to_torch_dtype(type(arg))) is not None:
            return scalar != dtype
        if isinstance(arg, (tuple, list)):
            return any(promotes(a, dtype) for a in arg)
        return True

    table = type_promotion.TypePromotionTable()
    for module in graph_module.modules():
        if not isinstance(module, torch.fx.GraphModule):
            return True
        for node in module.graph.nodes:
            rule = type_promotion.get_type_promotion_rule(node, table) if node.op == "call_function" else None
            if rule is None:
                continue
            if any(isinstance(a, torch.fx.Node) and "val" not in a.meta for a in node.all_input_nodes):
                return True
            args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda a: a.meta["val"])
            wanted = rule.preview_type_promotion(args, kwargs)
            if any(promotes(a, wanted.args_dtypes.get(i)) for i, a in enumerate(node.args)) or any(
                promotes(a, wanted.kwargs_dtypes.get(k)) for k, a in node.kwargs.items()
            ):
                return True
    return False


def translate(
    program: torch.export.ExportedProgram,
    tables: Tables | None,
    opset: int,
    decomposed: bool,
    custom_translation_table: Mapping[Callable, Callable] | None,
) -> torch.onnx.ONNXProgram:
    """``torch.onnx.export(program, dynamo=True, optimize=False, opset_version=opset)``.

    With ``tables`` (the fast paths on): torch's stages as its ``export`` runs them for a
    program, with the table built once, without decomposing again a program ``decomposed``
    op by op, and with type promotion only where an op needs it (:func:`needs_promotion`).
    Without: the public call itself.
    """
    if tables is None or _registration is None:
        return torch.onnx.export(
            program,
            dynamo=True,
            optimize=False,
            opset_version=opset,
            custom_translation_table=dict(custom_translation_table or {}) or None,
            verbose=False,
        )
    import onnxscript.version_converter
    from torch.onnx._internal.exporter import _core, _flags, _fx_passes

    @_flags.set_onnx_exporting_flag
    def run() -> torch.onnx.ONNXProgram:
        prepared = program
        with size_oblivious():  # as torch's export prepares a program
            if not decomposed:
                prepared = _fx_passes.decompose_with_registry(prepared, tables.registry)
            module = prepared.graph_module
            if needs_promotion(module):
                _fx_passes.insert_type_promotion_nodes(module)
            prepared._graph_module = _fx_passes.remove_assertion_nodes(module)
        onnx_program = _core._exported_program_to_onnx_program(prepared, registry=tables.registry)
        onnxscript.version_converter.convert_version(onnx_program.model, opset, fallback=True)  # as torch does
        return onnx_program

    return run()


def dims_from_axes(model: Any, args: tuple, kwargs: dict, dynamic_axes: Any, input_names: Any, output_names: Any):
    """``(dynamic_shapes, args, kwargs)`` for torch.onnx's ``dynamic_axes``, as its export converts them."""
    convert = required(
        "torch.onnx._internal.exporter._dynamic_shapes", "from_dynamic_axes_to_dynamic_shapes", "dynamic_axes"
    )
    return convert(model, args, kwargs, dynamic_axes=dynamic_axes, input_names=input_names, output_names=output_names)


def export_dims(dynamic_shapes: Any) -> tuple[Any, bool]:
    """``dynamic_shapes`` with axis names turned into ``torch.export.Dim``, and whether it named any."""
    convert = required("torch.onnx._internal.exporter._dynamic_shapes", "convert_str_to_export_dim", "named axes")
    return convert(dynamic_shapes)


def rename_axes(model: ir.Model, axis_names: Any, mapping: dict[str, str] | None = None) -> None:
    """Rename the model's symbolic dims: by ``mapping`` (symbol -> name), or as torch.onnx.export
    names them from ``axis_names`` (dynamic shapes that name axes)."""
    if mapping is None:
        create = required("torch.onnx._internal.exporter._dynamic_shapes", "create_rename_mapping", "named axes")
        mapping = create(model.graph.inputs, axis_names)
    required("torch.onnx._internal.exporter._ir_passes", "rename_axis", "named axes")(model, mapping)
