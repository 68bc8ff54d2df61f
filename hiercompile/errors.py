"""The errors and warnings hiercompile raises.

Every error is a :class:`HiercompileError`, one class per step (capture, tag, lower, carry,
save, and the tools), whose message says what failed and what to do; every warning is a
``UserWarning``. The same names are importable from ``hiercompile`` itself.
"""

from . import _errors
from ._errors import *  # noqa: F403 - the classes, as _errors.__all__ names them

__all__ = list(_errors.__all__)
