"""The tag rule: which modules are kept and what each kept module instance is called.

This file is the one place where tags are decided (docs/tags.md: kept modules, tags). Every other pass
only looks tags up in the :class:`ModuleHierarchy` built here.
"""

from __future__ import annotations

__all__ = ["KeepPredicate", "ModuleHierarchy", "ModuleInfo", "is_kept"]

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from .tags import tag_depth

KeepPredicate = Callable[[nn.Module], bool]

_CONTAINERS = (nn.ModuleList, nn.Sequential, nn.ModuleDict)
_CONTAINER_NAMES = frozenset(f"{c.__module__}.{c.__qualname__}" for c in _CONTAINERS)


def is_kept(module: nn.Module) -> bool:
    """Default keep predicate: the module's class is not a PyTorch built-in."""
    return _is_kept_class(_qualified(type(module)))


def _is_kept_class(qualified_class: str) -> bool:
    return not qualified_class.startswith("torch.")


@dataclasses.dataclass(frozen=True)
class ModuleInfo:
    """One kept module instance: its tag, class, module path, parent tag and parameter count.

    ``module`` is the instance; None for a hierarchy read from an ``ExportedProgram``.
    """

    tag: str
    qualified_class: str
    path: str
    parent: str | None
    num_parameters: int = 0
    module: nn.Module | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def depth(self) -> int:
        return tag_depth(self.tag)


