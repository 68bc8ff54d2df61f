"""Running tagged graphs: the ``torch.compile`` backend (``_backend``) and its runtimes by name
(``_registry``; ``_ort`` and ``_eager`` ship, other packages add theirs by entry point)."""

from ._backend import Backend, backend
from ._registry import Compiled, Runtime, runtime_named

__all__ = ["Backend", "Compiled", "Runtime", "backend", "runtime_named"]
