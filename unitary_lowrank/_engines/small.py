"""One-call Numba update of a small square matrix: the whole of ``U + (UQ)(F − I)Qᴴ``.

At the sizes people train (n up to a few hundred, rank 1 or 2), the array-agnostic
body spends almost all its time on fixed costs: a dozen NumPy/LAPACK calls for the
2k×2k core, namespace and dtype work, small temporaries. :func:`update` does the
same arithmetic as ``_agnostic/_updates.py`` in one compiled call:

1. ``Â = Uᴴ A`` (one pass over U), accumulated in double precision;
2. Householder QR ``[B, Â] = Q [β, α]`` (LAPACK, as ``numpy.linalg.qr``);
3. the core ``F − I`` of ``polar``/``exp``/``cayley``, with the same scaling, the
   same LAPACK SVD/eigh and, for real input, the same sum over the upper half of
   the spectrum as :func:`~unitary_lowrank._agnostic._updates.core_minus_identity`;
4. ``L = U Q`` (second pass) and the unitarity check ``‖LᴴL − I‖₂ <= tol``;
5. ``out = U + L (F − I) Qᴴ`` (third pass), written only when everything before
   succeeded, so that ``out`` (U itself allowed) is wholly old or wholly new.

It never raises for bad values: it returns a status code, and the caller then runs
the general path, which raises the documented error (or, if its own rounding lets
the input through, returns its result). :data:`OK` means ``out`` holds the result.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import scipy.linalg.cython_lapack  # noqa: F401 - numba's np.linalg needs it (ImportError: no fast path)

__all__ = ["BAD_INPUT", "BAD_CORE", "NOT_UNITARY", "OK", "METHOD_CODES", "update"]

OK = 0
#: A or B (or U with ``check_u``) holds NaN or infinity, or Uᴴ A does.
BAD_INPUT = 1
#: α or the core F − I is not finite (overflow).
BAD_CORE = 2
#: ``‖(UQ)ᴴ(UQ) − I‖₂`` above the tolerance (or NaN).
NOT_UNITARY = 3

#: Integer codes of the methods, as the kernels take them.
METHOD_CODES = {"polar": 0, "exp": 1, "cayley": 2}


@nb.njit(cache=True, nogil=True)
def _all_finite(x):  # pragma: no cover - compiled
    for v in x.flat:
        if not np.isfinite(v):
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _subspace(U, A, B, W):  # pragma: no cover - compiled
    """W = [B, Uᴴ A] (n×2k, double precision); False when a value is not finite."""
    n = U.shape[0]
    k = A.shape[1]
    acc = np.zeros((k, n), dtype=W.dtype)
    for i in range(n):
        row = U[i]
        for j in range(k):
            a = A[i, j]
            accj = acc[j]
            for c in range(n):
                accj[c] += np.conj(row[c]) * a
    # Â in the working dtype, as the general path forms it: an Â that overflows it is
    # reported (by the general path) rather than carried on in double precision
    Ahat = np.empty((k, n), dtype=U.dtype)
    for j in range(k):
        for i in range(n):
            Ahat[j, i] = acc[j, i]
    ok = True
    for i in range(n):
        for j in range(k):
            W[i, j] = B[i, j]
            W[i, k + j] = Ahat[j, i]
            ok = ok and np.isfinite(W[i, j]) and np.isfinite(W[i, k + j])
    return ok


@nb.njit(cache=True, nogil=True)
def _max_abs_at_least_one(x):  # pragma: no cover - compiled
    m = 1.0
    for v in x.flat:
        a = abs(v)
        if a > m:
            m = a
    return m


@nb.njit(cache=True, nogil=True)
def _times_h(X, Y):  # pragma: no cover - compiled
    """X @ Yᴴ for small matrices."""
    out = np.zeros((X.shape[0], Y.shape[0]), dtype=X.dtype)
    for i in range(X.shape[0]):
        for j in range(Y.shape[0]):
            s = out[i, j]
            for c in range(X.shape[1]):
                s += X[i, c] * np.conj(Y[j, c])
            out[i, j] = s
    return out


@nb.njit(cache=True, nogil=True)
def _times(X, Y):  # pragma: no cover - compiled
    """X @ Y for small matrices."""
    out = np.zeros((X.shape[0], Y.shape[1]), dtype=X.dtype)
    for i in range(X.shape[0]):
        for c in range(X.shape[1]):
            x = X[i, c]
            for j in range(Y.shape[1]):
                out[i, j] += x * Y[c, j]
    return out


@nb.njit(cache=True, nogil=True)
def _polar_minus_eye(C):  # pragma: no cover - compiled
    """``polar(C) − I`` from the LAPACK SVD of the small square C."""
    Wl, _, Vh = np.linalg.svd(C)
    D = _times(Wl, Vh)
    for i in range(D.shape[0]):
        D[i, i] -= 1.0
    return D


@nb.njit(cache=True, nogil=True)
def _core_polar(alpha, beta):  # pragma: no cover - compiled
    r = alpha.shape[0]
    sa = _max_abs_at_least_one(alpha)
    sb = _max_abs_at_least_one(beta)
    C = _times_h(alpha / sa, beta / sb)
    inv = 1.0 / (sa * sb)
    for i in range(r):
        C[i, i] += inv
    return _polar_minus_eye(C)


@nb.njit(cache=True, nogil=True)
def _core_skew(alpha, beta, method, first):  # pragma: no cover - compiled
    """``Σ_{j >= first} (f(λ_j) − 1) v_j v_jᴴ`` of ``Y = (αβᴴ − βαᴴ)/2``; f = exp (1) or Cayley (2).

    With ``first = 0`` this is ``f(Y) − I`` (complex128).
    """
    r = alpha.shape[0]
    sa = _max_abs_at_least_one(alpha)
    sb = _max_abs_at_least_one(beta)
    X = _times_h(alpha / sa, beta / sb)
    H = np.empty((r, r), dtype=np.complex128)
    for i in range(r):
        for j in range(r):
            H[i, j] = complex(X[i, j] - np.conj(X[j, i])) * 0.5j
    Hs = np.empty((r, r), dtype=np.complex128)
    for i in range(r):
        for j in range(r):
            Hs[i, j] = 0.5 * (H[i, j] + np.conj(H[j, i]))
    lam, V = np.linalg.eigh(Hs)
    scale = sa * sb
    d = np.empty(r, dtype=np.complex128)
    for i in range(r):
        x = lam[i] * scale
        if method == 1:
            s = np.sin(x / 2)
            d[i] = complex(-2.0 * s * s, -np.sin(x))
        else:
            xc = complex(x, 0.0)
            d[i] = (xc * -1j) / (xc * 0.5j + 1.0)
    m = r - first  # eigenpairs first..r−1: all of them, or the upper half (real steps)
    Vt = np.empty((r, m), dtype=np.complex128)
    Vd = np.empty((r, m), dtype=np.complex128)
    for i in range(r):
        for j in range(m):
            Vt[i, j] = V[i, first + j]
            Vd[i, j] = V[i, first + j] * d[first + j]
    return _times_h(Vd, Vt)


@nb.njit(cache=True, nogil=True)
def _core_real(alpha, beta, method):  # pragma: no cover - compiled
    """F − I of a real step (float64); NaN when it overflowed."""
    if method == 0:
        return _core_polar(alpha, beta)
    # real step: 2·Re over the upper half of the spectrum (pairs ±λ), as the portable core
    r = alpha.shape[0]
    D = _core_skew(alpha, beta, method, r - r // 2)
    out = np.empty((r, r), dtype=np.float64)
    for i in range(r):
        for j in range(r):
            out[i, j] = 2.0 * D[i, j].real
    # The sum needs eigenvalues apart from zero; where it is not orthogonal to rounding
    # (‖FᵀF − I‖_F = ‖D + Dᵀ + DᵀD‖_F above 8·r·eps, the portable core's test), the
    # portable core builds F from real planes instead: NaN sends the update there.
    G = _times(out.T.copy(), out)
    sq = 0.0
    for i in range(r):
        for j in range(r):
            e = out[i, j] + out[j, i] + G[i, j]
            sq += e * e
    if not np.sqrt(sq) <= 8.0 * r * np.finfo(np.float64).eps:
        out[0, 0] = np.nan
    return out  # NaN when the step overflowed: the caller takes the general path


@nb.njit(cache=True, nogil=True)
def _core_complex(alpha, beta, method):  # pragma: no cover - compiled
    """F − I of a complex step (complex128)."""
    if method == 0:
        return _core_polar(alpha, beta)
    return _core_skew(alpha, beta, method, 0)


@nb.njit(cache=True, nogil=True, fastmath={"reassoc"})
def _finish(U, Q, D, out, tol):  # pragma: no cover - compiled
    """``L = U Q``, the unitarity check, then ``out = U + L D Qᴴ``; returns the status."""
    n = U.shape[0]
    r = Q.shape[1]
    Qt = np.ascontiguousarray(Q.T)
    L = np.zeros((n, r), dtype=Q.dtype)
    for i in range(n):
        row = U[i]
        for j in range(r):
            qj = Qt[j]
            s = L[i, j]
            for c in range(n):
                s += row[c] * qj[c]
            L[i, j] = s
    if tol >= 0.0:
        Lh = np.ascontiguousarray(np.conj(L.T))
        G = _times_h(Lh, Lh)  # Lᴴ L
        for i in range(r):
            G[i, i] -= 1.0
        Gs = np.empty((r, r), dtype=G.dtype)
        for i in range(r):
            for j in range(r):
                Gs[i, j] = 0.5 * (G[i, j] + np.conj(G[j, i]))
        if not _all_finite(Gs):
            return NOT_UNITARY
        ev = np.linalg.eigvalsh(Gs)
        for e in ev:
            if not abs(e) <= tol:
                return NOT_UNITARY
    # K = D Qᴴ (r×n) and L in the working dtype, as the engines do
    K = _times_h(D, Q)
    Kw = np.empty((r, n), dtype=out.dtype)
    for j in range(r):
        for c in range(n):
            Kw[j, c] = K[j, c]
    Lw = np.empty((n, r), dtype=out.dtype)
    for i in range(n):
        for j in range(r):
            Lw[i, j] = L[i, j]
    for i in range(n):
        urow = U[i]
        orow = out[i]
        if r == 2:
            l0 = Lw[i, 0]
            l1 = Lw[i, 1]
            k0 = Kw[0]
            k1 = Kw[1]
            for c in range(n):
                orow[c] = urow[c] + (l0 * k0[c] + l1 * k1[c])
            continue
        for c in range(n):
            s = Lw[i, 0] * Kw[0, c]
            for j in range(1, r):
                s += Lw[i, j] * Kw[j, c]
            orow[c] = urow[c] + s
    return OK


@nb.njit(cache=True, nogil=True)
def _update_real(U, A, B, out, method, check_u, tol):  # pragma: no cover - compiled
    if check_u and not _all_finite(U):
        return BAD_INPUT
    n = U.shape[0]
    k = A.shape[1]
    W = np.empty((n, 2 * k), dtype=np.float64)
    if not _subspace(U, A, B, W):
        return BAD_INPUT
    Q, R = np.linalg.qr(W)
    alpha = np.ascontiguousarray(R[:, k:])
    beta = np.ascontiguousarray(R[:, :k])
    if not _all_finite(alpha):
        return BAD_CORE
    D = _core_real(alpha, beta, method)
    if not _all_finite(D):
        return BAD_CORE
    return _finish(U, Q, D, out, tol)


@nb.njit(cache=True, nogil=True)
def _update_complex(U, A, B, out, method, check_u, tol):  # pragma: no cover - compiled
    if check_u and not _all_finite(U):
        return BAD_INPUT
    n = U.shape[0]
    k = A.shape[1]
    W = np.empty((n, 2 * k), dtype=np.complex128)
    if not _subspace(U, A, B, W):
        return BAD_INPUT
    Q, R = np.linalg.qr(W)
    alpha = np.ascontiguousarray(R[:, k:])
    beta = np.ascontiguousarray(R[:, :k])
    if not _all_finite(alpha):
        return BAD_CORE
    D = _core_complex(alpha, beta, method)
    if not _all_finite(D):
        return BAD_CORE
    return _finish(U, Q, D, out, tol)


def update(U, A, B, out, method, check_u, tol):
    """Write the update of U (n×n, C-contiguous) by ``A Bᴴ`` (n×k) into `out`; the status.

    U, A, B and `out` share one of the four floating dtypes; `out` is C-contiguous
    and either U itself or disjoint from it. `method` is a code of
    :data:`METHOD_CODES`; `tol` the bound of the unitarity check (negative: no
    check); `check_u` scans U for NaN and infinity first. `out` is written only
    when the status is :data:`OK`, by this one call (no Python code runs during it).
    """
    kernel = _update_complex if U.dtype.kind == "c" else _update_real
    return kernel(U, A, B, out, method, check_u, tol)


# ---------------------------------------------------------------- sketches of a dense G
# The samplers of ``unitary_lowrank.lowrank`` for a small dense G, in one call each,
# with the same products (BLAS, in G's dtype), the same Householder QRs and the same
# double-precision SVD as ``_agnostic/_sketch.py``.


@nb.njit(cache=True, nogil=True)
def _apply_h(G, Z):  # pragma: no cover - compiled
    """``Gᴴ Z`` as ``(Zᴴ G)ᴴ``: only thin arrays are conjugated."""
    Zh = np.ascontiguousarray(np.conj(Z.T))
    return np.ascontiguousarray(np.conj(np.dot(Zh, G).T))


@nb.njit(cache=True, nogil=True)
def _orth(Z):  # pragma: no cover - compiled
    Q, _ = np.linalg.qr(Z)
    return np.ascontiguousarray(Q)


@nb.njit(cache=True, nogil=True)
def lsi(G, Omega):  # pragma: no cover - compiled
    """The LSI sampler: ``V = orth(Gᴴ Ω)``, ``(A, B) = (G V, V)`` (Ω: m × k)."""
    V = _orth(_apply_h(G, Omega))
    return np.dot(G, V), V


@nb.njit(cache=True, nogil=True)
def _randomized_basis(G, Gh, Omega, n_iter):  # pragma: no cover - compiled
    """``Q = orth(G Ω)``, then `n_iter` times ``Q ← orth(G orth(Gᴴ Q))``; Gh holds Gᴴ.

    With Gᴴ stored (one n×n copy), every product is a BLAS product of the fast
    shape (n×n times n×s); ``(Qᴴ G)ᴴ`` runs at half that speed for s ≈ 11.
    """
    Q = _orth(np.dot(G, Omega))
    for _ in range(n_iter):
        Q = _orth(np.dot(G, _orth(np.dot(Gh, Q))))
    return Q


@nb.njit(cache=True, nogil=True)
def _tall_svd(C):  # pragma: no cover - compiled
    """Thin SVD ``C = Vw diag(s) Wh`` of a tall C (n×s, n >= s) through its QR.

    ``C = Qc Rc`` and the SVD of the s×s ``Rc``, as LAPACK's own SVD does for
    tall matrices, but without its fixed cost for a 128×11 input (~35 µs there,
    ~20 µs here). Only the signs of the singular vector pairs may differ from
    ``numpy.linalg.svd(C)``, which leaves ``A Bᴴ`` unchanged.
    """
    if C.shape[0] < C.shape[1]:
        Vw, s, Wh = np.linalg.svd(C, full_matrices=False)
    else:
        Qc, Rc = np.linalg.qr(C)
        Ur, s, Wh = np.linalg.svd(Rc)
        Vw = np.dot(np.ascontiguousarray(Qc), np.ascontiguousarray(Ur))
    return np.ascontiguousarray(Vw), s, np.ascontiguousarray(Wh)


@nb.njit(cache=True, nogil=True)
def randomized_real(G, Omega, n_iter, k):  # pragma: no cover - compiled
    """Rank-k factors of a real G: range finder, then the SVD of ``Gᴴ Q`` in float64."""
    Gh = np.ascontiguousarray(np.conj(G.T))
    Q = _randomized_basis(G, Gh, Omega, n_iter)
    Vw, s, Wh = _tall_svd(np.dot(Gh, Q).astype(np.float64))
    Wk = np.ascontiguousarray(Wh[:k].T).astype(G.dtype)
    A = np.dot(Q, Wk)
    sk = s[:k].astype(G.dtype)
    for j in range(k):
        A[:, j] *= sk[j]
    return A, np.ascontiguousarray(Vw[:, :k]).astype(G.dtype)


@nb.njit(cache=True, nogil=True)
def randomized_complex(G, Omega, n_iter, k):  # pragma: no cover - compiled
    """:func:`randomized_real` of a complex G (the SVD in complex128)."""
    Gh = np.ascontiguousarray(np.conj(G.T))
    Q = _randomized_basis(G, Gh, Omega, n_iter)
    Vw, s, Wh = _tall_svd(np.dot(Gh, Q).astype(np.complex128))
    Wk = np.ascontiguousarray(np.conj(Wh[:k].T)).astype(G.dtype)
    A = np.dot(Q, Wk)
    sk = s[:k].astype(G.dtype)
    for j in range(k):
        A[:, j] *= sk[j]
    return A, np.ascontiguousarray(Vw[:, :k]).astype(G.dtype)
