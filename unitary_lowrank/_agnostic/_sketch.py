"""Array-agnostic bodies of `range_finder`, `lowrank` and their samplers.

Written only against the Array-API namespace `xp` (no NumPy import, no in-place
writes, no value-dependent Python branches). The operator ``G`` is either an
array (..., m, n) or a pair ``(X, Y)`` standing for ``X @ Yᴴ``; the pair is
never multiplied out, so every product below costs O((m + n)·r·size) for it
(``docs/theory.md``, sketches).

The random test matrices (Gaussian, or the uniform numbers of column sampling)
are drawn by the public wrapper (on the host from a seed, so that a seed means
the same thing on every backend; with ``jax.random`` from a JAX key; with torch
from a ``torch.Generator``) and arrive here already on the operator's device.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._array_api import core_dtype, device_of, herm, thin_product

__all__ = [
    "apply",
    "apply_h",
    "column_selection",
    "exact_factored_svd",
    "left_residual",
    "lsi_factors",
    "lsi_spectrum",
    "orth",
    "orth_span",
    "project_svd",
    "range_basis",
    "relative_errors",
    "right_residual",
    "truncate",
]


def apply(G: Any, Z: Any, xp: ModuleType) -> Any:
    """``G @ Z`` for a dense G or a pair ``(X, Y)`` (``X @ (Yᴴ Z)``, never ``X Yᴴ``).

    ``Yᴴ Z`` is formed as ``(Zᴴ Y)ᴴ``: only the thin Z and the small product
    are conjugated, never a copy of the big factor.
    """
    if isinstance(G, tuple):
        X, Y = G
        return X @ herm(herm(Z, xp) @ Y, xp)
    return thin_product(G, Z, xp)


def apply_h(G: Any, Z: Any, xp: ModuleType) -> Any:
    """``Gᴴ @ Z`` for a dense G or a pair ``(X, Y)`` (``Y @ (Xᴴ Z)``); conjugates thin arrays."""
    if isinstance(G, tuple):
        X, Y = G
        return Y @ herm(herm(Z, xp) @ X, xp)
    return herm(herm(Z, xp) @ G, xp)


def orth(Z: Any, xp: ModuleType) -> Any:
    """Orthonormal basis of Z's columns (Householder QR: orthonormal even if Z is singular)."""
    Q, _ = xp.linalg.qr(Z)
    return Q


def orth_span(Z: Any, xp: ModuleType) -> Any:
    """Orthonormal basis of the span of Z's columns only, as W with zero columns for the rest.

    A Householder QR of rank-deficient Z (e.g. a column sampled twice) fills Q
    with arbitrary directions where Z has none, and zeroing them afterwards
    would cut true directions out (unpivoted QR mixes them). The SVD
    ``Z = W Σ Vᴴ`` reveals the rank: the columns of W with σ at rounding level
    are zeroed, so that ``W Wᴴ`` projects onto ``span(Z)`` and nothing more.
    """
    W, sig, _ = xp.linalg.svd(Z, full_matrices=False)
    eps = float(xp.finfo(Z.dtype).eps)
    keep = sig > sig[..., :1] * (10.0 * max(Z.shape[-2:]) * eps)
    return W * xp.expand_dims(xp.astype(keep, W.dtype), axis=-2)


def range_basis(G: Any, Omega: Any, n_iter: int, xp: ModuleType) -> Any:
    """Halko–Martinsson–Tropp Alg. 4.4: ``Q = orth(G Ω)``, then `n_iter` power iterations.

    Each iteration is ``Q ← orth(G orth(Gᴴ Q))`` (QR-stabilised).
    """
    Q = orth(apply(G, Omega, xp), xp)
    for _ in range(n_iter):  # n_iter is a static argument, not a value of the data
        Q = orth(apply(G, orth(apply_h(G, Q, xp), xp), xp), xp)
    return Q


def project_svd(G: Any, Q: Any, residual: bool, xp: ModuleType) -> tuple[Any, Any, Any, Any]:
    """SVD of the projection ``Q Qᴴ G = (Q W) diag(s) Vᴴ``; returns ``(Q W, s, V, res)``.

    The SVD of the small (size × n) matrix ``C = Qᴴ G`` is taken in double
    precision even for single-precision input; ``Q W`` and ``V`` come back in
    G's dtype, `s` in double precision. ``res`` is ``‖G − Q C‖_F²`` (double,
    shape (...)) when `residual` is true, else None.
    """
    dt = Q.dtype
    Ch = apply_h(G, Q, xp)  # (Qᴴ G)ᴴ = Gᴴ Q, n × size: tall, whose SVD LAPACK does faster
    Vw, s, Wh = xp.linalg.svd(xp.astype(Ch, core_dtype(xp, dt)), full_matrices=False)
    C = herm(Ch, xp)  # Qᴴ G = W diag(s) Vᴴ with W = Whᴴ, V = Vw
    res = left_residual(G, Q, C, xp) if residual else None
    return Q @ xp.astype(herm(Wh, xp), dt), s, xp.astype(Vw, dt), res


