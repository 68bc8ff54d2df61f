"""The tag rule (docs/tags.md) on small hand-built module trees."""

from __future__ import annotations

import pytest
from hiercompile.passes import ModuleHierarchy, is_kept
from torch import nn


class Leaf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        return self.proj(x).relu()


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Leaf()

    def forward(self, x):
        return self.inner(x) + 1


class Root(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])
        self.seq = nn.Sequential(nn.Linear(4, 4), Leaf())
        self.heads = nn.ModuleDict({"a": Leaf(), "b": Leaf()})
        self.left = Leaf()
        self.right = Leaf()
        self.norm = nn.LayerNorm(4)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        x = self.seq(x) + self.heads["a"](x) + self.heads["b"](x)
        return self.norm(self.left(x) * self.right(x))


def test_containers_siblings_and_leaves():
    h = ModuleHierarchy(Root())
    assert set(h.tags) == {
        "/Root",
        "/Root/Block.0",
        "/Root/Block.0/Leaf",
        "/Root/Block.1",
        "/Root/Block.1/Leaf",
        "/Root/Leaf.1",  # seq.1
        "/Root/Leaf.a",
        "/Root/Leaf.b",
        "/Root/Leaf.left",
        "/Root/Leaf.right",
    }  # torch.nn leaves (Linear, LayerNorm) and containers are never tags


def test_same_segment_from_nested_containers_uses_relative_paths():
    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stack = nn.Sequential(Block(), nn.Sequential(Block()))

    h = ModuleHierarchy(Outer())
    assert set(h.tags) == {
        "/Outer",
        "/Outer/Block.stack.0",
        "/Outer/Block.stack.0/Leaf",
        "/Outer/Block.stack.1.0",
        "/Outer/Block.stack.1.0/Leaf",
    }


def test_clash_between_container_key_and_relative_path_is_resolved():
    class Tricky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = Leaf()
            self.b = Leaf()
            self.d = nn.ModuleDict({"a": Leaf()})

    h = ModuleHierarchy(Tricky())
    tags = h.tags
    assert len(tags) == len(set(tags))
    assert set(tags) == {"/Tricky", "/Tricky/Leaf.a", "/Tricky/Leaf.b", "/Tricky/Leaf.d.a"}


def test_shared_instance_keeps_one_tag():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = Leaf()
            self.second = self.first

    h = ModuleHierarchy(Shared())
    assert h.tags == ["/Shared", "/Shared/Leaf"]
    assert h.tag_of_stack(["", "second"]) == h.tag_of_stack(["", "first"]) == "/Shared/Leaf"


def test_stack_resolution_skips_torch_builtins_and_defaults_to_root():
    h = ModuleHierarchy(Root())
    assert h.tag_of_stack([]) == "/Root"
    assert h.tag_of_stack(["", "norm"]) == "/Root"
    assert h.tag_of_stack(["", "blocks.1", "blocks.1.inner", "blocks.1.inner.proj"]) == "/Root/Block.1/Leaf"
    with pytest.raises(KeyError):
        h.tag_of_stack(["", "nope"])


def test_custom_keep_predicate_and_root_always_kept():
    h = ModuleHierarchy(Root(), keep=lambda m: isinstance(m, Block))
    assert set(h.tags) == {"/Root", "/Root/Block.0", "/Root/Block.1"}
    h = ModuleHierarchy(nn.Sequential(nn.Linear(2, 2)))
    assert h.tags == ["/Sequential"]
    h = ModuleHierarchy(nn.Sequential(nn.Linear(2, 2)), keep=lambda m: True)
    assert set(h.tags) == {"/Sequential", "/Sequential/Linear.0"}


def test_default_predicate():
    assert is_kept(Leaf()) and not is_kept(nn.Linear(1, 1)) and not is_kept(nn.ModuleList())


def test_metadata_fields():
    model = Root()
    h = ModuleHierarchy(model)
    info = h.info("/Root/Block.1/Leaf")
    assert info.path == "blocks.1.inner"
    assert info.parent == "/Root/Block.1"
    assert info.qualified_class.endswith("test_module_tags.Leaf")
    assert info.depth == 2
    assert h.root.parent is None and h.root.depth == 0
    assert info.module is model.blocks[1].inner
