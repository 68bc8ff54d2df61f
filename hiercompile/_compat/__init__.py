"""The one place where private names of torch, onnxscript, onnx-ir and transformers are used.

Each use names the versions it was checked on and falls back to a public path when the
private name is missing, with one debug log line. :data:`PRIVATE_NAMES` lists them, with
a probe that tells whether the installed library still has each (``hiercompile doctor``).
"""

from __future__ import annotations

__all__ = ["PRIVATE_NAMES", "PrivateName", "available"]

import dataclasses
import importlib


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
        "example inputs flattened as torch.export flattens them (a cache into its tensors)",
        "2.11 to 2.15",
        "no public equivalent: verify and capture fail",
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


def available(name: PrivateName) -> bool:
    """Whether the installed library has ``name``."""
    try:
        module = importlib.import_module(name.module)
    except ImportError:
        return False
    return hasattr(module, name.attribute)
