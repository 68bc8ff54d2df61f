"""Tools on a tagged ONNX model: query (``_retrieve``), cut out a module (``_extract``), per-module
checks against PyTorch (``_verify``), per-module time in ONNX Runtime (``_profile``), the offline
HTML page (``_report``), tags after another tool (``_retag``) and quantization by module
(``_quantize``). The packages above import from here; each tool loads on first use."""

from __future__ import annotations

import types
from typing import TYPE_CHECKING

from .._lazy import lazy_names

_LAZY = types.MappingProxyType(
    {
        "HierarchyRetriever": "._retrieve",
        "ModelSource": "._retrieve",
        "load_tagged": "._retrieve",
        "model_file": "._retrieve",
        "extract": "._extract",
        "ModuleCheck": "._verify",
        "VerifyReport": "._verify",
        "verify": "._verify",
        "OVERHEAD": "._profile",
        "UNATTRIBUTED": "._profile",
        "ModuleTime": "._profile",
        "ProfileReport": "._profile",
        "profile": "._profile",
        "report": "._report",
        "retag": "._retag",
        "QuantizeResult": "._quantize",
        "quantize": "._quantize",
    }
)

if TYPE_CHECKING:  # the same names, for type checkers (a test holds them equal)
    from ._extract import extract  # noqa: F401
    from ._profile import OVERHEAD, UNATTRIBUTED, ModuleTime, ProfileReport, profile  # noqa: F401
    from ._quantize import QuantizeResult, quantize  # noqa: F401
    from ._report import report  # noqa: F401
    from ._retag import retag  # noqa: F401
    from ._retrieve import HierarchyRetriever, ModelSource, load_tagged, model_file  # noqa: F401
    from ._verify import ModuleCheck, VerifyReport, verify  # noqa: F401

__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
