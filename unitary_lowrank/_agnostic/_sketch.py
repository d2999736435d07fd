"""Array-agnostic bodies of `range_finder`, `lowrank` and their samplers.

Written only against the Array-API namespace `xp` (no NumPy import, no in-place
writes, no value-dependent Python branches). The operator ``G`` is either an
array (..., m, n) or a pair ``(X, Y)`` standing for ``X @ Yᴴ``; the pair is
never multiplied out, so every product below costs O((m + n)·r·size) for it
(``shared/design/algorithms.md`` §3).

The random test matrices (Gaussian, or the uniform numbers of column sampling)
are drawn on the host by the public wrapper and arrive here already on the
operator's device, so a seed means the same thing on every backend.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._array_api import core_dtype, device_of, herm

__all__ = [
    "apply",
    "apply_h",
    "column_selection",
    "exact_factored_svd",
    "lsi_factors",
    "orth",
    "project_svd",
    "range_basis",
    "relative_errors",
    "squared_norm",
    "truncate",
]


def apply(G: Any, Z: Any, xp: ModuleType) -> Any:
    """``G @ Z`` for a dense G or a pair ``(X, Y)`` (``X @ (Yᴴ Z)``, never ``X Yᴴ``)."""
    if isinstance(G, tuple):
        X, Y = G
        return X @ (herm(Y, xp) @ Z)
    return G @ Z


def apply_h(G: Any, Z: Any, xp: ModuleType) -> Any:
    """``Gᴴ @ Z`` for a dense G or a pair ``(X, Y)`` (``Y @ (Xᴴ Z)``)."""
    if isinstance(G, tuple):
        X, Y = G
        return Y @ (herm(X, xp) @ Z)
    return herm(G, xp) @ Z


def orth(Z: Any, xp: ModuleType) -> Any:
    """Orthonormal basis of the columns of Z (Householder QR: orthonormal even when Z is rank deficient)."""
    Q, _ = xp.linalg.qr(Z)
    return Q


def range_basis(G: Any, Omega: Any, n_iter: int, xp: ModuleType) -> Any:
    """Halko–Martinsson–Tropp Alg. 4.4: ``Q = orth(G Ω)``, then `n_iter` rounds of ``Q ← orth(G orth(Gᴴ Q))``."""
    Q = orth(apply(G, Omega, xp), xp)
    for _ in range(n_iter):  # n_iter is a static argument, not a value of the data
        Q = orth(apply(G, orth(apply_h(G, Q, xp), xp), xp), xp)
    return Q


def project_svd(G: Any, Q: Any, xp: ModuleType) -> tuple[Any, Any, Any]:
    """SVD of the projection ``Q Qᴴ G = (Q W) diag(s) Vᴴ``; returns ``(Q W, s, V)``.

    The SVD of the small (size × n) matrix ``Qᴴ G`` is taken in double precision
    even for single-precision input; ``Q W`` and ``V`` come back in G's dtype,
    `s` in double precision.
    """
    dt = Q.dtype
    C = herm(apply_h(G, Q, xp), xp)  # Qᴴ G = (Gᴴ Q)ᴴ, size × n
    W, s, Vh = xp.linalg.svd(xp.astype(C, core_dtype(xp, dt)), full_matrices=False)
    return Q @ xp.astype(W, dt), s, xp.astype(herm(Vh, xp), dt)


def exact_factored_svd(X: Any, Y: Any, xp: ModuleType) -> tuple[Any, Any, Any]:
    """Exact thin SVD ``X Yᴴ = L diag(s) Rᴴ`` from the factors, in O((m + n) r²).

    With ``X = Qx Rx`` and ``Y = Qy Ry`` (Householder QR), ``X Yᴴ = Qx (Rx Ryᴴ) Qyᴴ``
    and the r×r core is decomposed in double precision.
    """
    dt = X.dtype
    Qx, Rx = xp.linalg.qr(X)
    Qy, Ry = xp.linalg.qr(Y)
    cdt = core_dtype(xp, dt)
    core = xp.astype(Rx, cdt) @ herm(xp.astype(Ry, cdt), xp)
    W, s, Vh = xp.linalg.svd(core, full_matrices=False)
    return Qx @ xp.astype(W, dt), s, Qy @ xp.astype(herm(Vh, xp), dt)


def truncate(left: Any, s: Any, right: Any, k: int, xp: ModuleType) -> tuple[Any, Any]:
    """Factors ``A = left_k diag(s_k)``, ``B = right_k`` of the rank-`k` truncation.

    When fewer than `k` singular triplets exist (a factored G of rank r < k),
    A and B are padded with zero columns, so their shapes are always (..., ·, k).
    """
    dt = left.dtype
    avail = s.shape[-1]
    kk = min(k, avail)
    A = left[..., :kk] * xp.expand_dims(xp.astype(s[..., :kk], dt), axis=-2)
    B = right[..., :kk]
    if kk < k:
        shape_a = (*A.shape[:-1], k - kk)
        shape_b = (*B.shape[:-1], k - kk)
        A = xp.concat([A, xp.zeros(shape_a, dtype=dt, device=device_of(A))], axis=-1)
        B = xp.concat([B, xp.zeros(shape_b, dtype=dt, device=device_of(B))], axis=-1)
    return A, B


def lsi_factors(G: Any, Omega: Any, xp: ModuleType) -> tuple[Any, Any]:
    """The paper's LSI sampler: ``V = orth(Gᴴ Ω)``, ``A = G V``, ``B = V`` (Ω: m × k)."""
    V = orth(apply_h(G, Omega, xp), xp)
    return apply(G, V, xp), V


