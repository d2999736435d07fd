"""Cache-blocked NumPy path of the square updates: two passes over U, BLAS inside.

Same plan as the Numba kernels (``_numba/_updates.py``), with the arithmetic
left to BLAS: U is walked in blocks of rows small enough to stay in cache, so

1. :func:`adjoint_products` reads each block once for both ``U B`` and ``Uᴴ A``;
2. :func:`left_basis` forms ``U Q = [U B, A] R⁻¹`` without touching U when R
   is well conditioned (else one product ``U @ Q``);
3. :func:`apply` writes ``U + L K`` block by block into a new array (copied
   into ``out`` by one call when one is given, so an interrupt never leaves
   it half written).

NumPy in, NumPy out; 3-D (batch, rows, cols) internally.
"""

from __future__ import annotations

import numpy as np

from . import _pool

__all__ = ["COND_LIMIT", "adjoint_products", "apply", "left_basis"]

#: Largest condition number of the column-equilibrated R for which
#: ``UQ = [UB, A] R⁻¹`` is used instead of a product with U.
COND_LIMIT = 8.0

#: Bytes of U per block: about the size of a core's L2 cache.
_BLOCK_BYTES = 1 << 20


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


def left_basis(U, A, UB, Q, beta, alpha, batch):
    """``U Q`` (n×r), from ``[U B, A] R⁻¹`` when that is accurate, else ``U @ Q``.

    With ``[B, Uᴴ A] = Q R`` and ``U Uᴴ = I``, ``U Q = [U B, A] R⁻¹``. The
    solve loses ``cond(R)`` digits, so it is used only when R is square and,
    with its columns scaled to unit norm (which does not change the accuracy
    of the solve), has condition number at most :data:`COND_LIMIT`.
    """
    R = np.concatenate([beta, alpha], axis=-1)
    r, kk = R.shape[-2:]
    if r == kk:
        norms = np.linalg.norm(R, axis=-2, keepdims=True)
        if np.all(norms > 0):
            s = np.linalg.svd(R / norms, compute_uv=False)
            if np.all(s[..., -1] * COND_LIMIT >= s[..., 0]):
                Rinv = np.linalg.inv(R).astype(U.dtype)
                return np.concatenate([UB, np.broadcast_to(A, UB.shape)], axis=-1) @ Rinv
    return U @ Q.astype(U.dtype)


def right_factor(D, Q, dtype):
    """``K = (F − I) Qᴴ`` (r×n) in the working dtype."""
    Qw = Q.astype(dtype)
    return D.astype(dtype) @ np.conj(np.swapaxes(Qw, -1, -2))


def apply(U, L, D, Q, batch, out=None):
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
