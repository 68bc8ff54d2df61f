"""hiercompile: export PyTorch models to ONNX with every op tagged by the module it ran in."""

from ._backend import backend
from ._errors import HiercompileError
from ._export import ExportResult, export
from ._extract import extract
from ._profile import ProfileReport, profile
from ._report import report
from ._retriever import HierarchyRetriever
from ._verify import VerifyReport, verify
from ._version import __version__
from .passes import ModuleHierarchy, is_kept

__all__ = [
    "ExportResult",
    "HierarchyRetriever",
    "HiercompileError",
    "ModuleHierarchy",
    "ProfileReport",
    "VerifyReport",
    "__version__",
    "backend",
    "export",
    "extract",
    "is_kept",
    "profile",
    "report",
    "verify",
]
