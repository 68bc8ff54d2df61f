"""The export core, one private module per stage; the packages above import from here only.

1. ``_arguments`` and ``_capture``: torch.onnx.export's arguments read, then ``torch.export``
   after checking the inputs fit ``forward`` (``_weights``: parameters on the meta device).
2. tag: the FX pass ``hiercompile.passes.fx_tag`` (rules in ``passes/module_tags.py``).
3. ``_lower``: the dynamo ONNX exporter, unoptimized (``_decompose``: op by op).
4. ``_carry``: tags into the ONNX model and onnxscript's optimizer (``_optimizer``) around them.
5. ``_derive``: networkx DAGs, per-module DAGs, the operation table, the hierarchy summary.

``_export`` runs them in order, with the choices of ``_options``, and returns an
:class:`ExportResult` (``_result``), which saves the files of the artifact table; the
functions form is ``_functions``.
"""

from ._capture import capture_mode, check_inputs
from ._export import Progress, Steps, export, export_program
from ._functions import functionize
from ._options import GraphOptions, SaveOptions
from ._result import ExportResult
from ._weights import checkpoint_bytes, empty_model, meta_parameters

__all__ = [
    "ExportResult",
    "GraphOptions",
    "Progress",
    "SaveOptions",
    "Steps",
    "capture_mode",
    "check_inputs",
    "checkpoint_bytes",
    "empty_model",
    "export",
    "export_program",
    "functionize",
    "meta_parameters",
]
