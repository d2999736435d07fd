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
    is_lazy_array,
    matmul_add,
    thin_product,
)

__all__ = [
    "METHODS",
    "add_low_rank",
    "core_factors",
    "core_minus_identity",
    "gram_error",
    "square_factors",
    "square_jvp",
    "square_subspace",
    "square_vjp",
    "step_subspace",
    "stiefel_core",
    "stiefel_core_factors",
    "stiefel_jvp",
    "stiefel_projection",
    "stiefel_subspace",
    "stiefel_vjp",
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
    return core_factors(alpha, beta, method, xp)[0]


def core_factors(alpha: Any, beta: Any, method: str, xp: ModuleType) -> tuple[Any, tuple]:
    """``(F − I, spectrum)``: :func:`core_minus_identity` and what its derivative needs.

    `spectrum` is ``(W, σ, Vᴴ, s)`` for ``"polar"``, the SVD of ``(I + αβᴴ)/s``
    with s broadcasting like a matrix, and ``(V, λ)`` for ``"exp"`` and
    ``"cayley"``, the eigenpairs of ``iY`` (``Y = V diag(−iλ) Vᴴ``).
    """
    r = alpha.shape[-2]
    eye = _eye(r, alpha, xp)
    if method == "polar":
        # polar(cI + cαβᴴ) = polar(I + αβᴴ) for c > 0: scale so that nothing overflows.
        sa = _at_least_one(alpha, xp)
        sb = _at_least_one(beta, xp)
        C = eye / (sa * sb) + (alpha / sa) @ herm(beta / sb, xp)
        W, sig, Vh = xp.linalg.svd(C, full_matrices=False)
        return W @ Vh - eye, (W, sig, Vh, sa * sb)
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
    lam = lam * scale
    d = _unit_circle_minus_one(lam, method, xp)
    if is_complex(xp, alpha.dtype):
        return (V * xp.expand_dims(d, axis=-2)) @ herm(V, xp), (V, lam)
    # For a real step the eigenvalues come in pairs ±λ with conjugate eigenvectors v, v̄,
    # and F − I = Σ over the pairs of 2·Re((f(λ) − 1) v vᴴ). Built from the upper half of
    # the spectrum alone, F is orthogonal to rounding however large λ is (the computed
    # +λ and −λ of a pair need not match).
    # An odd r adds a zero eigenvalue, which does not move anything.
    top = r - r // 2
    Vt = V[..., :, top:]
    Dt = (Vt * xp.expand_dims(d[..., top:], axis=-2)) @ herm(Vt, xp)
    D = 2.0 * xp.real(Dt)
    if r // 2 == 0:
        return D, (V, lam)
    # That needs the upper-half vectors and their conjugates to be orthonormal, which
    # holds for pairs well apart from zero. Eigenvalues at the eigensolver's noise
    # level eps·‖Y‖ (a zero eigenvalue of Y: a rank-deficient [B, Â], or an odd-rank Y)
    # come without that structure, and for a large step the sum is then far from
    # orthogonal (‖FᵀF − I‖ up to 8 at ‖Y‖ = 1e16). Where the sum is not orthogonal
    # to rounding, F is built from real planes instead (orthogonal by construction).
    # "To rounding": ‖FᵀF − I‖_F = ‖D + Dᵀ + DᵀD‖_F <= 8·r·eps. F's error passes into the
    # result unchanged, and r <= n, so this keeps it well inside the 30·n·eps promised
    # for the result (docs/theory.md); where the sum meets it (all but about 1 % of
    # random steps), it is kept as it is, with its result unchanged.
    E = D + herm(D, xp) + herm(D, xp) @ D
    err = xp.linalg.vector_norm(E, axis=(-2, -1), keepdims=True)
    tol = 8.0 * r * float(xp.finfo(D.dtype).eps)
    return xp.where(err <= tol, D, _planar_core(V, d, top, xp)), (V, lam)


def _planar_core(V: Any, d: Any, top: int, xp: ModuleType) -> Any:
    """``F − I`` of a real skew core as rotations in orthonormal real planes.

    The eigenvector ``v = x + iy`` of the eigenvalue λ > 0 of ``iY`` spans the
    invariant plane ``(x, y)`` of Y, where ``F − I`` is the 2×2 block
    ``[[Re d, Im d], [−Im d, Re d]]`` with ``d = f(λ) − 1``. The planes are
    orthonormalised together by one Householder QR (largest λ first, so that
    planes at the noise level, whose vectors may be nearly dependent, take what
    the accurate ones leave), and each block keeps its orientation from the
    signs of R. F is orthogonal to rounding whatever the eigenvectors are; a
    plane at the noise level turns by an angle of that level, a backward error
    of ``eps·‖Y‖``.
    """
    Vt = xp.flip(V[..., :, top:], axis=-1)
    dt = xp.flip(d[..., top:], axis=-1)
    r, m = Vt.shape[-2], Vt.shape[-1]
    planes = xp.stack([xp.real(Vt), xp.imag(Vt)], axis=-1)  # (..., r, m, 2)
    P, R = xp.linalg.qr(xp.reshape(planes, (*Vt.shape[:-2], r, 2 * m)))
    diag = xp.reshape(xp.linalg.diagonal(R), (*Vt.shape[:-2], m, 2))
    turn = diag[..., 0] * diag[..., 1]
    sign = xp.where(turn < 0, -xp.ones_like(turn), xp.ones_like(turn))
    P = xp.reshape(P, (*Vt.shape[:-2], r, m, 2))
    Px, Py = P[..., 0], P[..., 1]
    re = xp.expand_dims(xp.real(dt), axis=-2)
    im = xp.expand_dims(xp.imag(dt) * sign, axis=-2)
    Pxt, Pyt = xp.matrix_transpose(Px), xp.matrix_transpose(Py)
    return (Px * re) @ Pxt + (Py * re) @ Pyt + (Px * im) @ Pyt - (Py * im) @ Pxt


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
    Ahat, Aperp = stiefel_projection(U, A, xp)
    Q, beta, alpha = step_subspace(Ahat, B, batch, xp)
    return Q, beta, alpha, Aperp


def stiefel_projection(U: Any, A: Any, xp: ModuleType) -> tuple[Any, Any]:
    """``(Â, A⊥)`` with ``A = U Â + A⊥`` (exactly, for any U), by Gram–Schmidt twice."""
    Uh = herm(U, xp)
    Ahat = Uh @ A
    Aperp = A - U @ Ahat
    Ahat2 = Uh @ Aperp
    Aperp = Aperp - U @ Ahat2
    return Ahat + Ahat2, Aperp


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
    Z, D, _ = stiefel_core_factors(A, Aperp, beta, alpha, batch, eps, xp)
    return Z, D


def stiefel_core_factors(A: Any, Aperp: Any, beta: Any, alpha: Any, batch: tuple[int, ...],
                         eps: float, xp: ModuleType):
    """``(Z, D, (σ, Vᴴ))``: :func:`stiefel_core` and the SVD ``R_C = W diag(σ) Vᴴ``.

    ``R_Cᴴ R_C = CᴴC`` is the Gram matrix of MQ, so σ and V give the derivative.
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
    Ws, sc, Vsh = xp.linalg.svd(Rc, full_matrices=False)
    P = Qc @ (Ws @ Vsh)
    return Z, xp.concat([P[..., :r, :] - eye, P[..., r:, :]], axis=-2), (sc, Vsh)


# --------------------------------------------------------------------------- derivatives
# The updates are smooth in (U, A, B) wherever U + ABᴴ is nonsingular (polar) and
# everywhere (exp, Cayley), but the QR, eigh and SVD that compute them are not
# differentiable where [B, Â] is rank deficient or the core has repeated eigen- or
# singular values: at A = 0, for instance, which is the first step of every run.
# Differentiating through them gives NaN or wrong numbers there. The rules below are
# the derivative of the map itself, in the basis Q of the step: the result is
# ``U T`` with ``T = Φ(ÂBᴴ)`` (square: ``Φ(S) = polar(I + S)``, ``expm(skew S)`` or
# the Cayley transform of ``skew S``) and T − I lives in range(Q) (``docs/reliability.md``,
# "Derivatives"). They use only divided differences of the core's spectrum,
# which are smooth (no difference of eigenvalues in a denominator), Q orthonormal
# with range(Q) ⊇ span[B, Â] (which Householder QR gives even for a rank-deficient
# step), and products with U of O(n²r).


def _as(x: Any, dtype: Any, xp: ModuleType) -> Any:
    """`x` in `dtype` (the real part when a complex `x` goes to a real dtype)."""
    if is_complex(xp, x.dtype) and not is_complex(xp, dtype):
        x = xp.real(x)
    return xp.astype(x, dtype)


def _sinc(x: Any, xp: ModuleType) -> Any:
    """``sin(x)/x``, smooth through 0.

    Its series ``1 − x²/6 + x⁴/120`` below ``(5040·eps)^(1/6)``, where the first
    term left out is below eps.
    """
    small = xp.abs(x) < (5040.0 * float(xp.finfo(x.dtype).eps)) ** (1 / 6)
    x2 = x * x
    safe = xp.where(small, xp.ones_like(x), x)
    return xp.where(small, 1.0 - x2 / 6.0 * (1.0 - x2 / 20.0), xp.sin(safe) / safe)


def _unit(phase: Any, xp: ModuleType) -> Any:
    """``e^{i·phase}`` (complex of phase's precision)."""
    cplx = _complex_of(phase.dtype, xp)
    return xp.astype(xp.cos(phase), cplx) + xp.astype(xp.sin(phase), cplx) * 1j


def _skew_differences(lam: Any, method: str, xp: ModuleType) -> tuple[Any, Any]:
    """``(Δ, g)``: divided differences of f = exp or Cayley at the eigenvalues ``a = −iλ`` of Y.

    ``Δ_ij = (f(a_i) − f(a_j))/(a_i − a_j)`` (``f'(a_i)`` when equal) and
    ``g_i = Δ(a_i, 0)``. For exp, ``Δ_ij = e^{−i(λ_i+λ_j)/2} sinc((λ_i − λ_j)/2)``;
    for Cayley, ``Δ_ij = c_i c_j`` with ``c = 1/(1 + iλ/2)``. Neither divides by a
    difference of eigenvalues.
    """
    li = xp.expand_dims(lam, axis=-1)
    lj = xp.expand_dims(lam, axis=-2)
    cplx = _complex_of(lam.dtype, xp)
    if method == "exp":
        delta = _unit(-(li + lj) / 2, xp) * xp.astype(_sinc((li - lj) / 2, xp), cplx)
        return delta, _unit(-lam / 2, xp) * xp.astype(_sinc(lam / 2, xp), cplx)
    if method != "cayley":  # a new core needs its own rule, never another's
        raise NotImplementedError(f"no derivative rule for the core of method {method!r}")
    c = 1.0 / (xp.astype(lam, cplx) * 0.5j + 1.0)
    return xp.expand_dims(c, axis=-1) * xp.expand_dims(c, axis=-2), c


def _in_basis(V: Any, X: Any, weights: Any, xp: ModuleType) -> Any:
    """``V [(Vᴴ X V) ∘ weights] Vᴴ`` in the dtype of X (V and weights of the core)."""
    Vh = herm(V, xp)
    return _as(V @ ((Vh @ xp.astype(X, V.dtype) @ V) * weights) @ Vh, X.dtype, xp)


def _function_of(V: Any, values: Any, dtype: Any, xp: ModuleType) -> Any:
    """``V diag(values) Vᴴ`` in `dtype`."""
    return _as((V * xp.expand_dims(values, axis=-2)) @ herm(V, xp), dtype, xp)


def _singular(sig: Any, xp: ModuleType) -> Any:
    """Whether M, of singular values `sig` (…, r), is singular to rounding; (…, 1, 1).

    There (``σ_min <= r·eps·σ_max``) its polar factor is not unique, and the derivative,
    of size 1/σ_min, has no correct digit. `ValueError` when the values can be read;
    traced ones (``jax.jit``, ``jax.grad``) cannot raise, and the caller makes the
    derivative NaN instead.
    """
    eps = float(xp.finfo(sig.dtype).eps)
    bad = xp.min(sig, axis=-1) <= sig.shape[-1] * eps * xp.max(sig, axis=-1)
    if not is_lazy_array(bad) and bool(xp.any(bad)):
        raise ValueError(
            "U + A @ B^H is singular (to rounding), so its polar factor (project, "
            "retract(method='polar'), step(method='polar')) is not unique there and has no "
            "derivative"
        )
    return xp.expand_dims(xp.expand_dims(bad, axis=-1), axis=-1)


def _nan_where(bad: Any, x: Any, xp: ModuleType) -> Any:
    return xp.where(bad, xp.full_like(x, float("nan")), x)


def _polar_weights(sig: Any, scale: Any, xp: ModuleType) -> tuple[Any, Any]:
    """``(1/(σ_i + σ_j), 1/(1 + σ_i))`` for the singular values ``σ = sig·scale`` of I + αβᴴ."""
    bad = _singular(sig, xp)
    s = sig * scale[..., 0]
    pair = 1.0 / (xp.expand_dims(s, axis=-1) + xp.expand_dims(s, axis=-2))
    return _nan_where(bad, pair, xp), 1.0 / (1.0 + s)


def _square_pieces(U: Any, res: tuple, xp: ModuleType):
    dt = U.dtype
    Q, beta, alpha, D = (_as(x, dt, xp) for x in res[:4])
    return dt, Q, herm(Q, xp), beta, alpha, D, thin_product(U, Q, xp)


def square_jvp(U: Any, Ahat: Any, B: Any, dU: Any, dAhat: Any, dB: Any, res: tuple,
               method: str, xp: ModuleType) -> Any:
    """Directional derivative of the square update ``U T(Â, B)`` along ``(dU, dÂ, dB)``.

    `res` is ``(Q, β, α, F − I, *spectrum)`` of the forward pass
    (:func:`step_subspace`, :func:`core_factors`). O(n²r).
    """
    dt, Q, Qh, beta, alpha, D, UQ = _square_pieces(U, res, xp)
    eye = _eye(Q.shape[-1], Q, xp)
    dBhQ = herm(dB, xp) @ Q
    dAhQ = herm(dAhat, xp) @ Q
    if method == "polar":
        # dT = T Ω with H Ω + Ω H = Tᴴ dN − dNᴴ T (N = I + ÂBᴴ = T H), solved blockwise:
        # H = I + Q(H_c − I)Qᴴ, H_c = V diag(σ) Vᴴ.
        W, sig, Vh, scale = res[4:]
        pair, single = _polar_weights(sig, scale, xp)
        V = herm(Vh, xp)
        F = D + eye
        dNQ = dAhat @ herm(beta, xp) + Q @ (alpha @ dBhQ)
        XQ = dNQ + Q @ (herm(D, xp) @ (Qh @ dNQ)) - (
            Q @ (beta @ dAhQ) + dB @ herm(alpha, xp)) @ F
        XQQ = Qh @ XQ
        PXQ = XQ - Q @ XQQ
        K = _in_basis(V, XQQ, pair, xp)
        J = _function_of(V, single, dt, xp)
        left = thin_product(dU, Q, xp) @ D + thin_product(U, PXQ, xp) @ J + UQ @ (F @ K)
        return dU + left @ Qh - (UQ @ (F @ J)) @ herm(PXQ, xp)
    # dT = Fréchet derivative of f at Ω = Q Y Qᴴ applied to E = skew(dÂBᴴ + ÂdBᴴ);
    # E vanishes on range(Q)⊥ × range(Q)⊥.
    V, lam = res[4:]
    delta, gval = _skew_differences(lam, method, xp)
    EQ = (dAhat @ herm(beta, xp) + Q @ (alpha @ dBhQ) - Q @ (beta @ dAhQ)
          - dB @ herm(alpha, xp)) / 2
    EQQ = Qh @ EQ
    PEQ = EQ - Q @ EQQ
    L = _in_basis(V, EQQ, delta, xp)
    g = _function_of(V, gval, dt, xp)
    left = thin_product(dU, Q, xp) @ D + thin_product(U, PEQ, xp) @ g + UQ @ L
    return dU + left @ Qh - UQ @ (g @ herm(PEQ, xp))


def square_vjp(U: Any, Ahat: Any, B: Any, G: Any, res: tuple, method: str,
               xp: ModuleType) -> tuple[Any, Any, Any]:
    """``(Ū, Â̄, B̄)``: the cotangent `G` of the square update ``U T(Â, B)`` pulled back.

    The transpose of :func:`square_jvp` for the real inner product
    ``Re tr(Xᴴ Y)`` (so complex cotangents are ``∂/∂Re + i ∂/∂Im``). O(n²r).
    """
    dt, Q, Qh, beta, alpha, D, UQ = _square_pieces(U, res, xp)
    eye = _eye(Q.shape[-1], Q, xp)
    GQ = thin_product(G, Q, xp)
    TQ = adjoint_product(U, GQ, xp)  # T̄ Q with T̄ = Uᴴ G
    ThQ = adjoint_product(G, UQ, xp)  # T̄ᴴ Q
    M = Qh @ TQ
    Ubar = G + (GQ @ herm(D, xp)) @ Qh  # G Tᴴ
    if method == "polar":
        # N̄ = 2 T Γ with H Γ + Γ H = skew(Tᴴ T̄)
        W, sig, Vh, scale = res[4:]
        pair, single = _polar_weights(sig, scale, xp)
        V = herm(Vh, xp)
        F = D + eye
        EQ = (TQ + Q @ (herm(D, xp) @ M) - ThQ @ F) / 2
        EQQ = (herm(F, xp) @ M - herm(M, xp) @ F) / 2
        PEQ = EQ - Q @ EQQ
        K = _in_basis(V, EQQ, pair, xp)
        J = _function_of(V, single, dt, xp)
        SQ = 2.0 * (Q @ (F @ K) + PEQ @ J)
        ShQ = -2.0 * ((Q @ K + PEQ @ J) @ herm(F, xp))
        return Ubar, SQ @ beta, ShQ @ alpha
    V, lam = res[4:]
    delta, gval = _skew_differences(lam, method, xp)
    Lm = _in_basis(V, M, xp.conj(delta), xp)
    g = _function_of(V, gval, dt, xp)
    PTQ = TQ - Q @ M
    PThQ = ThQ - Q @ herm(M, xp)
    SQ = (Q @ (Lm - herm(Lm, xp)) + PTQ @ herm(g, xp) - PThQ @ g) / 2  # S̄ Q, S̄ skew
    return Ubar, SQ @ beta, -(SQ @ alpha)


def _stiefel_pieces(U: Any, Ahat: Any, Aperp: Any, res: tuple, xp: ModuleType):
    """Shared terms of the Stiefel derivatives: R = M 𝒢^(−1/2) (``docs/reliability.md``).

    ``M = U + A′Bᴴ`` with ``A′ = UÂ + A⊥``, and ``𝒢 = NᴴN + B A⊥ᴴA⊥ Bᴴ`` with
    ``N = I + ÂBᴴ``, which is ``I + Q(CᴴC − I)Qᴴ``; ``CᴴC = V diag(σ²) Vᴴ``.
    """
    dt = U.dtype
    Q, beta, alpha = (_as(x, dt, xp) for x in res[:3])
    sig, Vh = res[3:]
    bad = _singular(sig, xp)
    V = herm(Vh, xp)
    si = xp.expand_dims(sig, axis=-1)
    sj = xp.expand_dims(sig, axis=-2)
    # divided differences of x^(−1/2) at σ_i², σ_j² and at σ_i², 1
    pair = _nan_where(bad, -1.0 / (si * sj * (si + sj)), xp)
    J = _function_of(V, -1.0 / (sig * (sig + 1.0)), dt, xp)
    K = _function_of(V, 1.0 / sig, dt, xp)  # (CᴴC)^(−1/2)
    Ap = thin_product(U, Ahat, xp) + Aperp
    return dt, Q, herm(Q, xp), beta, alpha, V, pair, J, K, Ap


def stiefel_jvp(U: Any, Ahat: Any, Aperp: Any, B: Any, dU: Any, dAhat: Any, dAperp: Any,
                dB: Any, res: tuple, xp: ModuleType) -> Any:
    """Directional derivative of the Stiefel polar update (U n×p, p < n).

    Its inputs are those of :func:`stiefel_core_factors` after :func:`stiefel_projection`
    (`res` = ``(Q, β, α, σ, Vᴴ)``); the result is ``M 𝒢^(−1/2)``, see
    :func:`_stiefel_pieces`. O(npr).
    """
    dt, Q, Qh, beta, alpha, V, pair, J, K, Ap = _stiefel_pieces(U, Ahat, Aperp, res, xp)
    eye = _eye(Q.shape[-1], Q, xp)
    bh, ah = herm(beta, xp), herm(alpha, xp)
    dBhQ = herm(dB, xp) @ Q
    dAhQ = herm(dAhat, xp) @ Q
    dAp = thin_product(dU, Ahat, xp) + thin_product(U, dAhat, xp) + dAperp
    dMQ = thin_product(dU, Q, xp) + dAp @ bh + Ap @ dBhQ
    first = dU + dAp @ herm(B, xp) + Ap @ herm(dB, xp) + dMQ @ ((K - eye) @ Qh)
    Nc = eye + alpha @ bh
    dNQ = dAhat @ bh + Q @ (alpha @ dBhQ)
    Wm = herm(Aperp, xp) @ Aperp
    dW = herm(dAperp, xp) @ Aperp + herm(Aperp, xp) @ dAperp
    EQ = ((Q @ (beta @ dAhQ) + dB @ ah) @ Nc + dNQ + B @ (herm(Ahat, xp) @ dNQ)
          + dB @ (Wm @ bh) + Q @ (beta @ (dW @ bh + Wm @ dBhQ)))  # d𝒢 Q
    EQQ = Qh @ EQ
    PEQ = EQ - Q @ EQQ
    MQ = thin_product(U, Q, xp) + Ap @ bh
    Hd = _in_basis(V, EQQ, pair, xp)
    return first + MQ @ (Hd @ Qh + J @ herm(PEQ, xp)) + thin_product(U, PEQ, xp) @ (J @ Qh)


def stiefel_vjp(U: Any, Ahat: Any, Aperp: Any, B: Any, G: Any, res: tuple,
                xp: ModuleType) -> tuple[Any, Any, Any, Any]:
    """``(Ū, Â̄, Ā⊥, B̄)``: the transpose of :func:`stiefel_jvp`. O(npr)."""
    dt, Q, Qh, beta, alpha, V, pair, J, K, Ap = _stiefel_pieces(U, Ahat, Aperp, res, xp)
    eye = _eye(Q.shape[-1], Q, xp)
    bh = herm(beta, xp)
    GQ = G @ Q
    Mbar = G + GQ @ ((K - eye) @ Qh)  # G 𝒢^(−1/2)
    MQ = thin_product(U, Q, xp) + Ap @ bh
    XQ = (adjoint_product(U, GQ, xp) + B @ (herm(Ap, xp) @ GQ)
          + adjoint_product(G, MQ, xp)) / 2  # sym(Mᴴ G) Q
    XQQ = Qh @ XQ
    Gqq = _in_basis(V, XQQ, pair, xp)
    GbQ = Q @ Gqq + (XQ - Q @ XQQ) @ J  # 𝒢̄ Q
    Y = GbQ @ beta  # 𝒢̄ B
    Apbar = Mbar @ B
    Wm = herm(Aperp, xp) @ Aperp
    Nc = eye + alpha @ bh
    Ahbar = 2.0 * (Y + Ahat @ (herm(B, xp) @ Y)) + adjoint_product(U, Apbar, xp)
    Bbar = 2.0 * (GbQ @ (herm(Nc, xp) @ alpha) + Y @ Wm) + adjoint_product(Mbar, Ap, xp)
    Aperpbar = 2.0 * (Aperp @ (herm(beta, xp) @ Gqq @ beta)) + Apbar
    return Mbar + Apbar @ herm(Ahat, xp), Ahbar, Aperpbar, Bbar
