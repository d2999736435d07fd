"""Array-agnostic bodies of `project`, `transport` and `retract`.

Written only against the Array-API namespace `xp` (no NumPy import): no
in-place writes, no value-dependent Python branches, so the same code runs
eagerly on NumPy, CuPy, torch and array-api-strict and traces under ``jax.jit``.

All three square updates share one formula (``docs/theory.md``)::

    Â = Uᴴ A,   [B, Â] = Q R  (Householder, so Q is orthonormal even when
                               [B, Â] is rank deficient),   β, α = R[:, :k], R[:, k:]
    U_new = U + (U Q)(F − I) Qᴴ

with an r×r unitary core F (r = min(n, 2k)) computed in double precision:
``polar(I + αβᴴ)`` (projUNN-D), ``expm(Y)`` or the Cayley transform of
``Y = (αβᴴ − βαᴴ)/2`` (projUNN-T, Wen–Yin).  The cores return ``F − I``
directly so that small steps do not lose digits to cancellation.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._array_api import (
    adjoint_product,
    basis_update,
    core_dtype,
    device_of,
    herm,
    is_complex,
    matmul_add,
    thin_product,
)

__all__ = [
    "METHODS",
    "add_low_rank",
    "core_minus_identity",
    "gram_error",
    "square_factors",
    "square_subspace",
    "step_subspace",
    "stiefel_core",
    "stiefel_subspace",
    "times_basis",
]

#: Retraction names accepted by :func:`core_minus_identity`.
METHODS = ("polar", "exp", "cayley")


def _eye(r: int, like: Any, xp: ModuleType) -> Any:
    return xp.eye(r, dtype=like.dtype, device=device_of(like))


def _broadcast(x: Any, batch: tuple[int, ...], xp: ModuleType) -> Any:
    shape = (*batch, *x.shape[-2:])
    return x if tuple(x.shape) == shape else xp.broadcast_to(x, shape)


def step_subspace(Ahat: Any, B: Any, batch: tuple[int, ...], xp: ModuleType) -> tuple[Any, ...]:
    """Orthonormal basis Q of ``span[B, Â]`` and the coordinates β, α (double precision).

    Householder QR (``xp.linalg.qr``) keeps Q orthonormal when the columns are
    dependent or zero; nothing here divides by a column norm.
    """
    k = B.shape[-1]
    cdt = core_dtype(xp, B.dtype)
    W = xp.concat([_broadcast(B, batch, xp), _broadcast(Ahat, batch, xp)], axis=-1)
    Q, R = xp.linalg.qr(xp.astype(W, cdt))
    return Q, R[..., :k], R[..., k:]


def _unit_circle_minus_one(lam: Any, method: str, xp: ModuleType) -> Any:
    """``f(−iλ) − 1`` for the eigenvalues −iλ of the skew-Hermitian core Y.

    exp:    e^{−iλ} − 1 = −2 sin²(λ/2) − i sin λ       (no cancellation)
    cayley: (1 − iλ/2)/(1 + iλ/2) − 1 = −iλ / (1 + iλ/2)
    """
    cplx = _complex_of(lam.dtype, xp)
    if method == "exp":
        s = xp.sin(lam / 2)
        re = xp.astype(-2.0 * s * s, cplx)
        im = xp.astype(-xp.sin(lam), cplx)
        return re + im * 1j
    lam_c = xp.astype(lam, cplx)
    return (lam_c * -1j) / (lam_c * 0.5j + 1.0)


def _complex_of(dtype: Any, xp: ModuleType) -> Any:
    """The complex dtype of `dtype`'s precision (complex128 for the double cores)."""
    single = dtype in (xp.float32, xp.complex64)
    return xp.complex64 if single else xp.complex128


def _at_least_one(x: Any, xp: ModuleType) -> Any:
    """``max(1, max |x|)`` per matrix (real), shaped to broadcast against the matrices."""
    m = xp.max(xp.abs(x), axis=(-2, -1), keepdims=True)
    one = xp.ones_like(m)
    return xp.where(m > one, m, one)


