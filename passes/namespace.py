"""Group nodes by our hierarchy in viewers that read a ``namespace`` (Google's Model Explorer)."""

from __future__ import annotations

__all__ = ["NAMESPACE_KEY", "ORIGINAL_NAMESPACE_KEY", "NamespacePass"]

import onnx_ir as ir

from .tags import TAG_KEY

NAMESPACE_KEY = "namespace"
ORIGINAL_NAMESPACE_KEY = "hiercompile.original_namespace"


class NamespacePass(ir.passes.InPlacePass):
    """Set every tagged node's ``namespace`` metadata to its tag path.

    Model Explorer's ONNX adapter groups nodes into nested, collapsible groups by the
    ``/``-separated segments of a node's ``namespace`` metadata (else of its name).

    Rules:

    1. A tagged node of the main graph (and its subgraphs) gets ``namespace`` = its
       primary tag without the leading ``/``: ``Model/Stack/Block.0``,
       so the groups are the kept modules and carry their class names.
    2. A ``namespace`` already there (the exporter writes one of module paths and
       qualified classes) is kept under ``hiercompile.original_namespace``.
    3. Untagged nodes (``Constant``) and function bodies (relative tags) are left alone.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            tag = node.metadata_props.get(TAG_KEY)
            if tag is None or not tag.startswith("/"):
                continue
            namespace = tag.lstrip("/")
            old = node.metadata_props.get(NAMESPACE_KEY)
            if old == namespace:
                continue
            if old is not None and ORIGINAL_NAMESPACE_KEY not in node.metadata_props:
                node.metadata_props[ORIGINAL_NAMESPACE_KEY] = old
            node.metadata_props[NAMESPACE_KEY] = namespace
            modified = True
        return ir.passes.PassResult(model, modified=modified)
