"""Readable node names: ``/stack/blocks.0/mix/MatMul_1`` instead of ``node_MatMul_159``."""

from __future__ import annotations

__all__ = ["ORIGINAL_NAME_KEY", "ScopedNamesPass"]

from collections import Counter

import onnx_ir as ir

from .tags import TAG_KEY

ORIGINAL_NAME_KEY = "hiercompile.original_name"


def scope_of(module_path: str) -> str:
    """``stack.blocks.0.mix`` -> ``/stack/blocks.0/mix``: a container index stays with its name."""
    scope: list[str] = []
    for part in module_path.split(".") if module_path else []:
        if part.isdigit() and scope:
            scope[-1] = f"{scope[-1]}.{part}"
        else:
            scope.append(part)
    return "/" + "/".join(scope) if scope else ""


class ScopedNamesPass(ir.passes.InPlacePass):
    """Rename every node after the module it ran in, in subgraphs too.

    Rules:

    1. A node's new name is ``<scope>/<OpType>_<n>``: the scope is the module path of
       its primary tag with ``/`` separators (``/stack/blocks.0/mix``;
       empty for the root), n counts that op type in that module from 0, in graph order
       (a control-flow node's subgraphs right after it), so names are stable across
       exports of the same model.
    2. A name already taken anywhere in the model gets ``_<k>`` appended until it is unique.
    3. The old name is kept in ``hiercompile.original_name``; graph inputs, outputs
       and initializers keep their names.
    """

    def __init__(self, module_paths: dict[str, str]) -> None:
        super().__init__()
        self.scopes = {tag: scope_of(path) for tag, path in module_paths.items()}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        counts: Counter = Counter()
        taken: set[str] = set()
        modified = False
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            scope = self.scopes.get(node.metadata_props.get(TAG_KEY, ""), "")
            base = f"{scope}/{node.op_type}_{counts[(scope, node.op_type)]}"
            counts[(scope, node.op_type)] += 1
            name, k = base, 1
            while name in taken:
                name, k = f"{base}_{k}", k + 1
            taken.add(name)
            if node.name != name:
                if node.name and ORIGINAL_NAME_KEY not in node.metadata_props:
                    node.metadata_props[ORIGINAL_NAME_KEY] = node.name
                node.name = name
                modified = True
        return ir.passes.PassResult(model, modified=modified)
