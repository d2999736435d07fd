"""Limit the threads of the BLAS libraries already loaded in this process.

The training step is made of many small products (batch × hidden @ hidden ×
hidden, e.g. 128 × 128 × 128). Two BLAS threads gain little on them and lose a
lot when the cores are shared with other work: each product then waits for
both threads to be scheduled (measured on a loaded 2-core machine: about
30 ms a copy step with one thread, 50–115 ms with two). The environment
variables (``OPENBLAS_NUM_THREADS``) only act before NumPy is imported, which
is too late for a command-line tool of a package that imports NumPy, so this
module calls the libraries' own setters through ``ctypes`` instead, on Linux,
for the OpenBLAS builds that NumPy and SciPy wheels ship. Anything else is
left alone and reported as such.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["blas_threads", "limit_blas_threads"]

_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)


_GETTERS = {name: name.replace("set_", "get_") for name in _SETTERS}


def _loaded_openblas() -> list[str]:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


def _handles() -> list[tuple[Callable[[int], Any], Callable[[], int]]]:
    """``(setter, getter)`` pairs of the loaded OpenBLAS libraries."""
    out = []
    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            getter = getattr(lib, _GETTERS[name], None)
            if setter is not None and getter is not None:
                setter.argtypes = [ctypes.c_int]
                setter.restype = None
                getter.argtypes = []
                getter.restype = ctypes.c_int
                out.append((setter, getter))
                break
    return out


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[int]:
    """Run a block with `n` BLAS (and numba, and torch) threads, then restore the counts.

    Parameters
    ----------
    n : int or None
        Number of threads; None leaves everything alone.

    Yields
    ------
    int
        How many libraries were changed.

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks._threads import blas_threads
    >>> with blas_threads(1) as changed:
    ...     changed >= 0
    True
    """
    if n is None:
        yield 0
        return
    handles = _handles()
    before = [getter() for _, getter in handles]
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    numba = _numba()
    numba_before = numba.get_num_threads() if numba is not None else None
    for setter, _ in handles:
        setter(int(n))
    if torch is not None:
        torch.set_num_threads(int(n))
    if numba is not None:
        numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield len(handles) + (torch is not None) + (numba is not None)
    finally:
        for (setter, _), old in zip(handles, before, strict=True):
            setter(old)
        if torch is not None:
            torch.set_num_threads(torch_before)
        if numba is not None:
            numba.set_num_threads(numba_before)


def _numba():
    """Numba, when installed (else None).

    The library's kernels (``engine="auto"``) may use its parallel loops, which
    suffer from shared cores like BLAS threads do. It is imported here, not lazily
    by the first kernel call, so that its thread count can be set for the whole run.
    """
    if "numba" not in sys.modules and importlib.util.find_spec("numba") is None:
        return None
    try:
        import numba
    except ImportError:
        return None
    return numba


def limit_blas_threads(n: int) -> int:
    """Set the thread count of every loaded OpenBLAS (and of torch, if imported) to `n`.

    Parameters
    ----------
    n : int
        Number of threads (>= 1).

    Returns
    -------
    int
        How many libraries were changed (0 where none could be: then the
        ``OPENBLAS_NUM_THREADS`` variable, set before Python starts, does it).

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks._threads import limit_blas_threads
    >>> limit_blas_threads(2) >= 0
    True
    """
    handles = _handles()
    for setter, _ in handles:
        setter(int(n))
    changed = len(handles)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(int(n))
        changed += 1
    return changed
