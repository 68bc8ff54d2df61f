"""``hiercompile.export``: capture → tag → lower → carry → derive, in order (the result is in ``_result``)."""

from __future__ import annotations

__all__ = ["Progress", "Steps", "export", "export_program"]

import contextlib
import copy
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx_ir as ir
import torch
from torch import nn

from .._artifacts import Output
from .._errors import InputError, TagError
from .._graph import data_flow_graph
from ..passes import KeepPredicate, ModuleHierarchy
from ..passes.fx_tag import call_indices, tag_graph_module
from . import _derive
from ._arguments import output_names_of, read_arguments
from ._capture import SIZE_OBLIVIOUS, capture, capture_mode, check_inputs
from ._carry import carry
from ._lower import Lowering, lower
from ._options import GraphOptions, SaveOptions
from ._result import ExportResult
from ._weights import meta_parameters, meta_values, on_meta

Progress = Callable[[str, float | None], None]
"""Called with (step, None) when a step starts and (step, seconds) when it ends."""


class Steps:
    """Times each step and reports its start and end to ``progress``."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.progress:
            self.progress(name, None)
        start = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - start
        if self.progress:
            self.progress(name, self.timings[name])


def export(
    model: nn.Module | torch.export.ExportedProgram,
    args: tuple | torch.Tensor = (),
    f: str | os.PathLike | None = None,
    *,
    kwargs: dict[str, Any] | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset_version: int | None = None,
    dynamic_shapes: Any = None,
    dynamic_axes: Mapping | None = None,
    custom_translation_table: Mapping[Callable, Callable] | None = None,
    optimize: bool = True,
    external_data: bool | None = None,
    keep_initializers_as_inputs: bool = False,
    training: Any = False,
    verbose: bool | None = None,
    keep: KeepPredicate | None = None,
    functions: bool = False,
    attributes: bool = False,
    scoped_names: bool = True,
    namespace: bool = False,
    weights: str | os.PathLike | None = None,
    stack_traces: bool = True,
    progress: Progress | None = None,
    **unsupported: Any,
) -> ExportResult:
    """Export ``model`` to ONNX with every op tagged by the module it ran in.

    The arguments are ``torch.onnx.export``'s (``dynamo=True``), with the same meaning
    (the Python API page has the table); an argument it does not know is an :class:`InputError`.

    Args:
        model: a ``torch.nn.Module``, or a ``torch.export.ExportedProgram`` (its modules are
            read from the ops' ``nn_module_stack``).
        args: example positional inputs for ``model.forward`` (a trailing dict is taken as ``kwargs``).
        kwargs: example keyword inputs for ``model.forward``.
        f: where to write: a folder (``model.onnx`` and its side files), a ``.onnx`` path for
            the model alone, or None to write nothing.
        input_names: names of the ONNX inputs (default: forward's parameters).
        output_names: names of the ONNX outputs (default: the model's own output names:
            ``last_hidden_state``, ``logits``).
        opset_version: the ONNX opset to export to (default: the exporter's).
        dynamic_shapes: dynamic dimensions, as torch.onnx.export reads them: ``Dim``s, axis
            names as strings, ``Dim.AUTO``; names become the ONNX dims' names.
        dynamic_axes: dynamic dimensions in the TorchScript exporter's form
            (``{"x": {0: "batch"}}``), converted to ``dynamic_shapes`` as torch does.
        custom_translation_table: ONNX translations for ops the exporter lacks.
        optimize: run onnxscript's optimizer (constant folding, rewrites, CSE).
        external_data: weights in ``<model file>.data`` (None: only past protobuf's 2 GB limit).
        keep_initializers_as_inputs: also list the weights among the graph inputs.
        training: capture in training mode (True or ``TrainingMode.TRAINING``); by default the
            model is captured in eval mode, as torch.onnx.export does, and its mode restored.
        verbose: print each step as it starts and ends.
        keep: which modules appear in tags (default: classes that are not PyTorch built-ins).
        functions: also write the functions form (``model.functions.onnx``).
        attributes: also write the attribute form (``model.attributes.onnx``, invalid ONNX).
        scoped_names: name nodes ``/module/path/OpType_n`` (the exporter's names stay in metadata).
        namespace: set each node's ``namespace`` metadata to its tag path (Model Explorer groups).
        weights: a folder of safetensors files with the values of the parameters ``model``
            has on the meta device (built with ``accelerate.init_empty_weights()``): the model
            is captured there and each weight copied from its file into the external data
            file when written, never loaded; ``external_data`` is then on by default.
        stack_traces: each node keeps the source lines its op ran at, as torch.onnx.export
            writes them (``pkg.torch.onnx.stack_trace``); without, the capture is faster.
        progress: called as each step starts and ends.
    """
    if isinstance(f, dict) and kwargs is None:
        raise InputError(
            "the third argument is the output path f, as in torch.onnx.export; pass example keyword inputs as kwargs="
        )
    arguments = read_arguments(
        model,
        args,
        kwargs,
        dynamic_shapes=dynamic_shapes,
        dynamic_axes=dynamic_axes,
        input_names=input_names,
        output_names=output_names,
        opset_version=opset_version,
        custom_translation_table=custom_translation_table,
        training=training,
        unsupported=unsupported,
    )
    values = _weight_values(model, weights)
    if values is not None and external_data is None and f is not None:
        external_data = True  # a single protobuf file would hold every weight in memory to write it
    save_options = SaveOptions(functions, attributes, external_data)
    if f is None:
        chosen = save_options.chosen()
        if chosen:
            raise InputError(
                f"{', '.join(chosen)} apply when files are written: pass f=, or call "
                f"result.save(path, {', '.join(f'{n}={v!r}' for n, v in chosen.items())})"
            )
    else:
        Output(f).check()  # before the work, not after it
    if verbose and progress is None:
        progress = _print_progress
    step = Steps(progress)
    lowering = Lowering(arguments.opset_version, arguments.custom_translation_table, arguments.axis_names)
    if isinstance(model, torch.export.ExportedProgram):
        program, strategy = _graph_of_its_own(model), "given"
        if keep is not None:
            raise InputError("keep= reads nn.Module instances; pass the model itself, not an ExportedProgram")
        if not stack_traces:
            raise InputError(
                "stack_traces=False applies when hiercompile captures the model; an ExportedProgram keeps the "
                "stack traces torch recorded: pass the model itself"
            )
        hierarchy = ModuleHierarchy.from_program(model)
    else:
        check_inputs(model, arguments.args, arguments.kwargs)
        inputs = (arguments.args, arguments.kwargs)
        with (
            on_meta(model, inputs) if values is not None else contextlib.nullcontext((inputs, {})) as (inputs, buffers),
            capture_mode(model, arguments.training),
            step("capture"),
        ):
            captured = capture(model, *inputs, arguments.dynamic_shapes, stack_traces=stack_traces)
        if values is not None:
            lowering = dataclasses.replace(lowering, weights={**buffers, **values})
        if captured.strategy == SIZE_OBLIVIOUS:
            lowering = dataclasses.replace(lowering, size_oblivious=True)
        program, strategy = captured.program, captured.strategy
        hierarchy = ModuleHierarchy(model, keep)
    own = output_names_of(program.call_spec.out_spec)  # the user's names first, the model's for the rest
    if len(own) != len(program.graph_signature.user_outputs):  # outputs that are no tensors: leave the names
        own = []
    names = [*(arguments.output_names or []), *own[len(arguments.output_names or []) :]]
    options = GraphOptions(optimize, arguments.input_names, names, keep_initializers_as_inputs, scoped_names, namespace)
    result = export_program(program, hierarchy, step=step, lowering=lowering, options=options)
    result.training = arguments.training
    result.capture_strategy = strategy
    if f is not None:
        out = Output(f)
        out.write_run(result.files(out, save_options))
    return result


def _graph_of_its_own(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """``program`` with a copy of its graph and signature, its weights shared: tagging and
    lowering rewrite the graph, and the caller's program stays as it was."""
    own = copy.copy(program)
    own._graph_module = copy.deepcopy(program.graph_module)
    own._graph_signature = copy.deepcopy(program.graph_signature)
    return own


def _weight_values(model: Any, weights: str | os.PathLike | None) -> dict[str, ir.TensorProtocol] | None:
    """The values of ``model``'s parameters on the meta device, from ``weights``; checked before any work."""
    empty = meta_parameters(model) if isinstance(model, nn.Module) else []
    if weights is None:
        if empty:
            raise InputError(
                f"{len(empty)} parameters of {type(model).__name__} are on the meta device and have no values "
                f"({', '.join(empty[:2])}, ...); pass weights= a folder of safetensors files that holds them"
            )
        return None
    if not empty:
        raise InputError(
            f"weights= gives the values of parameters on the meta device, and {type(model).__name__} has none; "
            "build it under accelerate.init_empty_weights(), or leave weights= out"
        )
    if not Path(weights).is_dir():
        raise InputError(f"weights={weights}: no such folder; give the folder of the checkpoint's safetensors files")
    return meta_values(model, weights)


def _print_progress(step: str, seconds: float | None) -> None:
    print(f"hiercompile: {step} {'...' if seconds is None else f'done in {seconds:.2f} s'}", file=sys.stderr)


def export_program(
    program: torch.export.ExportedProgram,
    hierarchy: ModuleHierarchy,
    *,
    step: Steps | None = None,
    normalize_path: Callable[[str], str] = str,
    lowering: Lowering | None = None,
    options: GraphOptions | None = None,
) -> ExportResult:
    """Tag, lower, carry and derive: everything after capture, shared with the compile backend.

    ``normalize_path`` maps the module stacks' paths to ``named_modules()`` paths.
    """
    options = options or GraphOptions()
    input_names, output_names = options.input_names, options.output_names
    step = step or Steps()
    with step("tag"):
        _tag_fx(program, hierarchy, normalize_path)
    with step("lower"):
        onnx_model, decomposed_program = lower(program, lowering or Lowering())
    if output_names is not None and len(output_names) > len(onnx_model.graph.outputs):
        raise InputError(
            f"{len(output_names)} output names for {len(onnx_model.graph.outputs)} outputs of the model; "
            "give one name per output"
        )
    if input_names is not None and len(input_names) > len(onnx_model.graph.inputs):
        raise InputError(
            f"{len(input_names)} input names for {len(onnx_model.graph.inputs)} inputs of the model "
            f"({', '.join(v.name for v in onnx_model.graph.inputs)}); give one name per input"
        )
    with step("carry"):
        fx_tags = _tag_fx(decomposed_program, hierarchy, normalize_path)
        carry(
            onnx_model,
            fx_tags=fx_tags,
            fx_calls=call_indices(decomposed_program.graph_module),
            hierarchy=_derive.hierarchy_metadata(hierarchy),
            root_tag=hierarchy.root.tag,
            options=options,
        )
    with step("derive"):
        graph = data_flow_graph(onnx_model.graph)
        return ExportResult(
            model=onnx_model,
            hierarchy=_derive.hierarchy_summary(hierarchy, onnx_model.graph),
            graph=graph,
            module_dags=_derive.module_dags(graph, hierarchy.tags),
            operations=_derive.operations(onnx_model.graph),
            timings=step.timings,
        )


def _tag_fx(
    program: Any, hierarchy: ModuleHierarchy, normalize_path: Callable[[str], str]
) -> dict[str, dict[str, str]]:
    try:
        return tag_graph_module(program.graph_module, hierarchy, normalize_path=normalize_path)
    except KeyError as e:
        raise TagError(
            f"tag step failed: module path {e.args[0]!r} on an op's nn_module_stack is not a submodule "
            "of the model; export the same object you pass as model"
        ) from e
