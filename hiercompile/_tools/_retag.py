"""``hiercompile.retag``: the tags of a tagged model, onto a model another tool made from it."""

from __future__ import annotations

__all__ = ["load_transformed", "retag"]

import warnings
from pathlib import Path

import onnx
import onnx_ir as ir

from .._errors import BrokenModelWarning, RetagError
from .._io import onnx_writer, write_files
from ..passes import RetagPass, RetagResult
from ..passes.retag import RELATED_SHARE
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
    A model that does not come from ``tagged`` (less than half its weights are ``tagged``'s,
    :attr:`~hiercompile.passes.RetagResult.related`) is refused with a :class:`RetagError`
    stating the evidence, before anything is written.
    """
    source = load_tagged(tagged)
    target = load_transformed(model)
    functions = {(f.domain, f.name) for f in source.functions.values()} - {
        (f.domain, f.name) for f in target.functions.values()
    }
    undefined = sorted({n.op_type for n in target.graph.all_nodes() if (n.domain, n.op_type) in functions})
    if undefined:
        warnings.warn(
            f"the model calls functions it does not define ({', '.join(undefined[:3])}): no runtime can load it; "
            "the tool that made it dropped them (run it on the flat model.onnx instead)",
            BrokenModelWarning,
            stacklevel=2,
        )
    result = RetagPass(source)(target)
    if not result.related:
        raise RetagError(
            f"the model does not come from the tagged model it was given with: {result.relation()} "
            f"(at least {RELATED_SHARE:.0%} expected); pass the hiercompile export it was made from"
        )
    if output is not None:
        output = Path(output)
        write_files(output.parent, {output.name: onnx_writer(target)})
    return result