def core_minus_identity(alpha: Any, beta: Any, method: str, xp: ModuleType) -> Any:
    """``F − I`` for the r×r core of `method`, in the (double) dtype of `alpha`."""
    r = alpha.shape[-2]
    eye = _eye(r, alpha, xp)
    if method == "polar":
        # polar(cI + cαβᴴ) = polar(I + αβᴴ) for c > 0: scale so that nothing overflows.
        sa = _at_least_one(alpha, xp)
        sb = _at_least_one(beta, xp)
        C = eye / (sa * sb) + (alpha / sa) @ herm(beta / sb, xp)
        W, _, Vh = xp.linalg.svd(C, full_matrices=False)
        return W @ Vh - eye
    # Y = (αβᴴ − βαᴴ)/2 is skew-Hermitian, so H = iY is Hermitian: Y = V diag(−iλ) Vᴴ.
    # eigh runs on H / (sa·sb), whose entries are at most r, and λ is scaled back:
    # a representable step cannot overflow inside the eigensolver.
    sa = _at_least_one(alpha, xp)
    sb = _at_least_one(beta, xp)
    X = (alpha / sa) @ herm(beta / sb, xp)
    H = xp.astype(X - herm(X, xp), _complex_of(X.dtype, xp)) * 0.5j
    H = 0.5 * (H + herm(H, xp))  # exactly Hermitian before eigh
    lam, V = xp.linalg.eigh(H)
    scale = (sa * sb)[..., 0]  # (..., 1), real like λ
    d = _unit_circle_minus_one(lam * scale, method, xp)
    if is_complex(xp, alpha.dtype):
        return (V * xp.expand_dims(d, axis=-2)) @ herm(V, xp)
    # For a real step the eigenvalues come in pairs ±λ with conjugate eigenvectors v, v̄,
    # and F − I = Σ over the pairs of 2·Re((f(λ) − 1) v vᴴ). Built from the upper half of
    # the spectrum alone, F is orthogonal to rounding however large λ is (the computed
    # +λ and −λ of a pair need not match), and it is smooth in the step: no SVD of an
    # orthogonal matrix, whose equal singular values would spoil autodiff through it.
    # An odd r adds a zero eigenvalue, which does not move anything.
    top = r - r // 2
    Vt = V[..., :, top:]
    Dt = (Vt * xp.expand_dims(d[..., top:], axis=-2)) @ herm(Vt, xp)
    return 2.0 * xp.real(Dt)


def square_factors(Ahat: Any, B: Any, batch: tuple[int, ...], method: str, xp: ModuleType):
    """``(Q, (F − I) Qᴴ)`` in the dtype of B: the update is ``U + (U Q)((F − I) Qᴴ)``.

    From ``Â = UᴴA`` and B: :func:`step_subspace`, :func:`core_minus_identity`,
    and the right factor as :func:`add_low_rank` forms it.
    """
    Q, beta, alpha = step_subspace(Ahat, B, batch, xp)
    D = core_minus_identity(alpha, beta, method, xp)
    Qd = xp.astype(Q, B.dtype)
    return Qd, xp.astype(D, B.dtype) @ herm(Qd, xp)


def square_subspace(U: Any, A: Any, B: Any, batch: tuple[int, ...], xp: ModuleType):
    """``(Q, β, α)`` of the square update: ``Â = UᴴA`` and ``[B, Â] = Q [β, α]``."""
    return step_subspace(adjoint_product(U, A, xp), B, batch, xp)


def times_basis(U: Any, Q: Any, xp: ModuleType) -> Any:
    """The left basis ``U Q`` of the update, in the working dtype of U."""
    return thin_product(U, xp.astype(Q, U.dtype), xp)


def gram_error(L: Any, xp: ModuleType) -> Any:
    """``‖LᴴL − I‖₂`` per matrix, in double precision (L: n×r, so O(nr²))."""
    X = xp.astype(L, core_dtype(xp, L.dtype))
    G = herm(X, xp) @ X - _eye(X.shape[-1], X, xp)
    ev = xp.linalg.eigvalsh(0.5 * (G + herm(G, xp)))
    return xp.max(xp.abs(ev), axis=-1)


