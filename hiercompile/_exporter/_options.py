"""The choices an export carries from its arguments to the step that reads them, in two groups.

:class:`GraphOptions` say what the ONNX graph looks like after the carry step (names,
optimization, metadata); :class:`SaveOptions` say which files a result writes. ``export``,
``export_pretrained`` and the compile backend build them once and hand them on whole.
"""

from __future__ import annotations

__all__ = ["GraphOptions", "SaveOptions"]

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class GraphOptions:
    """How the carry step writes the graph.

    Attributes:
        optimize: run onnxscript's optimizer (constant folding, rewrites, CSE).
        input_names: names of the ONNX inputs (None: forward's parameters).
        output_names: names of the ONNX outputs (None: the exporter's).
        keep_initializers_as_inputs: also list the weights among the graph inputs.
        scoped_names: name nodes ``/module/path/OpType_n``.
        namespace: set each node's ``namespace`` metadata to its tag path.
    """

    optimize: bool = True
    input_names: Sequence[str] | None = None
    output_names: Sequence[str] | None = None
    keep_initializers_as_inputs: bool = False
    scoped_names: bool = True
    namespace: bool = False


@dataclasses.dataclass(frozen=True)
class SaveOptions:
    """Which files a result writes beside the model.

    Attributes:
        functions: the functions form (``model.functions.onnx``).
        attributes: the attribute form (``model.attributes.onnx``, invalid ONNX).
        external_data: weights in ``<model file>.data`` (None: only past protobuf's 2 GB limit).
    """

    functions: bool = False
    attributes: bool = False
    external_data: bool | None = None

    def chosen(self) -> dict[str, object]:
        """The options set to something other than their default."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) not in (False, None)
        }