def squared_norm(G: Any, xp: ModuleType) -> Any:
    """``‖G‖_F²`` per matrix, in double precision (real), shape (...).

    For ``G = X Yᴴ`` it is ``tr((XᴴX)(YᴴY))`` (both Gram matrices are Hermitian,
    so this is the sum of ``(XᴴX) ∘ conj(YᴴY)``), at O((m + n) r²).
    """
    if isinstance(G, tuple):
        X, Y = G
        cdt = core_dtype(xp, X.dtype)
        X = xp.astype(X, cdt)
        Y = xp.astype(Y, cdt)
        Gx = herm(X, xp) @ X
        Gy = herm(Y, xp) @ Y
        val = xp.sum(xp.real(Gx * xp.conj(Gy)), axis=(-2, -1))
        return xp.where(val > 0, val, xp.zeros_like(val))
    a = xp.abs(xp.astype(G, core_dtype(xp, G.dtype)))
    return xp.sum(a * a, axis=(-2, -1))


def relative_errors(s: Any, normsq: Any, xp: ModuleType) -> Any:
    """Relative Frobenius errors ``‖G − A_k B_kᴴ‖_F / ‖G‖_F`` for k = 1 … len(s).

    Exact for factors of the form ``A_k B_kᴴ = P G`` with an orthogonal
    projector P (all our samplers), as ``‖G‖² − Σ_{i≤k} s_i²``; the subtraction
    limits the resolution to about √eps of the precision in which `s` was
    computed. Zero G has relative error 0.
    """
    tail = xp.expand_dims(normsq, axis=-1) - xp.cumulative_sum(s * s, axis=-1)
    tail = xp.where(tail > 0, tail, xp.zeros_like(tail))
    den = xp.expand_dims(normsq, axis=-1)
    pos = den > 0
    safe = xp.where(pos, den, xp.ones_like(den))
    return xp.where(pos, xp.sqrt(tail / safe), xp.zeros_like(tail))


def column_selection(G: Any, u: Any, xp: ModuleType) -> Any:
    """Selection matrix S (..., n, c) of columns drawn with probability ∝ squared norm.

    `u` (..., c) holds uniform numbers in [0, 1) (drawn on the host); column j
    is chosen for ``u`` in ``[cdf_{j-1}, cdf_j) / cdf_n`` (inverse-CDF
    sampling, on the device). ``G @ S`` are then the sampled columns. The
    weights are the *squared* column norms (Drineas–Kannan–Mahoney), not the
    norms.
    """
    if isinstance(G, tuple):
        X, Y = G
        cdt = core_dtype(xp, X.dtype)
        Xc = xp.astype(X, cdt)
        Yc = xp.astype(Y, cdt)
        # Column j of X Yᴴ is X c with c = conj(Y[j, :])ᵀ; its squared norm is
        # cᴴ (XᴴX) c = Σ_ab Y[j,a] M[a,b] conj(Y[j,b]) with M = XᴴX.
        M = herm(Xc, xp) @ Xc
        w = xp.sum(xp.real((Yc @ M) * xp.conj(Yc)), axis=-1)
        w = xp.where(w > 0, w, xp.zeros_like(w))
        n = Y.shape[-2]
        dt = X.dtype
    else:
        a = xp.abs(xp.astype(G, core_dtype(xp, G.dtype)))
        w = xp.sum(a * a, axis=-2)
        n = G.shape[-1]
        dt = G.dtype
    cdf = xp.cumulative_sum(w, axis=-1)  # (..., n)
    t = xp.astype(u, cdf.dtype) * cdf[..., -1:]  # (..., c), t < cdf[-1] since u < 1
    idx = xp.sum(
        xp.astype(xp.expand_dims(cdf, axis=-2) < xp.expand_dims(t, axis=-1), xp.int64), axis=-1
    )  # (..., c): index of the first column with cdf >= t
    cols = xp.arange(n, device=device_of(u), dtype=xp.int64)
    S = xp.expand_dims(cols, axis=-1) == xp.expand_dims(idx, axis=-2)  # (..., n, c)
    return xp.astype(S, dt)
