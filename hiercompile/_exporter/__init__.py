"""The export pipeline, one private module per stage.

0. ``_models``: a preset, checkpoint directory or hub id, and example inputs (the CLI's).
1. ``_capture``: ``torch.export`` after checking the inputs fit ``forward``.
2. tag: the FX pass ``hiercompile.passes.fx_tag`` (rules in ``passes/module_tags.py``).
3. ``_lower``: the dynamo ONNX exporter, unoptimized.
4. ``_carry``: tags into the ONNX model and onnxscript's optimizer (``_optimizer``) around them.
5. ``_derive``: networkx DAGs, per-module DAGs, the operation table, the hierarchy summary.

``_export`` runs them in order and returns an :class:`ExportResult`.
"""

from ._export import ExportResult, Progress, Steps, export, export_program

__all__ = ["ExportResult", "Progress", "Steps", "export", "export_program"]
