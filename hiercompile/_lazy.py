"""Names a package imports on first use: ``import hiercompile`` and the command line's ``--help``
do not load torch, and a command loads only the modules it runs."""

from __future__ import annotations

__all__ = ["lazy_names"]

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for ``table`` ({name: relative module that defines it})."""
    namespace = vars(sys.modules[package])

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(importlib.import_module(table[name], package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
