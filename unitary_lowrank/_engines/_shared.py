"""The parts of the engines that need no pass over U.

The left basis from the products of the first pass, and the right factor
``(F − I) Qᴴ`` of the second.
"""

from __future__ import annotations

import numpy as np

from .._tunables import COND_LIMIT

__all__ = ["COND_LIMIT", "basis_from_products", "right_factor"]

# COND_LIMIT (_tunables.py): the largest condition number of the column-equilibrated R for
# which ``UQ = [UB, A] R⁻¹`` is used rather than a product with U.


def basis_from_products(U, A, UB, Q, beta, alpha, batch):
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
