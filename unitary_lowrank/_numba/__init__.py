"""Optional Numba kernels for NumPy inputs on the CPU.

Only :func:`load` is public inside the package: it imports the kernels on
first use (numba is an optional dependency) and returns ``None`` when numba is
missing or disabled with ``UNITARY_LOWRANK_DISABLE_NUMBA=1``.
"""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType

__all__ = ["load"]


@functools.cache
def load() -> ModuleType | None:
    """The kernel module, or None when numba is missing or disabled."""
    if os.environ.get("UNITARY_LOWRANK_DISABLE_NUMBA", "0") == "1":
        return None
    try:
        return importlib.import_module("unitary_lowrank._numba._updates")
    except ImportError:
        return None
