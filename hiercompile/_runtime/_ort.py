"""The ``ort`` runtime: a compiled graph's ONNX model runs in ONNX Runtime, on the CPU or a GPU."""

from __future__ import annotations

__all__ = ["CUDA_PROVIDER", "OrtRuntime", "where_to_run"]

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .. import _ort
from ._registry import Compiled, Runtime

CUDA_PROVIDER = "CUDAExecutionProvider"


def where_to_run(
    example_inputs: list[Any], requested: Sequence[str] | None, available: Sequence[str]
) -> tuple[list, torch.device] | str:
    """ONNX Runtime providers and device for a graph, or why it runs eagerly instead.

    Rules:

    1. With gradients needed (grad mode on and an input or parameter that requires
       grad) the graph runs eagerly: ONNX Runtime computes no backward, and dynamo
       compiles again when grad mode or ``requires_grad`` change.
    2. The device is the one every tensor argument is on; tensors on several devices
       run eagerly.
    3. ``requested`` providers (the ``providers`` option) must all be ``available``.
    4. On the CPU: the requested providers, else ``CPUExecutionProvider``. On a CUDA
       device: the requested providers, else ``CUDAExecutionProvider`` for that device
       with the CPU behind it; without it in ``available`` the graph runs eagerly.
    """
    tensors = [t for t in example_inputs if isinstance(t, torch.Tensor)]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return (
            "gradients are needed (grad mode is on and an input or parameter requires grad), and ONNX Runtime "
            "computes none; run under torch.no_grad() or torch.inference_mode() for ONNX Runtime"
        )
    devices = sorted({str(t.device) for t in tensors})
    if len(devices) > 1:
        return f"its tensors are on several devices ({', '.join(devices)})"
    device = torch.device(devices[0] if devices else "cpu")
    missing = [p for p in requested or () if p not in available]
    if missing:
        return f"onnxruntime offers no {', '.join(missing)} (it has {', '.join(available)})"
    if requested:
        return list(requested), device
    if device.type == "cpu":
        return ["CPUExecutionProvider"], device
    if device.type == "cuda" and CUDA_PROVIDER in available:
        return [(CUDA_PROVIDER, {"device_id": device.index or 0}), "CPUExecutionProvider"], device
    return (
        f"its tensors are on {device} and onnxruntime offers no provider for it (it has {', '.join(available)}); "
        "install onnxruntime-gpu for CUDA"
    )


class _OrtGraph:
    """Calls an ONNX model in ONNX Runtime with a dynamo graph's calling convention.

    On the CPU, tensors go in and out as NumPy arrays (no copy); on a GPU through IO
    binding and DLPack, so they stay on the device, and outputs come back on it.
    Python numbers dynamo passes as 0-d tensors were baked into the model; a call with
    other values runs ``eager`` instead.
    """

    def __init__(
        self,
        compiled: Compiled,
        providers: list,
        device: torch.device,
    ) -> None:
        self.session = _ort.session(compiled.model, providers=providers)
        self.names = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.user_positions = compiled.user_positions
        self.template = compiled.template
        self.scalars = compiled.scalars
        self.eager = compiled.eager
        self.device = device

    def __call__(self, *args: Any) -> Any:
        if any(not torch.equal(args[i], value) for i, value in self.scalars.items()):
            return self.eager(*args)
        inputs = [args[i].detach() for i in self.user_positions]
        if self.device.type == "cpu":
            feeds = {name: tensor.numpy() for name, tensor in zip(self.names, inputs, strict=True)}
            produced = [torch.from_numpy(value) for value in self.session.run(None, feeds)]
        else:
            produced = self._run_on_device(inputs)
        outputs = iter(produced)
        return tuple(next(outputs) if slot is TENSOR else slot for slot in self.template)

    def _run_on_device(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name, tensor in zip(self.names, inputs, strict=True):
            binding.bind_ortvalue_input(name, ort.OrtValue.from_dlpack(tensor.contiguous()))
        for name in self.outputs:
            binding.bind_output(name, self.device.type, self.device.index or 0)
        self.session.run_with_iobinding(binding)
        return [torch.from_dlpack(value) for value in binding.get_outputs()]


TENSOR = object()  # where a graph's output template holds a tensor


class OrtRuntime(Runtime):
    """ONNX Runtime, with the providers :func:`where_to_run` picks."""

    def placement(self, example_inputs: list[Any], providers: Sequence[str] | None) -> Any:
        import onnxruntime as ort

        return where_to_run(example_inputs, providers, ort.get_available_providers())

    def load(self, compiled: Compiled, placement: Any) -> Callable:
        providers, device = placement
        return _OrtGraph(compiled, providers, device)
