"""The one place where private names of torch, onnxscript, onnx-ir and transformers are used.

Each use names the versions it was checked on and falls back to a public path when the
private name is missing, with one debug log line. :data:`PRIVATE_NAMES` lists them, with
a probe that tells whether the installed library still has each (``hiercompile doctor``).
``HIERCOMPILE_SAFE=1`` turns the fast paths off: the public paths run instead.
"""

from __future__ import annotations

__all__ = ["PRIVATE_NAMES", "PrivateName", "available", "fast_paths", "required"]

import dataclasses
import importlib
import importlib.metadata
import os
import types
from typing import Any

from .._errors import CompatError

_DISTRIBUTIONS = types.MappingProxyType({"onnx_ir": "onnx-ir"})  # import name -> distribution name


def fast_paths() -> bool:
    """Whether the fast paths through private names are on (``HIERCOMPILE_SAFE=1`` turns them off)."""
    return os.environ.get("HIERCOMPILE_SAFE", "").lower() not in ("1", "true", "yes")


@dataclasses.dataclass(frozen=True)
class PrivateName:
    """A private name: the library, the module and attribute, what it is for, the versions
    it was checked on, and what happens without it."""

    library: str
    module: str
    attribute: str
    purpose: str
    checked: str
    without: str


PRIVATE_NAMES = (
    PrivateName(
        "torch",
        "torch.export._patches",
        "register_lstm_while_loop_decomposition",
        "LSTM/GRU captured as a loop: their sequence length stays dynamic",
        "2.13, 2.14, 2.15",
        "an RNN's length follows the example input",
    ),
    PrivateName(
        "torch",
        "torch.fx.experimental._config",
        "backed_size_oblivious",
        "a dynamic size whose example is 1 stays dynamic",
        "2.13, 2.14, 2.15",
        "torch specializes such a size and the capture reports the conflict",
    ),
    PrivateName(
        "torch",
        "torch.utils._pytree",
        "tree_leaves",
        "inputs and outputs flattened as torch.export flattens them (a cache into its tensors)",
        "2.11 to 2.15",
        "no public equivalent: capture, verify and generative export fail",
    ),
    PrivateName(
        "torch",
        "torch._ops",
        "OpOverload",
        "the types of torch's operators",
        "2.11 to 2.15",
        "the types of public objects that are such operators",
    ),
    PrivateName(
        "torch",
        "torch._guards",
        "detect_fake_mode",
        "the shape environment of a captured program (op-by-op decomposition)",
        "2.11 to 2.15",
        "the mode a fake tensor carries",
    ),
    PrivateName(
        "torch",
        "torch._dispatch.python",
        "enable_python_dispatcher",
        "an op traced alone with symbolic sizes",
        "2.11 to 2.15",
        "torch's run_decompositions decomposes the whole program",
    ),
    PrivateName(
        "torch",
        "torch._export.utils",
        "_is_cia_op",
        "the composite ops torch always decomposes",
        "2.11 to 2.15",
        "every such op is traced alone",
    ),
    PrivateName(
        "torch",
        "torch._dynamo.config",
        "fake_tensor_cache_enabled",
        "no fake-tensor cache while capturing with dynamic shapes",
        "2.11 to 2.15",
        "the cache stays on (a slower capture)",
    ),
    PrivateName(
        "torch",
        "torch._dynamo.exc",
        "UserError",
        "dynamic shapes refined from torch's suggested fixes",
        "2.11 to 2.15",
        "no second try with the suggested shapes",
    ),
    PrivateName(
        "torch",
        "torch._dynamo.symbolic_convert",
        "InstructionTranslator",
        "the frame a torch.compile backend is called in",
        "2.11 to 2.15",
        "no public equivalent: the backend fails",
    ),
    PrivateName(
        "torch",
        "torch._dynamo.eval_frame",
        "OptimizedModule",
        "the module torch.compile wrapped",
        "2.11 to 2.15",
        "the type of a module torch.compile returns",
    ),
    PrivateName(
        "torch",
        "torch._guards",
        "tracing",
        "an export inside a compile backend adds no guards to the user's frame",
        "2.11 to 2.15",
        "no public equivalent: the backend fails",
    ),
    PrivateName(
        "torch",
        "torch._subclasses.fake_tensor",
        "FakeTensorMode",
        "example inputs of a model loaded on the meta device",
        "2.11 to 2.15",
        "no public equivalent: such exports fail",
    ),
    PrivateName(
        "torch",
        "torch._library.custom_ops",
        "OPDEFS",
        "a torch.library.custom_op op lowered through its Python implementation",
        "2.11 to 2.15",
        "the op needs a translation (a LowerError says how)",
    ),
    PrivateName(
        "torch",
        "torch._C",
        "_dispatch_get_all_op_names",
        "translation tables kept per count of registered ops",
        "2.11 to 2.15",
        "no public equivalent: the lower stage fails",
    ),
    PrivateName(
        "torch",
        "torch.onnx._internal.exporter._registration",
        "ONNXRegistry",
        "the translation table, built once per process",
        "2.13, 2.14, 2.15",
        "torch.onnx.export (HIERCOMPILE_SAFE=1)",
    ),
    PrivateName(
        "torch",
        "torch.onnx._internal.exporter._core",
        "_exported_program_to_onnx_program",
        "torch's export, stage by stage",
        "2.13, 2.14, 2.15",
        "torch.onnx.export (HIERCOMPILE_SAFE=1)",
    ),
    PrivateName(
        "torch",
        "torch.onnx._internal.exporter._fx_passes",
        "insert_type_promotion_nodes",
        "type promotion only on a program it changes",
        "2.13, 2.14, 2.15",
        "torch.onnx.export (HIERCOMPILE_SAFE=1)",
    ),
    PrivateName(
        "torch",
        "torch.onnx._internal.exporter._decomp",
        "create_onnx_friendly_decomposition_table",
        "the ops decomposed op by op",
        "2.13, 2.14, 2.15",
        "torch.onnx.export (HIERCOMPILE_SAFE=1)",
    ),
    PrivateName(
        "torch",
        "torch.onnx._internal.fx.passes.type_promotion",
        "TypePromotionTable",
        "which ops type promotion would change",
        "2.13, 2.14, 2.15",
        "torch.onnx.export (HIERCOMPILE_SAFE=1)",
    ),
    PrivateName(
        "torch",
        "torch.onnx._internal.exporter._dynamic_shapes",
        "from_dynamic_axes_to_dynamic_shapes",
        "torch.onnx's dynamic_axes and axis names, converted as it converts them",
        "2.13, 2.14, 2.15",
        "no public equivalent: dynamic_axes and named axes fail",
    ),
    PrivateName(
        "torch",
        "torch.onnx._internal.exporter._ir_passes",
        "rename_axis",
        "dynamic axes named as torch.onnx.export names them",
        "2.13, 2.14, 2.15",
        "no public equivalent: named axes fail",
    ),
    PrivateName(
        "onnxscript",
        "onnxscript.optimizer._constant_folding",
        "FoldConstantsPass",
        "constant folding as one pass of the carry stage",
        "0.6, 0.7",
        "onnxscript.optimizer.fold_constants",
    ),
    PrivateName(
        "onnxscript",
        "onnxscript.rewriter",
        "_DEFAULT_REWRITE_RULES",
        "the default rewrite rules, each tried only at its output op",
        "0.6, 0.7",
        "onnxscript.rewriter.rewrite",
    ),
    PrivateName(
        "onnx_ir",
        "onnx_ir._cloner",
        "Cloner",
        "a function body inlined with each node's tag made full",
        "0.1, 1.1",
        "the nodes copied by hand (a body with control flow: CompatError)",
    ),
    PrivateName(
        "transformers",
        "transformers.exporters.exporter_dynamo",
        "register_cache_pytrees_for_model",
        "a model that takes or returns its cache captures",
        "5.17 to 5.25",
        "torch.export fails naming the cache class",
    ),
)


def required(module: str, attribute: str, purpose: str) -> Any:
    """``module.attribute``, a private name with no public equivalent, or a :class:`CompatError`
    that names the library, its version and what needs it."""
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as e:
        library = module.split(".")[0]
        try:
            version = importlib.metadata.version(_DISTRIBUTIONS.get(library, library))
        except importlib.metadata.PackageNotFoundError:
            version = "(version unknown)"
        raise CompatError(
            f"{library} {version} has no {module}.{attribute}, which {purpose} needs and which has no public "
            "equivalent; install a version `hiercompile doctor` lists as checked"
        ) from e


def available(name: PrivateName) -> bool:
    """Whether the installed library has ``name``."""
    try:
        module = importlib.import_module(name.module)
    except ImportError:
        return False
    return hasattr(module, name.attribute)