def add_low_rank(U: Any, UQ: Any, Q: Any, D: Any, xp: ModuleType, Z: Any = None) -> Any:
    """``U + [UQ, Z] D Qᴴ`` in the working dtype of U (Z: extra left basis, Stiefel case).

    With ``UQ=None`` (and no Z) the left basis ``U Q`` is formed with the update,
    as :func:`times_basis` would (for Dask, in the same pass over U).
    """
    dt = U.dtype
    if UQ is None:
        Qd = xp.astype(Q, dt)
        return basis_update(U, Qd, xp.astype(D, dt) @ herm(Qd, xp), xp)
    left = UQ if Z is None else xp.concat([UQ, xp.astype(Z, dt)], axis=-1)
    return matmul_add(U, left, xp.astype(D, dt) @ herm(xp.astype(Q, dt), xp), xp)


def stiefel_subspace(U: Any, A: Any, B: Any, batch: tuple[int, ...], xp: ModuleType):
    """``(Q, β, α, A⊥)`` for U n×p, p < n: ``A = UÂ + A⊥`` and ``[B, Â] = Q [β, α]``.

    Classical Gram–Schmidt twice ("twice is enough"), so that A⊥ is orthogonal
    to the range of U to working precision.
    """
    Uh = herm(U, xp)
    Ahat = Uh @ A
    Aperp = A - U @ Ahat
    Ahat2 = Uh @ Aperp
    Aperp = Aperp - U @ Ahat2
    Q, beta, alpha = step_subspace(Ahat + Ahat2, B, batch, xp)
    return Q, beta, alpha, Aperp


def stiefel_core(A: Any, Aperp: Any, beta: Any, alpha: Any, batch: tuple[int, ...],
                 eps: float, xp: ModuleType):
    """``(Z, D)`` with ``polar(U + ABᴴ) = U + [UQ, Z] D Qᴴ`` (``docs/theory.md``, rectangular U).

    With ``A = U Â + A⊥`` and Q an orthonormal basis of ``span[B, Â]`` (p×r), M = U + ABᴴ
    equals U on ``Q⊥`` and ``MQ = UQ(I + αβᴴ) + A⊥βᴴ`` on ``Q``, so
    ``polar(M) = U + UQ(P_top − I)Qᴴ + Z P_bot Qᴴ`` where ``[UQ, Z]`` is an orthonormal
    basis of ``span(UQ, A⊥)`` and ``P`` the orthonormal polar factor of MQ in it.
    Directions of A⊥ at rounding level (relative to `eps`, the working precision)
    are dropped: their Householder vectors are not orthogonal to U. The polar factor
    of the coordinates is taken as ``Q_C polar(R_C)`` from a QR of the coordinates,
    which never puts weight on the dropped directions, even when M is singular.
    """
    cdt = beta.dtype
    r = beta.shape[-2]
    n = A.shape[-2]
    Z, rho = xp.linalg.qr(xp.astype(_broadcast(Aperp, batch, xp), cdt))
    Wr, sig, Vrh = xp.linalg.svd(rho, full_matrices=False)
    Z = Z @ Wr  # A⊥ = Z diag(sig) Vrh, singular values in decreasing order
    # A⊥ is computed in the working precision: singular values below its rounding
    # level carry no direction and count as zero (a backward error of eps·‖A‖).
    scale = xp.linalg.vector_norm(xp.astype(_broadcast(A, batch, xp), cdt), axis=(-2, -1))
    tol = xp.expand_dims(scale, axis=-1) * (4.0 * eps * n**0.5)
    sig = xp.where(sig > tol, sig, xp.zeros_like(sig))
    coef = (xp.expand_dims(xp.astype(sig, cdt), axis=-1) * Vrh) @ herm(beta, xp)

    eye = _eye(r, alpha, xp)
    C = xp.concat([eye + alpha @ herm(beta, xp), coef], axis=-2)
    Qc, Rc = xp.linalg.qr(C)
    Ws, _, Vsh = xp.linalg.svd(Rc, full_matrices=False)
    P = Qc @ (Ws @ Vsh)
    return Z, xp.concat([P[..., :r, :] - eye, P[..., r:, :]], axis=-2)
