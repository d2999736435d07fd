"""Numba engine of the square updates: fused kernels, two passes over U.

One of the two implementations of :class:`~unitary_lowrank._engines.Engine`
(the other is :mod:`.blocked`). Imported only by
:func:`~unitary_lowrank._engines.load_numba`, as numba is optional.

1. :func:`adjoint_products` reads U once and returns both ``Uᴴ A`` and ``U B``;
2. :func:`basis_from_products` forms ``U Q = [U B, A] R⁻¹`` (as ``U Uᴴ = I``)
   with no pass over U when the column-equilibrated R is well conditioned
   (shared with the blocked engine, ``_shared.py``);
3. :func:`write_update` writes ``U + L K`` row by row in one pass (in place
   when the output is U itself), with no n×n temporary.

Kernels take C-contiguous 3-D arrays (batch, rows, cols) and scalars only and
write into buffers allocated by the Python entry points; fastmath stays off
except for reassociation in the dot products (see below).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .. import _parallel, _pool
from .._tunables import PARALLEL_MIN
from ._shared import basis_from_products, right_factor

__all__ = ["adjoint_products", "basis_from_products", "write_update"]

# fastmath={"reassoc"} only: it lets LLVM vectorise the dot products of U B (a
# different summation order, as in any BLAS); no contraction, no finite-math
# assumptions, so NaN and infinity still propagate. Measured at n = 4096: the
# row dot products run 1.6x (float64) to 4x (float32, complex64) faster with it.
@nb.njit(cache=True, nogil=True, fastmath={"reassoc"})
def _adjoint_rows_kernel(U, A, Bt, acc, UB, start, stop):  # pragma: no cover - compiled
    """Rows start..stop of the flattened (batch, row) index.

    ``acc[b] += U[b,i]ᴴ ⊗ A[b,i]`` and ``UB[b,i] = U[b,i] B[b]``.
    """
    n, p = U.shape[1], U.shape[2]
    k = A.shape[2]
    for idx in range(start, stop):
        b = idx // n
        i = idx - b * n
        row = U[b, i]
        if k == 1:  # the common rank-1 step: dot product and update fused in one sweep
            bt = Bt[b, 0]
            a = A[b, i, 0]
            acc0 = acc[b, 0]
            s = row[0] * bt[0]
            acc0[0] += np.conj(row[0]) * a
            for c in range(1, p):
                s += row[c] * bt[c]
                acc0[c] += np.conj(row[c]) * a
            UB[b, i, 0] = s
            continue
        for j in range(k):
            s = row[0] * Bt[b, j, 0]
            for c in range(1, p):
                s += row[c] * Bt[b, j, c]
            UB[b, i, j] = s
            a = A[b, i, j]
            accj = acc[b, j]
            for c in range(p):
                accj[c] += np.conj(row[c]) * a


@nb.njit(parallel=True, cache=True, nogil=True)
def _adjoint_rows_parallel_kernel(U, A, Bt, parts, UB):  # pragma: no cover - compiled
    """Threaded :func:`_adjoint_rows_kernel`: thread t accumulates Uᴴ A of its rows in parts[t]."""
    total = U.shape[0] * U.shape[1]
    nthreads = parts.shape[0]
    chunk = (total + nthreads - 1) // nthreads
    for t in nb.prange(nthreads):
        _adjoint_rows_kernel(U, A, Bt, parts[t], UB, t * chunk, min(total, (t + 1) * chunk))


@nb.njit(cache=True, nogil=True)
def _write_rows_kernel(U, L, K, out, start, stop):  # pragma: no cover - compiled
    """out[b, i] = U[b, i] + L[b, i] @ K[b] for flattened rows start..stop (in place is safe)."""
    n, p = U.shape[1], U.shape[2]
    r = L.shape[2]
    for idx in range(start, stop):
        b = idx // n
        i = idx - b * n
        urow = U[b, i]
        orow = out[b, i]
        l0 = L[b, i, 0]
        k0 = K[b, 0]
        if r == 2:  # rank-1 steps: the whole row in one sweep
            l1 = L[b, i, 1]
            k1 = K[b, 1]
            for c in range(p):
                orow[c] = urow[c] + (l0 * k0[c] + l1 * k1[c])
            continue
        for c in range(p):
            orow[c] = urow[c] + l0 * k0[c]
        for j in range(1, r):
            lj = L[b, i, j]
            kj = K[b, j]
            for c in range(p):
                orow[c] += lj * kj[c]


@nb.njit(parallel=True, cache=True, nogil=True)
def _write_rows_parallel_kernel(U, L, K, out, nthreads):  # pragma: no cover - compiled
    """Threaded :func:`_write_rows_kernel` over `nthreads` contiguous blocks of rows."""
    total = U.shape[0] * U.shape[1]
    chunk = (total + nthreads - 1) // nthreads
    for t in nb.prange(nthreads):
        _write_rows_kernel(U, L, K, out, t * chunk, min(total, (t + 1) * chunk))


@nb.njit(cache=True, nogil=True)
def _add_rows_kernel(L, K, out, start, stop):  # pragma: no cover - compiled
    """out[b, i] += L[b, i] @ K[b] for flattened rows start..stop.

    The in-place twin of :func:`_write_rows_kernel`: with U and out the same
    memory, that kernel's vectorised loop would fail LLVM's run-time overlap
    check and run scalar; one array read and written is vectorised.
    """
    n, p = out.shape[1], out.shape[2]
    r = L.shape[2]
    for idx in range(start, stop):
        b = idx // n
        i = idx - b * n
        orow = out[b, i]
        if r == 2:
            l0 = L[b, i, 0]
            l1 = L[b, i, 1]
            k0 = K[b, 0]
            k1 = K[b, 1]
            for c in range(p):
                orow[c] += l0 * k0[c] + l1 * k1[c]
            continue
        for j in range(r):
            lj = L[b, i, j]
            kj = K[b, j]
            for c in range(p):
                orow[c] += lj * kj[c]


@nb.njit(parallel=True, cache=True, nogil=True)
def _add_rows_parallel_kernel(L, K, out, nthreads):  # pragma: no cover - compiled
    """Threaded :func:`_add_rows_kernel`."""
    total = out.shape[0] * out.shape[1]
    chunk = (total + nthreads - 1) // nthreads
    for t in nb.prange(nthreads):
        _add_rows_kernel(L, K, out, t * chunk, min(total, (t + 1) * chunk))


# Threads only pay off for large inputs (PARALLEL_MIN entries of U, _tunables.py): waking
# them costs more than the work for small ones. How many may run, and when, is decided in
# _parallel.py (default: one).


def _wanted_threads(U3: np.ndarray) -> int:
    # Numba's thread pool starts at the first nb.get_num_threads(): ask only when threads
    # are allowed, so that a single-threaded process never gets the pool's idle threads
    # (which slowed torch's own OpenMP loops in the same process by up to 90x).
    if U3.size < PARALLEL_MIN or _parallel.get_num_threads() <= 1:
        return 1
    return max(1, min(nb.get_num_threads(), U3.shape[0] * U3.shape[1]))


def _as3d(x: np.ndarray, batch: tuple[int, ...]) -> np.ndarray:
    """C-contiguous (prod(batch), rows, cols) view or copy of a broadcastable array."""
    x = np.broadcast_to(x, (*batch, *x.shape[-2:]))
    return np.ascontiguousarray(x.reshape(-1, *x.shape[-2:]))


def adjoint_products(U, A, B, batch):
    """``(Uᴴ A, U B)`` of square or tall U in one pass over U (NumPy in, NumPy out)."""
    U3, A3 = _as3d(U, batch), _as3d(A, batch)
    Bt = np.ascontiguousarray(np.swapaxes(_as3d(B, batch), -1, -2))
    nbatch, n, p = U3.shape
    k = A3.shape[-1]
    UB = np.empty((nbatch, n, k), dtype=U.dtype)
    with _parallel.slot(_wanted_threads(U3)) as nthreads:
        parts = np.zeros((nthreads, nbatch, k, p), dtype=U.dtype)
        if nthreads == 1:
            _adjoint_rows_kernel(U3, A3, Bt, parts[0], UB, 0, nbatch * n)
        else:
            _adjoint_rows_parallel_kernel(U3, A3, Bt, parts, UB)
    UhA = np.swapaxes(parts.sum(axis=0), -1, -2)
    return UhA.reshape(*batch, p, k), UB.reshape(*batch, n, k)


def _write_rows(U3, L3, K3, out3):
    """One kernel call, so that an exception (Ctrl-C) never leaves `out3` half written."""
    rows = U3.shape[0] * U3.shape[1]
    inplace = np.shares_memory(U3, out3)  # out is U: the single-array twin
    with _parallel.slot(_wanted_threads(U3)) as nthreads:
        if inplace and nthreads == 1:
            _add_rows_kernel(L3, K3, out3, 0, rows)
        elif inplace:
            _add_rows_parallel_kernel(L3, K3, out3, nthreads)
        elif nthreads == 1:
            _write_rows_kernel(U3, L3, K3, out3, 0, rows)
        else:
            _write_rows_parallel_kernel(U3, L3, K3, out3, nthreads)


def write_update(U, L, D, Q, batch, out=None):
    """``U + L (D Qᴴ)`` in one pass over U, into `out` (which may be U itself)."""
    K = right_factor(D, Q, U.dtype)
    shape = (*batch, *U.shape[-2:])
    U3 = _as3d(U, batch)
    L3, K3 = _as3d(L, batch), _as3d(K, batch)
    if out is not None and out.flags.c_contiguous and (
        out is U or not np.shares_memory(out, U)
    ):
        _write_rows(U3, L3, K3, out.reshape(U3.shape))
        return out
    result = _pool.empty(U3.shape, U.dtype)  # recycled memory when large (_pool.py)
    _write_rows(U3, L3, K3, result)
    result = result.reshape(shape)
    if out is not None:
        out[...] = result
        return out
    return result
