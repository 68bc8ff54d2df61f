"""Property tests: random module trees export with correct, injective tags and full coverage."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
from conftest import run_ir
from hiercompile.passes import is_under
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import hiercompile

WIDTH = 4


class Unit(nn.Module):
    """A kept module that runs ops of its own around its children (if any)."""

    def __init__(self, scale: float, children: list[nn.Module], container: str) -> None:
        super().__init__()
        self.scale = scale
        self.proj = nn.Linear(WIDTH, WIDTH)  # a torch.nn leaf, folded into this module
        if container == "list":
            self.kids = nn.ModuleList(children)
        elif container == "seq":
            self.kids = nn.Sequential(*children) if children else nn.Sequential()
        elif container == "dict":
            self.kids = nn.ModuleDict({f"k{i}": c for i, c in enumerate(children)})
        else:
            for i, child in enumerate(children):
                setattr(self, f"c{i}", child)
        self.container = container

    def forward(self, x):
        x = torch.tanh(self.proj(x)) * self.scale
        if self.container == "seq":
            return self.kids(x) + x
        kids = (
            self.kids.values()
            if self.container == "dict"
            else self.kids
            if self.container == "list"
            else (getattr(self, name) for name in sorted(n for n in self._modules if n.startswith("c")))
        )
        for kid in kids:
            x = kid(x) - x
        return x


class Other(Unit):
    """A second kept class, so siblings differ in class too."""


@st.composite
def trees(draw, depth: int = 0) -> nn.Module:
    cls = draw(st.sampled_from([Unit, Other]))
    n_children = 0 if depth >= draw(st.integers(1, 4)) else draw(st.integers(0, 3))
    children = [draw(trees(depth=depth + 1)) for _ in range(n_children)]
    container = draw(st.sampled_from(["attr", "list", "seq", "dict"]))
    return cls(draw(st.sampled_from([0.5, 1.5])), children, container)


class Root(nn.Module):
    def __init__(self, body: nn.Module, reuse: bool) -> None:
        super().__init__()
        self.body = body
        self.shared = (
            next((m for m in body.modules() if isinstance(m, Unit) and m is not body), None) if reuse else None
        )

    def forward(self, x):
        y = self.body(x * 2)  # an op in the root
        if self.shared is not None:
            y = y + self.shared(y)  # the same instance called a second time, from the root
        return y + 1


def spec_tags(model: nn.Module) -> dict[str, str]:
    """Module path -> tag, computed from named_modules() the way docs/tags.md words it."""
    modules = dict(model.named_modules())
    kept = [p for p, m in modules.items() if p == "" or not type(m).__module__.startswith("torch.")]

    def anchor(path: str) -> str:  # nearest kept ancestor
        parts = path.split(".")
        return next((".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1) if ".".join(parts[:i]) in kept), "")

    segment = {"": type(model).__name__}
    for path in kept[1:]:
        parent, _, key = path.rpartition(".")
        in_container = isinstance(modules[parent], nn.ModuleList | nn.Sequential | nn.ModuleDict)
        segment[path] = type(modules[path]).__name__ + (f".{key}" if in_container else "")
    changed = True
    while changed:
        changed = False
        for path in kept[1:]:
            rivals = [p for p in kept[1:] if p != path and anchor(p) == anchor(path) and segment[p] == segment[path]]
            if rivals:
                for p in [path, *rivals]:
                    rel = p[len(anchor(p)) + 1 :] if anchor(p) else p
                    segment[p] = f"{type(modules[p]).__name__}.{rel}"
                changed = True
    tags = {"": "/" + segment[""]}
    for path in kept[1:]:
        tags[path] = tags[anchor(path)] + "/" + segment[path]
    return tags


@pytest.mark.slow
@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(body=trees(), reuse=st.booleans())
def test_random_tree_exports_correctly(body, reuse):
    model = Root(body, reuse).eval()
    x = torch.randn(2, WIDTH)
    result = hiercompile.export(model, (x,))
    expected = spec_tags(model)
    assert set(result.hierarchy) == set(expected.values())
    assert len(set(expected.values())) == len(expected)  # injective
    assert {e["module"]: t for t, e in result.hierarchy.items()} == expected
    assert result.coverage == 1.0
    assert nx.is_directed_acyclic_graph(result.graph)
    for tag, dag in result.module_dags.items():
        members = [n for n, d in result.graph.nodes(data=True) if is_under(d["tags"][0], tag)]
        assert set(dag.nodes) == set(members)
        assert set(dag.edges) == set(result.graph.subgraph(members).edges)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(run_ir(result.model, {"x": x.numpy()})[0], want, atol=1e-5)
    if reuse and model.shared is not None:
        shared_tag = expected[next(p for p, m in model.named_modules() if m is model.shared)]
        assert result.hierarchy[shared_tag]["num_ops"] > 0