@dataclasses.dataclass(frozen=True)
class _Row:
    """A module of the tree: what the tag rules need to know about it."""

    qualified_class: str
    container: bool
    num_parameters: int
    module: nn.Module | None


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


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
       run directly in the root gets the root tag. A stack entry that is not kept
       stands for its nearest kept ancestor in the model tree, when that is inside
       what the entries before it gave (a ``torch.nn.Linear`` called in a
       ``torch.cond`` branch has only its own entry there: it takes the kept module
       that holds it, never the root).
    7. From an ``ExportedProgram`` (:meth:`from_program`), the modules are those on the
       ops' module stacks, with their recorded classes; a module that is on no stack
       counts as a container (``ModuleList``s are never called), and a shared instance
       has one tag per path.
    8. A module-stack entry names its module by path; inside a control-flow branch
       (``torch.cond``, ``scan``) the path starts at the branch function's closure
       (``L['args'][1].__closure__[0].cell_contents.inner``), and the entry's key, the
       module's ``id``, names it instead.
    """

    def __init__(self, model: nn.Module, keep: KeepPredicate | None = None) -> None:
        keep = keep or is_kept
        first = dict(model.named_modules())  # first path per instance (rule 2)
        canonical = {id(m): path for path, m in first.items()}
        rows = {
            path: _Row(
                _qualified(type(m)),
                isinstance(m, _CONTAINERS),
                sum(p.numel() for p in m.parameters()) if path == "" or keep(m) else 0,
                m,
            )
            for path, m in first.items()
        }
        aliases = {path: canonical[id(m)] for path, m in model.named_modules(remove_duplicate=False)}
        self._build(rows, [p for p, m in first.items() if p == "" or keep(m)], aliases)
        self._ids = {str(key): path for key, path in canonical.items()}

    @classmethod
    def from_program(cls, program: torch.export.ExportedProgram) -> ModuleHierarchy:
        """The hierarchy of the modules on an ``ExportedProgram``'s module stacks (rule 7),
        with the default keep rule (a class that is not a PyTorch built-in)."""
        classes: dict[str, str] = {}
        for node in program.graph.nodes:
            for path, qualified_class in (node.meta.get("nn_module_stack") or {}).values():
                name = qualified_class if isinstance(qualified_class, str) else _qualified(qualified_class)
                classes.setdefault(path, name)
        classes.setdefault("", "Model")
        parameters = {name: program.state_dict[name].numel() for name in program.graph_signature.parameters}
        paths = sorted(classes, key=lambda p: (p.count(".") + bool(p), p))  # parents first
        kept = [p for p in paths if p == "" or _is_kept_class(classes[p])]
        rows = {}
        for path in paths:
            parent = path.rpartition(".")[0]
            container = parent not in classes or classes[parent] in _CONTAINER_NAMES
            prefix = f"{path}." if path else ""
            count = sum(n for name, n in parameters.items() if name.startswith(prefix)) if path in kept else 0
            rows[path] = _Row(classes[path], classes[path] in _CONTAINER_NAMES, count, None)
            if path and container:  # the rule reads the parent's kind: record it on a row of its own
                rows.setdefault(parent, _Row("", True, 0, None))
        hierarchy = cls.__new__(cls)
        hierarchy._build(rows, kept, {p: p for p in classes})
        hierarchy._ids = {}
        return hierarchy

    def _build(self, rows: dict[str, _Row], kept: list[str], aliases: dict[str, str]) -> None:
        """Tags for the ``kept`` paths (parents first) of the module tree ``rows`` (rules 1-5)."""
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
        segments: dict[str, str] = {"": _class_name(rows[""].qualified_class)}
        for ancestor, paths in children.items():
            segments.update(_unique_segments(ancestor, paths, rows))
        self._by_path: dict[str, ModuleInfo] = {}
        for path in kept:
            parent = None if path == "" else self._by_path[nearest_kept_ancestor(path)].tag
            row = rows[path]
            self._by_path[path] = ModuleInfo(
                tag=f"{parent or ''}/{segments[path]}",
                qualified_class=row.qualified_class,
                path=path,
                parent=parent,
                num_parameters=row.num_parameters,
                module=row.module,
            )
        self._aliases = aliases
        self._by_tag = {info.tag: info for info in self._by_path.values()}
        self.root = self._by_path[""]

    def __iter__(self) -> Iterator[ModuleInfo]:
        return iter(self._by_path.values())

    def __len__(self) -> int:
        return len(self._by_path)

    @property
    def tags(self) -> list[str]:
        return [info.tag for info in self._by_path.values()]

    def info(self, tag: str) -> ModuleInfo:
        return self._by_tag[tag]

    def tag_of_stack(self, paths: Iterable[str]) -> str:
        """Tag for an op whose module stack (outermost first) is ``paths`` (rule 6).

        Raises ``KeyError`` for a path that is not a submodule of the model.
        """
        tag = self.root.tag
        for path in paths:
            found = self.tag_of_path(path)
            if found is None:
                found = self._nearest_kept_tag(path)
                if not found.startswith(f"{tag}/"):  # an alias elsewhere in the tree: the stack knows better
                    continue
            tag = found
        return tag

    def _nearest_kept_tag(self, path: str) -> str:
        """The tag of the nearest kept module above ``path`` in the model tree."""
        parts = path.split(".")
        for i in range(len(parts) - 1, 0, -1):
            canonical = self._aliases.get(".".join(parts[:i]))
            if canonical is not None and (info := self._by_path.get(canonical)) is not None:
                return info.tag
        return self.root.tag

    def tag_of_path(self, path: str) -> str | None:
        """The tag of the module at ``path`` if it is kept, else None; ``KeyError`` if there is none."""
        info = self._by_path.get(self._aliases[path])
        return info.tag if info is not None else None

    def module_path(self, key: str, path: str) -> str:
        """The module path of a module-stack entry (rule 8): ``path`` when it names a submodule,
        else the module whose ``id`` is ``key`` (``@k`` call suffix ignored); ``KeyError`` if neither."""
        if path in self._aliases:
            return path
        return self._ids.get(key.partition("@")[0]) or self._aliases[path]


def _class_name(qualified_class: str) -> str:
    return qualified_class.rsplit(".", 1)[-1]


def _unique_segments(ancestor: str, paths: list[str], rows: dict[str, _Row]) -> dict[str, str]:
    """Segments (rules 3-4) for the kept modules whose nearest kept ancestor is ``ancestor``."""
    segments: dict[str, str] = {}
    for path in paths:
        parent_path, _, key = path.rpartition(".")
        name = _class_name(rows[path].qualified_class)
        segments[path] = f"{name}.{key}" if rows[parent_path].container else name
    relative = {p: p[len(ancestor) + 1 :] if ancestor else p for p in paths}
    while True:
        counts = Counter(segments.values())
        clashing = [p for p in paths if counts[segments[p]] > 1]
        if not clashing:
            return segments
        for path in clashing:
            segments[path] = f"{_class_name(rows[path].qualified_class)}.{relative[path]}"
