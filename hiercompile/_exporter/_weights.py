"""Stage 0 (weights): a model whose parameters are on the meta device, and their values in
a folder of safetensors files.

A model larger than memory is built with its parameters on the meta device and its
buffers real (:func:`empty_model`), captured there (:func:`on_meta`), and each weight's
ONNX initializer points at the bytes of that weight in the checkpoint's safetensors
file (:func:`meta_values`). Writing the model copies them from there into the external
data file, one tensor at a time, without loading them
(:class:`hiercompile.passes.MetaWeightsPass` says how the ONNX side takes them).
"""

from __future__ import annotations

__all__ = ["checkpoint_bytes", "empty_model", "meta_parameters", "meta_values", "on_meta", "read_safetensors"]

import contextlib
import json
import struct
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx_ir as ir
import torch
from torch import nn

from .._compat.torch import pytree
from .._errors import InputError

# the safetensors format: an 8-byte little-endian header size, a JSON header naming each
# tensor's dtype, shape and [begin, end) offsets after the header, then the bytes
_HEADER_SIZE = 8
_DTYPES = types.MappingProxyType(
    {
        "BOOL": ir.DataType.BOOL,
        "U8": ir.DataType.UINT8,
        "I8": ir.DataType.INT8,
        "I16": ir.DataType.INT16,
        "U16": ir.DataType.UINT16,
        "I32": ir.DataType.INT32,
        "U32": ir.DataType.UINT32,
        "I64": ir.DataType.INT64,
        "U64": ir.DataType.UINT64,
        "F16": ir.DataType.FLOAT16,
        "BF16": ir.DataType.BFLOAT16,
        "F32": ir.DataType.FLOAT,
        "F64": ir.DataType.DOUBLE,
        "F8_E4M3": ir.DataType.FLOAT8E4M3FN,
        "F8_E5M2": ir.DataType.FLOAT8E5M2,
    }
)
_TORCH_DTYPES = types.MappingProxyType(
    {
        torch.bool: ir.DataType.BOOL,
        torch.uint8: ir.DataType.UINT8,
        torch.int8: ir.DataType.INT8,
        torch.int16: ir.DataType.INT16,
        torch.int32: ir.DataType.INT32,
        torch.int64: ir.DataType.INT64,
        torch.float16: ir.DataType.FLOAT16,
        torch.bfloat16: ir.DataType.BFLOAT16,
        torch.float32: ir.DataType.FLOAT,
        torch.float64: ir.DataType.DOUBLE,
        torch.float8_e4m3fn: ir.DataType.FLOAT8E4M3FN,
        torch.float8_e5m2: ir.DataType.FLOAT8E5M2,
    }
)
_SAME_WIDTH_INT = types.MappingProxyType({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64})


def _files(folder: str | Path) -> list[Path]:
    return sorted(Path(folder).glob("*.safetensors"))


def checkpoint_bytes(folder: str | Path) -> int:
    """How many bytes the folder's safetensors files hold (0: none)."""
    return sum(path.stat().st_size for path in _files(folder))


def read_safetensors(folder: str | Path) -> dict[str, ir.ExternalTensor]:
    """Every tensor of the folder's safetensors files, as a reference to its bytes there."""
    tensors = {}
    for path in _files(folder):
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(_HEADER_SIZE))
            header = json.loads(f.read(size))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            if entry["dtype"] not in _DTYPES:
                raise InputError(f"{path}: tensor {name} has dtype {entry['dtype']}, which ONNX has no type for")
            begin, end = entry["data_offsets"]
            tensors[name] = ir.ExternalTensor(
                location=path.name,
                offset=_HEADER_SIZE + size + begin,
                length=end - begin,
                dtype=_DTYPES[entry["dtype"]],
                shape=ir.Shape(entry["shape"]),
                name=name,
                base_dir=str(path.parent),
            )
    return tensors


