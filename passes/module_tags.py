"""The tag rule: which modules are kept and what each kept module instance is called.

This file is the one place where tags are decided (SPEC §1-2). Every other pass
only looks tags up in the :class:`ModuleHierarchy` built here.
"""

from __future__ import annotations

__all__ = ["KeepPredicate", "ModuleHierarchy", "ModuleInfo", "is_kept"]

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable

from torch import nn

KeepPredicate = Callable[[nn.Module], bool]

_CONTAINERS = (nn.ModuleList, nn.Sequential, nn.ModuleDict)


def is_kept(module: nn.Module) -> bool:
    """Default keep predicate: the module's class is not a PyTorch built-in."""
    return not type(module).__module__.startswith("torch.")


@dataclasses.dataclass(frozen=True)
class ModuleInfo:
    """One kept module instance: its tag, class, module path and parent tag."""

    tag: str
    qualified_class: str
    path: str
    parent: str | None
    module: nn.Module = dataclasses.field(repr=False, compare=False)

    @property
    def depth(self) -> int:
        return self.tag.count("/") - 1


class ModuleHierarchy:
    """Tags of every kept module instance of a model.

    Rules, applied in order:

    1. A module is kept when ``keep(module)`` is true (default :func:`is_kept`:
       its class is not a PyTorch built-in). The root is always kept.
    2. Each instance is visited once, at its first path in ``named_modules()``;
       an instance reachable under several paths (shared modules) keeps that one tag.
    3. The segment of a kept module is its class ``__name__``; if its direct parent
       module is a container (``ModuleList``, ``Sequential``, ``ModuleDict``), the
       segment is ``Class.KEY`` with KEY the module's name in that container.
    4. Among the kept modules under one nearest kept ancestor, every module whose
       segment is not unique instead gets ``Class.RELPATH``, RELPATH being its module
       path relative to that ancestor. This repeats until all segments under the
       ancestor are unique (relative paths are unique, so it ends).
    5. The tag is ``/`` + the segments of the kept modules from the root down to it:
       tags are injective.
    6. An op gets the tag of the innermost kept module on its module stack; an op
       run directly in the root gets the root tag.
    """

    def __init__(self, model: nn.Module, keep: KeepPredicate | None = None) -> None:
        keep = keep or is_kept
        self._by_id: dict[int, ModuleInfo] = {}
        modules = dict(model.named_modules())  # first path per instance (rule 2)
        self._by_path = dict(model.named_modules(remove_duplicate=False))
        kept = [p for p, m in modules.items() if p == "" or keep(m)]
        kept_set = set(kept)

        def nearest_kept_ancestor(path: str) -> str:
            parts = path.split(".")
            for i in range(len(parts) - 1, 0, -1):
                candidate = ".".join(parts[:i])
                if candidate in kept_set:
                    return candidate
            return ""

        children: dict[str, list[str]] = {}
        for path in kept[1:]:
            children.setdefault(nearest_kept_ancestor(path), []).append(path)

        segments: dict[str, str] = {"": type(model).__name__}
        for ancestor, paths in children.items():
            segments.update(_unique_segments(ancestor, paths, modules))

        for path in kept:  # named_modules order: parents before children
            parent = None if path == "" else self._by_id[id(modules[nearest_kept_ancestor(path)])].tag
            tag = f"{parent or ''}/{segments[path]}"
            cls = type(modules[path])
            self._by_id[id(modules[path])] = ModuleInfo(
                tag=tag,
                qualified_class=f"{cls.__module__}.{cls.__qualname__}",
                path=path,
                parent=parent,
                module=modules[path],
            )
        self._by_tag = {info.tag: info for info in self._by_id.values()}
        self.root = self._by_id[id(model)]

    def __iter__(self) -> Iterable[ModuleInfo]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def tags(self) -> list[str]:
        return [info.tag for info in self._by_id.values()]

    def info(self, tag: str) -> ModuleInfo:
        return self._by_tag[tag]

    def tag_of_stack(self, paths: Iterable[str]) -> str:
        """Tag for an op whose module stack (outermost first) is ``paths`` (rule 6).

        Raises ``KeyError`` for a path that is not a submodule of the model.
        """
        tag = self.root.tag
        for path in paths:
            tag = self.tag_of_path(path) or tag
        return tag

    def tag_of_path(self, path: str) -> str | None:
        """The tag of the module at ``path`` if it is kept, else None; ``KeyError`` if there is none."""
        info = self._by_id.get(id(self._by_path[path]))
        return info.tag if info is not None else None


def _unique_segments(ancestor: str, paths: list[str], modules: dict[str, nn.Module]) -> dict[str, str]:
    """Segments (rules 3-4) for the kept modules whose nearest kept ancestor is ``ancestor``."""
    segments: dict[str, str] = {}
    for path in paths:
        parent_path, _, key = path.rpartition(".")
        name = type(modules[path]).__name__
        segments[path] = f"{name}.{key}" if isinstance(modules[parent_path], _CONTAINERS) else name
    relative = {p: p[len(ancestor) + 1 :] if ancestor else p for p in paths}
    while True:
        counts = Counter(segments.values())
        clashing = [p for p in paths if counts[segments[p]] > 1]
        if not clashing:
            return segments
        for path in clashing:
            segments[path] = f"{type(modules[path]).__name__}.{relative[path]}"
