"""hiercompile: export PyTorch models to ONNX with every op tagged by the module it ran in.

Names are imported on first use, so ``import hiercompile`` (and the command line's
``--help``) does not load torch.
"""

from __future__ import annotations

import importlib
import types
from typing import TYPE_CHECKING, Any

from ._errors import (
    AttributesWarning,
    BrokenModelWarning,
    CaptureError,
    CaptureWarning,
    CarryError,
    CompatError,
    FallbackWarning,
    FunctionsError,
    HiercompileError,
    InputError,
    LowerError,
    ModelLoadError,
    NotTaggedError,
    OptionWarning,
    ProfileError,
    QueryError,
    RetagError,
    SaveError,
    StaleResultWarning,
    TagError,
    UnusedInputWarning,
    ValidationError,
    VerifyError,
)
from ._version import __version__

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
        "VerifyReport": "._tools._verify",
        "verify": "._tools._verify",
        "backend": "._runtime._backend",
        "ModuleHierarchy": ".passes",
        "is_kept": ".passes",
    }
)

if TYPE_CHECKING:
    from ._exporter import ExportResult, export
    from ._exporter._pretrained import PretrainedExport, export_pretrained, verify_pretrained
    from ._runtime._backend import backend
    from ._tools._extract import extract
    from ._tools._functions import functionize
    from ._tools._profile import ProfileReport, profile
    from ._tools._report import report
    from ._tools._retag import retag
    from ._tools._retrieve import HierarchyRetriever
    from ._tools._verify import VerifyReport, verify
    from .passes import ModuleHierarchy, is_kept

__all__ = [
    "AttributesWarning",
    "BrokenModelWarning",
    "CaptureError",
    "CaptureWarning",
    "CarryError",
    "CompatError",
    "ExportResult",
    "FallbackWarning",
    "FunctionsError",
    "HierarchyRetriever",
    "HiercompileError",
    "InputError",
    "LowerError",
    "ModelLoadError",
    "ModuleHierarchy",
    "NotTaggedError",
    "OptionWarning",
    "PretrainedExport",
    "ProfileError",
    "ProfileReport",
    "QueryError",
    "RetagError",
    "SaveError",
    "StaleResultWarning",
    "TagError",
    "UnusedInputWarning",
    "ValidationError",
    "VerifyError",
    "VerifyReport",
    "__version__",
    "backend",
    "export",
    "export_pretrained",
    "extract",
    "functionize",
    "is_kept",
    "profile",
    "report",
    "retag",
    "verify",
    "verify_pretrained",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hiercompile' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