def empty_model(build: Any, *args: Any, **kwargs: Any) -> nn.Module:
    """``build(*args, **kwargs)`` with every parameter on the meta device and buffers real
    (a rotary table or a position index is computed, not stored)."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return build(*args, **kwargs)


def meta_parameters(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.device.type == "meta"]


def _converted(tensor: ir.ExternalTensor, dtype: ir.DataType) -> ir.TensorProtocol:
    """``tensor`` as ``dtype``, converted when it is written (the model was built in another dtype)."""

    def convert() -> ir.Tensor:
        try:
            return ir.Tensor(tensor.numpy().astype(dtype.numpy()), dtype=dtype, name=tensor.name)
        finally:
            tensor.release()

    return ir.LazyTensor(convert, dtype=dtype, shape=tensor.shape, name=tensor.name)


def meta_values(model: nn.Module, folder: str | Path) -> dict[str, ir.TensorProtocol]:
    """{name: value} for each parameter of ``model`` on the meta device, under every name it
    has (tied weights have several), read from the folder's safetensors files; a name
    is looked up as it is, and with the model's ``base_model_prefix`` added or removed (a
    checkpoint saved from a model with another head)."""
    tensors = read_safetensors(folder)
    if not tensors:
        raise InputError(f"{folder} holds no .safetensors files to take the weights from; give a folder that does")
    prefix = getattr(model, "base_model_prefix", "") or ""
    groups: dict[int, tuple[nn.Parameter, list[str]]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if p.device.type == "meta":
            groups.setdefault(id(p), (p, []))[1].append(name)
    values: dict[str, ir.TensorProtocol] = {}
    missing, wrong = [], []
    for p, names in groups.values():
        candidates = [c for n in names for c in (n, f"{prefix}.{n}", n.removeprefix(f"{prefix}.")) if c in tensors]
        if not candidates:
            missing.append(names[0])
            continue
        found = tensors[candidates[0]]
        if tuple(found.shape) != tuple(p.shape):
            wrong.append(f"{names[0]} is {tuple(p.shape)} in the model, {tuple(found.shape)} in the checkpoint")
            continue
        dtype = _TORCH_DTYPES[p.dtype]
        value = found if found.dtype == dtype else _converted(found, dtype)
        values.update(dict.fromkeys(names, value))
    if missing or wrong:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise InputError(
            f"the safetensors files in {folder} do not hold "
            + (f"{len(missing)} weights of {type(model).__name__} ({shown})" if missing else "")
            + (" and " if missing and wrong else "")
            + ("; ".join(wrong[:2]) if wrong else "")
            + "; give the folder the model was saved to, or export with the weights loaded"
        )
    return values


def _ir_tensor(name: str, tensor: torch.Tensor) -> ir.Tensor:
    tensor = tensor.detach().contiguous()
    dtype = _TORCH_DTYPES[tensor.dtype]
    if tensor.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2):  # numpy lacks these: view the bits
        return ir.Tensor(
            tensor.view(_SAME_WIDTH_INT[tensor.element_size()]).numpy().view(dtype.numpy()), dtype=dtype, name=name
        )
    return ir.Tensor(tensor.numpy(), dtype=dtype, name=name)


@contextlib.contextmanager
def on_meta(model: nn.Module, inputs: Any) -> Iterator[tuple[Any, dict[str, ir.TensorProtocol]]]:
    """A model whose parameters are on the meta device computes there: for the block, its
    buffers are moved there too and ``inputs`` (a pytree) are given there. Yields the
    inputs on the meta device and {name: value} of the buffers' real values; restores
    the buffers after."""
    kept: dict[tuple[int, str], tuple[nn.Module, torch.Tensor]] = {}
    values: dict[str, ir.TensorProtocol] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):  # a shared module: each of its names
        for name, buffer in list(module._buffers.items()):
            if (id(module), name) in kept:
                buffer = kept[id(module), name][1]
            elif buffer is None or buffer.device.type == "meta":
                continue
            kept[id(module), name] = (module, buffer)
            full = f"{module_name}.{name}" if module_name else name
            values[full] = _ir_tensor(full, buffer)
            module._buffers[name] = buffer.to("meta")
    try:
        yield pytree.tree_map_only(torch.Tensor, lambda t: t.to("meta"), inputs), values
    finally:
        for (_, name), (module, buffer) in kept.items():
            module._buffers[name] = buffer
