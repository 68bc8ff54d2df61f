"""hiercompile: export PyTorch models to ONNX with every op tagged by the module it ran in.

Names are imported on first use, so ``import hiercompile`` (and the command line's
``--help``) does not load torch.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING

from . import errors
from ._lazy import lazy_names
from ._version import __version__
from .errors import *  # noqa: F403 - the error and warning classes

_LAZY = types.MappingProxyType(
    {
        "ExportResult": "._exporter",
        "export": "._exporter",
        "functionize": "._exporter",
        "PretrainedExport": "._hf",
        "export_pretrained": "._hf",
        "verify_pretrained": "._hf",
        "HierarchyRetriever": "._tools",
        "extract": "._tools",
        "DiffReport": "._tools",
        "diff": "._tools",
        "ModuleCheck": "._tools",
        "ModuleTime": "._tools",
        "ProfileReport": "._tools",
        "Policy": "._tools",
        "QuantizeResult": "._tools",
        "SensitivityReport": "._tools",
        "VerifyReport": "._tools",
        "node_data": "._tools",
        "profile": "._tools",
        "quantize": "._tools",
        "report": "._tools",
        "retag": "._tools",
        "sensitivity": "._tools",
        "verify": "._tools",
        "backend": "._runtime",
        "FunctionizeResult": ".passes",
        "ModuleHierarchy": ".passes",
        "RetagResult": ".passes",
        "is_kept": ".passes",
    }
)

if TYPE_CHECKING:  # the same names as _LAZY, for type checkers (a test holds them equal)
    from ._exporter import ExportResult, export, functionize  # noqa: F401
    from ._hf import PretrainedExport, export_pretrained, verify_pretrained  # noqa: F401
    from ._runtime import backend  # noqa: F401
    from ._tools import (  # noqa: F401
        DiffReport,
        HierarchyRetriever,
        ModuleCheck,
        ModuleTime,
        Policy,
        ProfileReport,
        QuantizeResult,
        SensitivityReport,
        VerifyReport,
        diff,
        extract,
        node_data,
        profile,
        quantize,
        report,
        retag,
        sensitivity,
        verify,
    )
    from .passes import FunctionizeResult, ModuleHierarchy, RetagResult, is_kept  # noqa: F401

__all__ = [*errors.__all__, *_LAZY, "__version__"]  # the one list of public names


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
