"""The Hugging Face package: checkpoints and shipped presets (``_sources``, ``_models``), optimum's
tasks (``_tasks``), the files of a generative task (``_generative``), exporting them side by
side (``_parallel``), checking them against PyTorch (``_validate``), and the whole job
(``_pretrained``). It stands on the export core and the tools; nothing below imports it."""

from __future__ import annotations

import types
from typing import TYPE_CHECKING

from .._lazy import lazy_names

_LAZY = types.MappingProxyType(
    {
        "PretrainedExport": "._pretrained",
        "export_pretrained": "._pretrained",
        "verify_pretrained": "._pretrained",
        "DYNAMIC_AXES": "._sources",
        "check_sizes": "._sources",
        "presets": "._sources",
        "resolve": "._sources",
        "TASKS": "._tasks",
        "task_named": "._tasks",
    }
)

if TYPE_CHECKING:  # the same names, for type checkers (a test holds them equal)
    from ._pretrained import PretrainedExport, export_pretrained, verify_pretrained  # noqa: F401
    from ._sources import DYNAMIC_AXES, check_sizes, presets, resolve  # noqa: F401
    from ._tasks import TASKS, task_named  # noqa: F401

__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
