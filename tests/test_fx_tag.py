"""The FX tagging pass on a captured graph: tags from nn_module_stack, and the no-stack rule."""

from __future__ import annotations

import torch
from hiercompile.passes import TAG_KEY, ModuleHierarchy
from hiercompile.passes.fx_tag import call_indices, tag_fx_graph
from torch import fx, nn


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return torch.sigmoid(self.lin(x))


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = Inner()
        self.b = Inner()

    def forward(self, x):
        return self.b(self.a(x)) * 2  # the mul runs in the root


def test_tags_follow_the_module_stack():
    model = Outer()
    program = torch.export.export(model, (torch.randn(2, 4),), strict=False)
    tags = tag_fx_graph(program.graph, ModuleHierarchy(model))
    by_target = {}
    for node in program.graph.nodes:
        if node.op == "call_function":
            by_target.setdefault(str(node.target), []).append(tags[node.name])
            assert node.meta["custom"][TAG_KEY] == tags[node.name]
    assert by_target["aten.sigmoid.default"] == ["/Outer/Inner.a", "/Outer/Inner.b"]
    assert by_target["aten.linear.default"] == ["/Outer/Inner.a", "/Outer/Inner.b"]  # Linear folds into Inner
    assert by_target["aten.mul.Tensor"] == ["/Outer"]


class Again(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = Outer()

    def forward(self, x):
        return self.a(self.a(x))  # every module under `a` runs twice


def test_repeated_calls_keep_one_tag_and_record_the_call_index():
    model = Again()
    program = torch.export.export(model, (torch.randn(2, 4),), strict=False)
    tags = tag_fx_graph(program.graph, ModuleHierarchy(model))
    calls = call_indices(program.graph_module)[""]
    sigmoids = [n.name for n in program.graph.nodes if n.target == torch.ops.aten.sigmoid.default]
    assert [tags[n] for n in sigmoids] == ["/Again/Outer/Inner.a", "/Again/Outer/Inner.b"] * 2
    assert [calls.get(n, {}) for n in sigmoids] == [
        {},
        {},
        {"/Again/Outer": 1, "/Again/Outer/Inner.a": 1},
        {"/Again/Outer": 1, "/Again/Outer/Inner.b": 1},
    ]


def test_existing_tags_are_kept():
    model = Outer()
    program = torch.export.export(model, (torch.randn(2, 4),), strict=False)
    node = next(n for n in program.graph.nodes if n.op == "call_function")
    node.meta["custom"] = {TAG_KEY: "/Outer/Inner.b"}
    assert tag_fx_graph(program.graph, ModuleHierarchy(model))[node.name] == "/Outer/Inner.b"


def test_nodes_without_stack_inherit_from_users_then_inputs():
    model = Outer()
    h = ModuleHierarchy(model)
    graph = fx.Graph()
    x = graph.placeholder("x")
    orphan_before = graph.call_function(torch.neg, (x,))  # no stack; used by a and b
    in_a = graph.call_function(torch.sigmoid, (orphan_before,))
    in_b = graph.call_function(torch.tanh, (orphan_before,))
    orphan_after = graph.call_function(torch.add, (in_a, in_b))  # no stack, no users
    graph.output(orphan_after)
    in_a.meta["nn_module_stack"] = {"k0": ("", Outer), "k1": ("a", Inner)}
    in_b.meta["nn_module_stack"] = {"k0": ("", Outer), "k1": ("b", Inner)}
    tags = tag_fx_graph(graph, h)
    assert tags[in_a.name] == "/Outer/Inner.a"
    assert tags[in_b.name] == "/Outer/Inner.b"
    assert tags[orphan_before.name] == "/Outer"  # encloses both users
    assert tags[orphan_after.name] == "/Outer"  # encloses both inputs


def test_orphan_inherits_single_user_module():
    model = Outer()
    graph = fx.Graph()
    x = graph.placeholder("x")
    orphan = graph.call_function(torch.neg, (x,))
    user = graph.call_function(torch.sigmoid, (orphan,))
    graph.output(user)
    user.meta["nn_module_stack"] = {"k0": ("", Outer), "k1": ("b", Inner), "k2": ("b.lin", nn.Linear)}
    assert tag_fx_graph(graph, ModuleHierarchy(model))[orphan.name] == "/Outer/Inner.b"


def test_normalize_path():
    model = Outer()
    graph = fx.Graph()
    node = graph.call_function(torch.neg, (graph.placeholder("x"),))
    graph.output(node)
    node.meta["nn_module_stack"] = {"k": ("L['self'].a", Inner)}
    tags = tag_fx_graph(
        graph, ModuleHierarchy(model), normalize_path=lambda p: p.removeprefix("L['self'].") if p != "L['self']" else ""
    )
    assert tags[node.name] == "/Outer/Inner.a"
