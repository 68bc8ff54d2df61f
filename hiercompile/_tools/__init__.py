"""Tools on a tagged ONNX model: query (``_retrieve``), cut out a module (``_extract``), per-module
checks against PyTorch (``_verify``), per-module time in ONNX Runtime (``_profile``), the offline
HTML page (``_report``), tags after another tool (``_retag``), quantization by module
(``_quantize``), which modules it hurts (``_sensitivity``), what changed by module (``_diff``)
and overlays for Model Explorer (``_overlay``). The packages above import from
here; each tool loads on first use."""

from __future__ import annotations

import types
from typing import TYPE_CHECKING

from .._lazy import lazy_names

MODES = ("dynamic", "static", "qdq", "int4", "fp16")
"""The precisions ``quantize`` and ``sensitivity`` take (here, so the command line's choices load nothing)."""

_LAZY = types.MappingProxyType(
    {
        "HierarchyRetriever": "._retrieve",
        "ModelSource": "._retrieve",
        "load_tagged": "._retrieve",
        "model_file": "._retrieve",
        "extract": "._extract",
        "DiffReport": "._diff",
        "diff": "._diff",
        "ModuleCheck": "._verify",
        "VerifyReport": "._verify",
        "verify": "._verify",
        "OVERHEAD": "._profile",
        "UNATTRIBUTED": "._profile",
        "ModuleTime": "._profile",
        "ProfileReport": "._profile",
        "profile": "._profile",
        "node_data": "._overlay",
        "write_node_data": "._overlay",
        "report": "._report",
        "retag": "._retag",
        "Policy": "._quantize",
        "QuantizeResult": "._quantize",
        "quantize": "._quantize",
        "ModuleSensitivity": "._sensitivity",
        "SensitivityReport": "._sensitivity",
        "sensitivity": "._sensitivity",
    }
)

if TYPE_CHECKING:  # the same names, for type checkers (a test holds them equal)
    from ._diff import DiffReport, diff  # noqa: F401
    from ._extract import extract  # noqa: F401
    from ._overlay import node_data, write_node_data  # noqa: F401
    from ._profile import OVERHEAD, UNATTRIBUTED, ModuleTime, ProfileReport, profile  # noqa: F401
    from ._quantize import Policy, QuantizeResult, quantize  # noqa: F401
    from ._report import report  # noqa: F401
    from ._retag import retag  # noqa: F401
    from ._retrieve import HierarchyRetriever, ModelSource, load_tagged, model_file  # noqa: F401
    from ._sensitivity import ModuleSensitivity, SensitivityReport, sensitivity  # noqa: F401
    from ._verify import ModuleCheck, VerifyReport, verify  # noqa: F401

__all__ = ["MODES", *_LAZY]
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
