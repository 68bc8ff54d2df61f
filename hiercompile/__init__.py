"""hiercompile: export PyTorch models to ONNX with every op tagged by the module it ran in.

Names are imported on first use, so ``import hiercompile`` (and the command line's
``--help``) does not load torch.
"""

from __future__ import annotations

import importlib
import types
from typing import TYPE_CHECKING, Any

from . import errors
from ._version import __version__
from .errors import *  # noqa: F403 - the error and warning classes

_LAZY = types.MappingProxyType(
    {
        "ExportResult": "._exporter",
        "export": "._exporter",
        "PretrainedExport": "._exporter._pretrained",
        "export_pretrained": "._exporter._pretrained",
        "verify_pretrained": "._exporter._pretrained",
        "HierarchyRetriever": "._tools._retrieve",
        "extract": "._tools._extract",
        "functionize": "._tools._functions",
        "ProfileReport": "._tools._profile",
        "profile": "._tools._profile",
        "report": "._tools._report",
        "retag": "._tools._retag",
        "quantize": "._tools._quantize",
        "QuantizeResult": "._tools._quantize",
        "VerifyReport": "._tools._verify",
        "verify": "._tools._verify",
        "backend": "._runtime._backend",
        "ModuleHierarchy": ".passes",
        "is_kept": ".passes",
        "RetagResult": ".passes",
        "FunctionizeResult": ".passes",
        "ModuleCheck": "._tools._verify",
        "ModuleTime": "._tools._profile",
    }
)

if TYPE_CHECKING:  # the same names as _LAZY, for type checkers (a test holds them equal)
    from ._exporter import ExportResult, export  # noqa: F401
    from ._exporter._pretrained import PretrainedExport, export_pretrained, verify_pretrained  # noqa: F401
    from ._runtime._backend import backend  # noqa: F401
    from ._tools._extract import extract  # noqa: F401
    from ._tools._functions import functionize  # noqa: F401
    from ._tools._profile import ModuleTime, ProfileReport, profile  # noqa: F401
    from ._tools._quantize import QuantizeResult, quantize  # noqa: F401
    from ._tools._report import report  # noqa: F401
    from ._tools._retag import retag  # noqa: F401
    from ._tools._retrieve import HierarchyRetriever  # noqa: F401
    from ._tools._verify import ModuleCheck, VerifyReport, verify  # noqa: F401
    from .passes import FunctionizeResult, ModuleHierarchy, RetagResult, is_kept  # noqa: F401

__all__ = [*errors.__all__, *_LAZY, "__version__"]  # the one list of public names


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hiercompile' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