def exact_factored_svd(X: Any, Y: Any, xp: ModuleType) -> tuple[Any, Any, Any, Any]:
    """Exact thin SVD ``X Yᴴ = L diag(s) Rᴴ`` from the factors, in O((m + n) r²).

    Returns ``(L, s, R, 0)``, the last entry being the (zero) residual, so that
    it reads like :func:`project_svd`.

    With ``X = Qx Rx`` and ``Y = Qy Ry`` (Householder QR), ``X Yᴴ = Qx (Rx Ryᴴ) Qyᴴ``
    and the r×r core is decomposed in double precision.
    """
    dt = X.dtype
    Qx, Rx = xp.linalg.qr(X)
    Qy, Ry = xp.linalg.qr(Y)
    cdt = core_dtype(xp, dt)
    core = xp.astype(Rx, cdt) @ herm(xp.astype(Ry, cdt), xp)
    W, s, Vh = xp.linalg.svd(core, full_matrices=False)
    return Qx @ xp.astype(W, dt), s, Qy @ xp.astype(herm(Vh, xp), dt), xp.zeros_like(s[..., 0])


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


def _sq(x: Any, xp: ModuleType) -> Any:
    """``‖x‖_F²`` per matrix, summed in double precision."""
    a = xp.abs(xp.astype(x, core_dtype(xp, x.dtype)))
    return xp.sum(a * a, axis=(-2, -1))


def left_residual(G: Any, Q: Any, C: Any, xp: ModuleType) -> Any:
    """``‖(I − Q Qᴴ) G‖_F²`` formed directly (no ``‖G‖² − ‖QᴴG‖²`` cancellation); ``C = Qᴴ G``.

    For ``G = X Yᴴ`` it is ``‖(X − Q QᴴX) R_yᴴ‖_F²`` with ``Y = Q_y R_y``, O((m + n) r²).
    """
    if isinstance(G, tuple):
        X, Y = G
        _, Ry = xp.linalg.qr(Y)
        return _sq((X - Q @ (herm(Q, xp) @ X)) @ herm(Ry, xp), xp)
    return _sq(G - Q @ C, xp)


def right_residual(G: Any, V: Any, A: Any, xp: ModuleType) -> Any:
    """``‖G (I − V Vᴴ)‖_F²`` formed directly; ``A = G V`` (the LSI factors)."""
    if isinstance(G, tuple):
        X, Y = G
        _, Rx = xp.linalg.qr(X)
        return _sq(Rx @ herm(Y - V @ (herm(V, xp) @ Y), xp), xp)
    return _sq(G - A @ herm(V, xp), xp)


def lsi_spectrum(G: Any, A: Any, V: Any, xp: ModuleType) -> tuple[Any, Any]:
    """``(s, res)`` for the LSI factors ``A = G V``, ``B = V``, to feed :func:`relative_errors`.

    ``‖A Vᴴ‖_F = ‖A‖_F`` since V has orthonormal columns, so a one-entry
    "spectrum" ``s = [‖A‖_F]`` and ``res = ‖G (I − VVᴴ)‖_F²`` give the error.
    """
    s = xp.expand_dims(xp.sqrt(_sq(A, xp)), axis=-1)
    return s, right_residual(G, V, A, xp)


def relative_errors(s: Any, res: Any, xp: ModuleType) -> Any:
    """Relative Frobenius errors ``‖G − A_k B_kᴴ‖_F / ‖G‖_F`` for k = 1 … len(s).

    For ``A_k B_kᴴ = P G`` with P the orthogonal projector onto the top k
    directions of ``Q Qᴴ G`` (singular values `s`), the squared error is
    ``res + Σ_{i>k} s_i²`` with ``res = ‖(I − QQᴴ) G‖_F²``, and
    ``‖G‖_F² = res + Σ s_i²``: sums of non-negative terms only, so the
    estimate is accurate relative to the error itself. Zero G has error 0.
    """
    s2 = s * s
    rev = xp.flip(xp.cumulative_sum(xp.flip(s2, axis=-1), axis=-1), axis=-1)  # Σ_{i>=j}
    tail = xp.concat([rev[..., 1:], xp.zeros_like(rev[..., :1])], axis=-1)  # Σ_{i>k}
    res = xp.expand_dims(res, axis=-1)
    num = res + tail
    den = res + rev[..., :1]
    pos = den > 0
    safe = xp.where(pos, den, xp.ones_like(den))
    return xp.where(pos, xp.sqrt(num / safe), xp.zeros_like(num))


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
    # int32 indices: enough for any column count, and available in JAX without x64
    idx = xp.sum(
        xp.astype(xp.expand_dims(cdf, axis=-2) < xp.expand_dims(t, axis=-1), xp.int32),
        axis=-1, dtype=xp.int32,
    )  # (..., c): index of the first column with cdf >= t
    cols = xp.arange(n, device=device_of(u), dtype=xp.int32)
    S = xp.expand_dims(cols, axis=-1) == xp.expand_dims(idx, axis=-2)  # (..., n, c)
    return xp.astype(S, dt)
