"""Array-agnostic bodies of `unitarity_error` (exact and probe) and `reunitarize`.

Written only against the Array-API namespace `xp` (no NumPy import, no
in-place writes, no value-dependent Python branches). Everything here works
in double precision (float64/complex128) whatever the dtype of `U`: the error
of a float32 matrix is ~1e-7..1e-5, which the Gram matrix ``UᴴU − I`` would
lose entirely if it were formed in float32.

Non-finite and huge inputs
    A matrix holding NaN or ±inf gets the error ``inf`` (so that
    ``err > tol`` flags it; a NaN would compare False and hide it). Matrices
    whose largest entry exceeds ``_BIG`` are scaled by that entry ``s``
    before the Gram matrix is formed: ``UᴴU − I = s²(YᴴY − I/s²)`` with
    ``Y = U/s``, so nothing overflows until the final product with ``s²``,
    where ``inf`` is then the correctly rounded answer.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._array_api import core_dtype, device_of, eye_like, herm

__all__ = [
    "exact_error",
    "gram_deviation",
    "newton_schulz_step",
    "polar_double",
    "probe_error",
]

#: Entries above this are scaled away before a Gram matrix is formed (p·_BIG² < 1e308).
_BIG = 1e100


def _eye(p: int, like: Any, xp: ModuleType) -> Any:
    return eye_like(p, like, xp)


def _prepare(U: Any, xp: ModuleType) -> tuple[Any, Any, Any]:
    """Return ``(Y, s, finite)``: U prepared for a Gram matrix.

    ``Y`` is U in double precision with non-finite entries zeroed and scaled by
    ``s`` (shape ``(..., 1, 1)``, 1 unless the matrix is huge); ``finite`` is the
    per-matrix finiteness mask (shape ``(...)``).
    """
    X = xp.astype(U, core_dtype(xp, U.dtype))
    ok = xp.isfinite(X)
    finite = xp.all(ok, axis=(-2, -1))
    X = xp.where(ok, X, xp.zeros_like(X))
    absX = xp.abs(X)
    if X.shape[-2] * X.shape[-1] == 0:  # static shape branch: nothing to scale
        m = xp.zeros((*X.shape[:-2], 1, 1), dtype=absX.dtype, device=device_of(X))
    else:
        m = xp.max(absX, axis=(-2, -1), keepdims=True)
    one = xp.ones_like(m)
    # in double precision above _BIG; in single precision (JAX without x64) above its own
    # analogue, the fourth root of the largest value, so that p·s⁻²·X² stays finite
    big = _BIG if m.dtype == xp.float64 else float(xp.finfo(m.dtype).max) ** 0.25
    s = xp.where(m > big, m, one)
    return X / xp.astype(s, X.dtype), s, finite


def _inv_square(s: Any) -> Any:
    """``1/s²`` without overflow (it underflows to 0 for huge s, harmlessly)."""
    return (1.0 / s) / s


def _finish(err: Any, s: Any, finite: Any, xp: ModuleType) -> Any:
    """Undo the scaling (``err · s²``) and map non-finite matrices to ``inf``.

    ``err · s²`` beyond the largest double is ``inf`` (the correctly rounded
    answer), produced by a comparison rather than by an overflowing product, so
    that no floating-point warning is raised.
    """
    s = s[..., 0, 0]
    big = err > _inv_square(s) * float(xp.finfo(err.dtype).max)
    safe = xp.where(big, xp.zeros_like(err), err)
    inf = xp.full_like(err, float("inf"))
    err = xp.where(big, inf, (safe * s) * s)
    return xp.where(finite, err, inf)


def gram_deviation(X: Any, xp: ModuleType, shift: Any = None) -> Any:
    """``XᴴX − shift·I``, exactly Hermitian (``shift`` defaults to 1)."""
    G = herm(X, xp) @ X
    eye = _eye(G.shape[-1], G, xp)
    E = G - (eye if shift is None else eye * xp.astype(shift, G.dtype))
    return 0.5 * (E + herm(E, xp))


def exact_error(U: Any, xp: ModuleType) -> Any:
    """``‖UᴴU − I‖₂`` per matrix in double precision (body of `unitarity_error`)."""
    Y, s, finite = _prepare(U, xp)
    E = gram_deviation(Y, xp, _inv_square(s))  # I/s² is negligible when it underflows
    ev = xp.linalg.eigvalsh(E)
    err = xp.max(xp.abs(ev), axis=-1) if ev.shape[-1] else xp.sum(ev, axis=-1)
    return _finish(err, s, finite, xp)


def probe_error(U: Any, X0: Any, depth: int, xp: ModuleType) -> Any:
    """Lower estimate of ``‖UᴴU − I‖₂`` from a block Krylov space.

    The body of ``unitarity_error(method="probe")``.

    With ``E = UᴴU − I`` (applied as ``Uᴴ(U V) − V``, never formed) and the
    start block `X0` (p×s, double precision), builds an orthonormal basis V of
    ``span[X0, E X0, …, E^{depth−1} X0]`` by block Lanczos with full
    re-orthogonalisation (projected before the QR and twice after it, so that
    a residual at rounding level, when the Krylov space is invariant, cannot
    bring back directions already in V), and returns ``‖E V‖₂ / ‖V‖₂``. That
    ratio is at most ``‖E‖₂`` for any V, so the estimate never overshoots
    (up to rounding); its accuracy comes from the Krylov space.
    """
    Y, s, finite = _prepare(U, xp)
    inv_s2 = xp.astype(_inv_square(s), Y.dtype)
    p = Y.shape[-1]
    Yh = herm(Y, xp)

    def apply(V: Any) -> Any:
        return Yh @ (Y @ V) - V * inv_s2

    V, _ = xp.linalg.qr(X0)
    width = V.shape[-1]
    blocks, images = [V], [apply(V)]
    for _ in range(depth - 1):
        if width >= p:  # static: the basis already spans everything
            break
        Vall = xp.concat(blocks, axis=-1)
        W = images[-1]
        Vh = herm(Vall, xp)
        R = W - Vall @ (Vh @ W)
        Z, _ = xp.linalg.qr(R)
        Z = Z[..., : min(Z.shape[-1], p - width)]
        for _ in range(2):  # "twice is enough", also for a residual at rounding level
            Z = Z - Vall @ (Vh @ Z)
        Z, _ = xp.linalg.qr(Z)
        blocks.append(Z)
        images.append(apply(Z))
        width += Z.shape[-1]
    Vall = xp.concat(blocks, axis=-1)
    Wall = xp.concat(images, axis=-1)
    num = xp.linalg.svdvals(Wall)[..., 0]
    den = xp.linalg.svdvals(Vall)[..., 0]
    return _finish(num / den, s, finite, xp)


def newton_schulz_step(X: Any, E: Any, xp: ModuleType) -> Any:
    """One Newton–Schulz (Björck) step ``X(3I − XᴴX)/2 = X − X E/2`` with ``E = XᴴX − I``.

    Written as a correction so that a nearly unitary X keeps all its digits.
    On each singular value it is ``σ ↦ σ(3 − σ²)/2``, i.e. ``e ↦ −e²(3 − e)/4``
    for ``e = σ² − 1``: quadratic convergence for ``|e| < 1``.
    """
    return X - X @ (0.5 * E)


def polar_double(U: Any, xp: ModuleType) -> Any:
    """Polar factor ``W Vᴴ`` of U from an SVD in double precision.

    U is scaled first (``polar(cU) = polar(U)`` for c > 0), so that huge entries
    do not overflow.
    """
    X = xp.astype(U, core_dtype(xp, U.dtype))
    if X.shape[-2] * X.shape[-1]:  # static shape branch
        m = xp.max(xp.abs(X), axis=(-2, -1), keepdims=True)
        X = X / xp.astype(xp.where(m > 0, m, xp.ones_like(m)), X.dtype)
    W, _, Vh = xp.linalg.svd(X, full_matrices=False)
    return xp.astype(W @ Vh, U.dtype)
