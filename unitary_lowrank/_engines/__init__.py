"""Two-pass NumPy engines of the square updates, and the choice between them.

The array-agnostic body (``_agnostic/_updates.py``) reads U three times (``Uᴴ A``,
``U Q``, the rank-r update) and forms an n×n temporary. An engine does the
same update of a square NumPy U in two passes over U and without the n×n
temporary:

- :mod:`.blocked` walks U in cache-sized blocks of rows with BLAS products;
- :mod:`.numba` runs fused Numba kernels; numba is an optional dependency,
  imported by :func:`load_numba` on first use.

Both are modules with the three functions of :class:`Engine`, called in this
order by ``updates.py``, which does the small steps in between with the
array-agnostic code::

    UhA, UB = engine.adjoint_products(U, A, B, batch)            # pass 1 over U
    Q, beta, alpha = step_subspace(UhA, B, batch, np)            # [B, UᴴA] = Q [β, α]
    D = core_minus_identity(alpha, beta, method, np)             # F − I, r×r
    L = engine.basis_from_products(U, A, UB, Q, beta, alpha, batch)   # U Q
    result = engine.write_update(U, L, D, Q, batch, out)         # pass 2: U + L D Qᴴ

The left basis and the right factor ``D Qᴴ`` are computed the same way by both
engines, in :mod:`._shared`. :func:`select` picks the engine of a call.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import sys
from types import ModuleType
from typing import Protocol

import numpy as np

from .._array_api import is_numpy_namespace
from .._signals import deferred_interrupts
from .._tunables import AUTO_MIN_ENTRIES, DISABLE_NUMBA_VAR
from . import blocked

__all__ = ["AUTO_MIN_ENTRIES", "ENGINES", "Engine", "load_numba", "load_small", "select"]

#: Values of the ``engine`` argument of the updates.
ENGINES = ("auto", "numba", "blas", "array_api")

# AUTO_MIN_ENTRIES ("auto" takes the two-pass engines from this many entries on) and
# DISABLE_NUMBA_VAR (set to 1 to make load_numba return None even when numba is installed)
# are defined in _tunables.py, with the library's other tunables.


class Engine(Protocol):
    """The interface of a two-pass engine: a module with these three functions.

    Common to all three: NumPy arrays in, NumPy arrays out; none of the inputs
    is written, except `out`. ``batch`` is the broadcast batch shape of U, A and
    B, whose leading axes broadcast against it. U is square, ``(..., n, n)``;
    U, A and B share one floating dtype, the working dtype (the ``result_type``
    of the caller's arrays), and A and B are finite with ``k >= 1`` columns.
    The arrays of the small core (Q, β, α, D) are in double precision, of the
    kind (real or complex) of the working dtype. Any memory layout is read
    correctly (Fortran order, negative strides, broadcast views). Results are in
    the working dtype with the full batch shape ``(*batch, ...)``.
    """

    def adjoint_products(self, U: np.ndarray, A: np.ndarray, B: np.ndarray,
                         batch: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``(Uᴴ A, U B)``, both ``(*batch, n, k)``, from one pass over U.

        A and B are ``(..., n, k)``.
        """

    def basis_from_products(self, U: np.ndarray, A: np.ndarray, UB: np.ndarray, Q: np.ndarray,
                            beta: np.ndarray, alpha: np.ndarray,
                            batch: tuple[int, ...]) -> np.ndarray:
        """The left basis ``U Q``, ``(*batch, n, r)``.

        `UB` is the second result of :meth:`adjoint_products`; Q ``(*batch, n, r)``
        has orthonormal columns and β, α ``(*batch, r, k)`` satisfy
        ``[B, Uᴴ A] = Q [β, α]``. The result is ``[U B, A] R⁻¹`` with ``R = [β, α]``,
        without a pass over U, when R is square and well conditioned, else ``U @ Q``.
        """

    def write_update(self, U: np.ndarray, L: np.ndarray, D: np.ndarray, Q: np.ndarray,
                     batch: tuple[int, ...], out: np.ndarray | None = None) -> np.ndarray:
        """``U + L D Qᴴ``, ``(*batch, n, n)``, from one pass over U.

        L is the left basis ``(*batch, n, r)``, D ``(*batch, r, r)`` the core minus
        the identity, ``F − I``, and Q as for :meth:`basis_from_products`. Without
        `out` the result is a new array (large ones on memory of the result pool,
        ``_pool.py``). With `out` (shape ``(*batch, n, n)``, the working dtype, any
        layout, U itself allowed) the result is written into `out` by one call that
        no Python signal handler can interrupt, so an exception raised meanwhile
        (KeyboardInterrupt) leaves `out` wholly old or wholly new; `out` is returned.
        """


@functools.cache
def load_numba() -> ModuleType | None:
    """The Numba engine, or None when numba is missing or disabled.

    ``UNITARY_LOWRANK_DISABLE_NUMBA=1`` disables it. numba is imported on the
    first call only.
    """
    if os.environ.get(DISABLE_NUMBA_VAR, "0") == "1":
        return None
    return _import_engine(f"{__name__}.numba")


@functools.cache
def _import_small() -> ModuleType | None:
    return _import_engine(f"{__name__}.small")


def _import_engine(name: str) -> ModuleType | None:
    """Import the engine module `name` (and numba, hundreds of modules), or None.

    None when a dependency is missing (ImportError). The import is all or
    nothing: a Ctrl-C (SIGINT) that arrives meanwhile is held back until it is
    over and then delivered to the handler that was in place (KeyboardInterrupt by
    default), and an import that fails for any reason all the same (an exception
    raised by a signal handler in another thread's setup, MemoryError, ...) takes
    the modules it left half-initialised out of ``sys.modules``, so that the next
    call imports them afresh instead of finding, say, ``numba`` without
    ``numba.core``.
    """
    before = set(sys.modules)
    with deferred_interrupts():  # a held-back Ctrl-C is raised at its end, after the import
        try:
            return importlib.import_module(name)
        except ImportError:
            _forget_new_modules(before)
            return None
        except BaseException:
            _forget_new_modules(before)
            raise


def _forget_new_modules(before: set[str]) -> None:
    """Remove from ``sys.modules`` every module imported since the snapshot `before`."""
    for module in set(sys.modules) - before:
        sys.modules.pop(module, None)


def load_small() -> ModuleType | None:
    """The one-call Numba update of small square matrices (:mod:`.small`), or None.

    None whenever :func:`load_numba` is None (numba missing or disabled), or when
    scipy, which numba's LAPACK calls need, is missing.
    """
    if load_numba() is None:
        return None
    return _import_small()


def select(engine: str, xp: ModuleType, shape: tuple[int, ...], k: int) -> Engine | None:
    """The engine of an update, or None for the array-agnostic body.

    U has `shape`, the step has rank `k` and the arrays come from the namespace `xp`.

    - ``"array_api"``: None.
    - ``"numba"``: the Numba engine, ``"blas"``: the blocked engine, each for a
      square U (else None); they need NumPy arrays (`ValueError` otherwise), and
      ``"numba"`` needs numba (`ImportError` when it is missing or disabled).
      An explicit engine never falls back silently.
    - ``"auto"``: for square NumPy inputs of at least :data:`AUTO_MIN_ENTRIES`
      entries in all, the Numba engine when ``k <= 2`` and numba is available
      (it also loops over a batch of small matrices in compiled code), else the
      blocked engine when each matrix has at least :data:`AUTO_MIN_ENTRIES`
      entries; None otherwise. These are the fastest on the benchmark
      (``benchmarks/README.md``).

    `ValueError` for a name not in :data:`ENGINES`.
    """
    if engine not in ENGINES:
        raise ValueError(
            f"engine must be 'auto', 'numba', 'blas' or 'array_api', got {engine!r}"
        )
    if engine == "array_api":
        return None
    if not is_numpy_namespace(xp):
        if engine != "auto":
            raise ValueError(f"engine={engine!r} needs NumPy arrays, got {xp.__name__} arrays")
        return None
    square = shape[-1] == shape[-2]
    if engine == "auto":
        if not square or math.prod(shape) < AUTO_MIN_ENTRIES:
            return None
        numba_engine = load_numba() if k <= 2 else None
        if numba_engine is not None:
            return numba_engine
        return blocked if shape[-1] * shape[-2] >= AUTO_MIN_ENTRIES else None
    if engine == "numba":
        numba_engine = load_numba()
        if numba_engine is None:
            raise ImportError(
                "engine='numba' needs numba (pip install 'unitary_lowrank[numba]'), or it is "
                f"disabled by {DISABLE_NUMBA_VAR}=1"
            )
        return numba_engine if square else None
    return blocked if square else None
