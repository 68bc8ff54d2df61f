"""``hiercompile.retag``: the tags of a tagged model, onto a model another tool made from it."""

from __future__ import annotations

__all__ = ["load_transformed", "retag"]

from pathlib import Path

import onnx
import onnx_ir as ir

from .._io import onnx_writer, write_files
from ..passes import RetagPass, RetagResult
from ._retrieve import ModelSource, load_file, load_tagged


def load_transformed(source: ModelSource) -> ir.Model:
    """A model some tool wrote (it need not carry hiercompile's metadata), as an ``ir.Model``."""
    if isinstance(source, ir.Model):
        return source
    if isinstance(source, onnx.ModelProto):
        return ir.from_proto(source)
    return load_file(Path(source))


def retag(model: ModelSource, tagged: ModelSource, output: str | Path | None = None) -> RetagResult:
    """Tag ``model``, which a tool (ONNX Runtime's optimizer, a quantizer, a simplifier, an opset
    converter) made from the hiercompile export ``tagged`` (flat or functions form), following
    docs/tags.md; see :class:`hiercompile.passes.RetagPass` for the evidence, in order.

    Nothing is guessed: ``result.unmapped`` lists every node left untagged with its op and
    why, and ``result.coverage`` is the share tagged. ``output``: write the tagged model there.
    """
    source = load_tagged(tagged)
    target = load_transformed(model)
    result = RetagPass(source)(target)
    if output is not None:
        output = Path(output)
        write_files(output.parent, {output.name: onnx_writer(target)})
    return result
