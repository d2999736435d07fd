"""Cache-blocked BLAS engine of the square updates: two passes over U, BLAS inside.

One of the two implementations of :class:`~unitary_lowrank._engines.Engine`
(the other, :mod:`.numba`, fuses the same plan into Numba kernels). U is
walked in blocks of rows small enough to stay in cache, so

1. :func:`adjoint_products` reads each block once for both ``U B`` and ``Uᴴ A``;
2. :func:`basis_from_products` forms ``U Q = [U B, A] R⁻¹`` without touching U
   when R is well conditioned (else one product ``U @ Q``);
3. :func:`write_update` writes ``U + L K`` block by block into a new array
   (copied into ``out`` by one call when one is given, so an interrupt never
   leaves it half written).

NumPy in, NumPy out; 3-D (batch, rows, cols) internally.
"""

from __future__ import annotations

import numpy as np

from .. import _pool
from .._tunables import BLOCK_BYTES as _BLOCK_BYTES  # a name of this module: tests shrink it
from ._shared import basis_from_products, right_factor

__all__ = ["adjoint_products", "basis_from_products", "write_update"]

def _as3d(x: np.ndarray, batch: tuple[int, ...]) -> np.ndarray:
    """(prod(batch), rows, cols) view (or copy) of a broadcastable array."""
    x = np.broadcast_to(x, (*batch, *x.shape[-2:]))
    return x.reshape(-1, *x.shape[-2:])


def _block_rows(U3: np.ndarray) -> int:
    nbatch, _, p = U3.shape
    return max(1, _BLOCK_BYTES // max(1, nbatch * p * U3.itemsize))


def adjoint_products(U, A, B, batch):
    """``(Uᴴ A, U B)`` reading each cache block of U once."""
    U3, A3, B3 = _as3d(U, batch), _as3d(A, batch), _as3d(B, batch)
    nbatch, n, p = U3.shape
    k = A3.shape[-1]
    AhT = np.conj(np.swapaxes(A3, -1, -2))  # (nb, k, n): Aᴴ, so that Aᴴ U is a plain product
    UB = np.empty((nbatch, n, k), dtype=U.dtype)
    AhU = np.zeros((nbatch, k, p), dtype=U.dtype)
    part = np.empty((nbatch, k, p), dtype=U.dtype)
    bs = _block_rows(U3)
    for s in range(0, n, bs):
        blk = U3[:, s:s + bs]
        np.matmul(blk, B3, out=UB[:, s:s + bs])
        np.matmul(AhT[:, :, s:s + bs], blk, out=part)
        AhU += part
    UhA = np.conj(np.swapaxes(AhU, -1, -2))
    return UhA.reshape(*batch, p, k), UB.reshape(*batch, n, k)


def write_update(U, L, D, Q, batch, out=None):
    """``U + L (D Qᴴ)`` block by block into a new array, copied into `out` (U itself allowed).

    The blocks are written by a Python loop, between whose iterations a signal
    handler may raise (Ctrl-C, a preemption handler). So `out` is never the
    loop's target: the result is completed in an array of its own and copied
    into `out` by one call, and an exception leaves `out` wholly old or wholly new.
    """
    K3 = _as3d(right_factor(D, Q, U.dtype), batch)
    U3, L3 = _as3d(U, batch), _as3d(L, batch)
    target = _pool.empty((*batch, *U.shape[-2:]), U.dtype)  # recycled when large
    T3 = target.reshape(U3.shape)
    nbatch, n, p = U3.shape
    bs = _block_rows(U3)
    tmp = np.empty((nbatch, min(bs, n), p), dtype=U.dtype)
    for s in range(0, n, bs):
        e = min(n, s + bs)
        t = tmp[:, : e - s]
        np.matmul(L3[:, s:e], K3, out=t)
        np.add(U3[:, s:e], t, out=T3[:, s:e])
    if out is None:
        return target
    np.copyto(out, target)
    return out
