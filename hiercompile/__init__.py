"""hiercompile: export PyTorch models to ONNX with every op tagged by the module it ran in."""

from ._errors import HiercompileError
from ._export import ExportResult, export
from ._version import __version__
from .passes import ModuleHierarchy, is_kept

__all__ = ["ExportResult", "HiercompileError", "ModuleHierarchy", "__version__", "export", "is_kept"]
