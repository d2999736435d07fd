r"""One-call training step: sketch the gradient to low rank, then retract.

``step(U, G, lr)`` is what an optimiser loop calls for a unitary (or
orthogonal, or Stiefel) weight: it takes the gradient G, dense or as factors
``(X, Y)``, approximates the step ``−lr·G`` by rank-k factors with
:func:`unitary_lowrank.lowrank` and applies :func:`unitary_lowrank.retract`.
"""

from __future__ import annotations

import math
from typing import Any, Literal, overload

import numpy as np

from ._array_api import (
    core_dtype,
    dtype_name,
    get_namespace,
    herm,
    is_lazy_array,
    no_fp_warnings,
    real_dtype,
)
from ._engines import fast as _fast
from ._validation import (
    check_finite,
    check_lr,
    check_matrix,
    check_method,
    check_out,
    check_same_device,
)
from .dense import full_retraction
from .methods import needs_square
from .sketch import LowRank, as_operator, lowrank_operator
from .typing import Array, Method, Namespace, Sampler, Seed
from .updates import retract_validated

__all__ = ["step"]


@overload
def step(U: Array, G: Array | tuple[Array, Array], lr: float | Array, /, *,
         rank: int | Literal["full"] = 1, tol: float | None = None,
         max_rank: int | None = None, method: Method = "exp", sampler: Sampler = "randomized",
         oversample: int = 10, n_iter: int = 2, shared: bool = False, rng: Seed = None,
         return_info: Literal[False] = False, check_finite: bool = False, out: Array | None = None,
         xp: Namespace | None = None) -> Array: ...


@overload
def step(U: Array, G: Array | tuple[Array, Array], lr: float | Array, /, *,
         rank: int | Literal["full"] = 1, tol: float | None = None,
         max_rank: int | None = None, method: Method = "exp", sampler: Sampler = "randomized",
         oversample: int = 10, n_iter: int = 2, shared: bool = False, rng: Seed = None,
         return_info: Literal[True], check_finite: bool = False, out: Array | None = None,
         xp: Namespace | None = None) -> tuple[Array, LowRank]: ...


def step(U: Array, G: Array | tuple[Array, Array], lr: float | Array, /, *,
         rank: int | Literal["full"] = 1, tol: float | None = None,
         max_rank: int | None = None, method: Method = "exp", sampler: Sampler = "randomized",
         oversample: int = 10, n_iter: int = 2, shared: bool = False, rng: Seed = None,
         return_info: bool = False, check_finite: bool = False, out: Array | None = None,
         xp: Namespace | None = None) -> Array | tuple[Array, LowRank]:
    r"""Retraction of the gradient step ``−lr·G``, approximated to rank `rank`.

    Computes factors ``A Bᴴ ≈ G`` with :func:`~unitary_lowrank.lowrank` and
    returns ``retract(U, −lr·A, B, method)``: projUNN-T (``"exp"``),
    projUNN-D (``"polar"``) or the Cayley update, in O(n²·rank) for the
    retraction plus the cost of the sketch.

    Parameters
    ----------
    U : array, shape (..., n, p)
        Current weight with orthonormal columns (square for ``"exp"`` and
        ``"cayley"``).
    G : array, shape (..., n, p), or pair (X, Y)
        Euclidean gradient with respect to U, dense, or as factors ``X``
        (..., n, r) and ``Y`` (..., p, r) of ``G = X @ Yᴴ`` (never formed).
    lr : float or 0-d array
        Learning rate (a real number, or a real 0-d array of any library, also
        a traced one under ``jax.jit``; the step is ``−lr·G``).
    rank : int or "full", default: 1
        Rank of the step. With `tol`, the smallest rank considered.
        ``"full"``: no sketch; the whole step ``−lr·G`` is retracted by a
        dense O(n³) computation (see Notes), which learns more per step and
        costs little next to a network's own forward and backward pass at
        small n.
    tol : float, optional
        Choose the rank instead: the smallest rank ``>= rank`` whose relative
        Frobenius error ``‖G − A Bᴴ‖_F / ‖G‖_F`` is at most `tol` (see
        :func:`~unitary_lowrank.lowrank`); ask for ``return_info=True`` to see
        the rank chosen and the error.
    max_rank : int, optional
        Largest rank considered with `tol`; default ``min(n, p)``.
    method : {"exp", "polar", "cayley"}, default: "exp"
        Retraction, as in :func:`~unitary_lowrank.retract`.
    sampler : {"randomized", "lsi", "column"}, default: "randomized"
        How the factors are sketched, as in :func:`~unitary_lowrank.lowrank`.
    oversample, n_iter : int, default: 10, 2
        Sketch parameters, as in :func:`~unitary_lowrank.lowrank`.
    shared : bool, default: False
        One test matrix for the whole batch.
    rng : None, int or numpy.random.Generator, optional
        Randomness of the sketch (drawn on the host, moved once to the device).
    return_info : bool, default: False
        Also return the :class:`~unitary_lowrank.sketch.LowRank` record
        ``(A, B, rank, error)`` of the sketch of G (before scaling by ``−lr``).
    check_finite : bool, default: False
        Also check `U` for NaN and infinity (G is always checked).
    out : array, optional
        Where to write the result (e.g. ``out=U``), once complete and finite.
    xp : array namespace, optional
        Namespace of the inputs; inferred by default.

    Returns
    -------
    U_new : array, shape (..., n, p)
        The updated weight, in the namespace, on the device and in the dtype
        (``result_type`` of U and G) of the inputs.
    info : LowRank
        Only with ``return_info=True``.

    Raises
    ------
    TypeError
        If an input is not a floating array (or is a masked array, a
        ``numpy.matrix`` or a torch ``meta`` tensor), inputs come from
        different libraries, `lr` is not a real number, `xp` is not an array
        namespace (or not the inputs'), or `out` is not an array of the
        inputs' library.
    ValueError
        If shapes do not fit (G must match U's last two axes), `lr` is not
        finite, the step ``−lr·G`` overflows the dtype, or a sketch or
        retraction argument is invalid.

    See Also
    --------
    unitary_lowrank.lowrank : The factors alone.
    unitary_lowrank.retract : The retraction alone.

    Notes
    -----
    **Full rank.** With ``rank="full"`` the step is not sketched: for
    ``"exp"``, ``U expm(Ω)`` with the tangent direction ``Ω = skew(Uᴴ(−lr·G))
    = (Uᴴ S − Sᴴ U)/2``, ``S = −lr·G`` (torch's ``matrix_exp``, JAX's and
    SciPy's ``expm``, else ``V exp(−iΛ) Vᴴ`` from ``eigh(iΩ)``); for
    ``"cayley"``, ``U (I − Ω/2)⁻¹(I + Ω/2)``; for ``"polar"``, the SVD polar
    factor of ``U + S`` (also for non-square U). These are the dense
    references of the low-rank updates: ``rank="full"`` equals
    ``retract(U, S, I)`` up to rounding, in O(n³) instead of the O(n³)-plus
    of a rank-n factored step. U must be unitary (``‖UᴴU − I‖₂ <= √eps``,
    checked at O(n²p)); `tol`, `max_rank` and ``return_info`` do not apply.

    Only the factor with fewer rows is scaled by ``−lr`` (B when ``p < n``),
    which is the same product ``−lr·A Bᴴ`` for a real `lr`. A dense G of one
    square matrix below 512×512 (NumPy, or a CPU torch tensor without
    autograd) with a fixed rank <= 4 and sampler ``"randomized"`` or ``"lsi"``
    is sketched by one compiled call when numba is installed: the same test
    matrix from `rng`, the same products, QRs and SVD as
    :func:`~unitary_lowrank.lowrank`, up to rounding.

    Examples
    --------
    >>> import numpy as np
    >>> import unitary_lowrank as ul
    >>> rng = np.random.default_rng(0)
    >>> U = ul.random_unitary(32, dtype="float64", rng=rng)
    >>> X = rng.standard_normal((32, 64)); Y = rng.standard_normal((32, 64))
    >>> U1 = ul.step(U, (X, Y), 1e-3, rank=2, rng=0)   # G = X @ Y.T, never formed
    >>> bool(ul.unitarity_error(U1) < 1e-13)
    True
    >>> U2, info = ul.step(U, X @ Y.T, 1e-3, tol=0.5, return_info=True, rng=0)
    >>> U2.shape, bool(info.error <= 0.5)
    ((32, 32), True)

    The whole step, with no sketch (a dense O(n³) retraction):

    >>> from scipy.linalg import expm
    >>> U3 = ul.step(U, X @ Y.T, 1e-3, rank="full")
    >>> W = U.T @ (-1e-3 * X @ Y.T)
    >>> bool(np.allclose(U3, U @ expm((W - W.T) / 2), atol=1e-13))
    True
    """
    check_method(method)
    lr = check_lr(lr)
    if isinstance(rank, str):
        if rank != "full":
            raise ValueError(f"rank must be a positive int or 'full', got {rank!r}")
        return _full_rank_step(U, G, lr, method, tol, max_rank, return_info, check_finite,
                               out, xp)
    fast = _fast.sketch(U, G, rank, tol, max_rank, sampler, oversample, n_iter, rng,
                        return_info, xp)
    if fast is not None:  # a small dense G: sketched in one compiled call
        res = fast
        A, B = _scaled_fast_step(res[0], res[1], lr, U)
        try:
            return retract_validated(U, A, B, method, check_finite_U=check_finite, out=out,
                                    xp=xp if xp is None else get_namespace(("U", U), xp=xp))
        except ValueError as exc:
            if not str(exc).startswith(_CORE_OVERFLOW):
                raise
            raise _too_large(res[0], lr, get_namespace(("U", U))) from exc
    get_namespace(("U", U))  # TypeError unless U is an array
    op = as_operator(G, xp)
    first = op.G[0] if isinstance(op.G, tuple) else op.G
    xp = get_namespace(("U", U), ("G", first), xp=xp)  # TypeError for two libraries
    check_matrix(U, "U", xp, "(..., n, p)")
    n, p = tuple(U.shape[-2:])
    if (op.m, op.n) != (n, p):
        raise ValueError(
            f"G must be an (..., n, p) gradient matching U's last two axes {(n, p)}, got "
            f"{(op.m, op.n)} (from {_describe(G)})"
        )
    res = lowrank_operator(op, rank, tol=tol, max_rank=max_rank, sampler=sampler,
                           oversample=oversample, n_iter=n_iter, shared=shared, rng=rng,
                           return_info=return_info)
    A, B = _scaled_step(res[0], res[1], lr, xp)
    try:
        U_new = retract_validated(U, A, B, method, check_finite_U=check_finite, out=out, xp=xp)
    except ValueError as exc:
        # The factors are finite (checked above), so an overflow of the core comes
        # from the size of lr·G: report it in the caller's terms, not as A @ B^H.
        if not str(exc).startswith(_CORE_OVERFLOW):
            raise
        raise _too_large(res[0], lr, xp) from exc
    return (U_new, res) if return_info else U_new


def _scaled_fast_step(A: Any, B: Any, lr: float, U: Any) -> tuple[Any, Any]:
    """``(−lr·A, B)`` of a square step from ``_engines.fast.sketch``; `ValueError` on overflow."""
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = A * (-lr)
    if not bool((scaled.isfinite() if hasattr(scaled, "isfinite") else np.isfinite(
            scaled)).all()):
        raise _too_large(A, lr, get_namespace(("U", U)))
    return scaled, B


#: Start of the message of :func:`unitary_lowrank.retract` when its core overflows.
_CORE_OVERFLOW = "the step A @ B^H is too large"


def _scaled_step(A: Any, B: Any, lr: float, xp: Any) -> tuple[Any, Any]:
    """``(−lr·A, B)`` or ``(A, −lr·B)``, whichever factor has fewer rows.

    A `ValueError` naming `lr` and `G` when the scaled factor overflows (O(nk)).
    """
    scale_b = B.shape[-2] < A.shape[-2]
    if not isinstance(lr, float):  # a traced 0-d array: keep the factors' dtype
        lr = xp.astype(lr, real_dtype(xp, A.dtype))
    with no_fp_warnings(xp):
        scaled = (B if scale_b else A) * (-lr)
    if not is_lazy_array(scaled) and not bool(xp.all(xp.isfinite(scaled))):
        raise _too_large(A, lr, xp)
    return (A, scaled) if scale_b else (scaled, B)


def _too_large(A: Any, lr: float, xp: Any) -> ValueError:
    """The error for a step ``−lr·G`` too large for the dtype, with the size of G.

    `A` is the unscaled left factor of the sketch of G (its right factor has
    orthonormal columns), so ``‖A‖_F`` is the Frobenius norm of the rank-k part
    of G; it is computed in double precision, only on this error path.
    """
    with no_fp_warnings(xp):  # the norm of a huge G overflows: say inf, without a warning
        norm = xp.linalg.vector_norm(xp.astype(A, core_dtype(xp, A.dtype)), axis=(-2, -1))
        g = float(xp.max(norm)) if math.prod(norm.shape) else 0.0
    return ValueError(
        f"the step -lr*G is too large for {dtype_name(xp, A.dtype)}: lr = {lr!r} times G "
        f"(Frobenius norm {g:.3g} at rank {A.shape[-1]}) overflows; lower lr or scale G down"
    )


def _describe(G: Any) -> str:
    if isinstance(G, tuple | list) and len(G) == 2:
        return f"X {tuple(G[0].shape)} and Y {tuple(G[1].shape)}"
    return f"G {tuple(G.shape)}"


def _full_rank_step(U, G, lr, method, tol, max_rank, return_info, check_finite_U, out, xp):
    """:func:`step` with ``rank="full"``: the dense retraction of ``−lr·G``."""
    for name, value in (("tol", tol), ("max_rank", max_rank)):
        if value is not None:
            raise ValueError(f"{name} does not apply to rank='full' (the step is not sketched)")
    if return_info:
        raise ValueError("return_info does not apply to rank='full' (the step is not sketched)")
    get_namespace(("U", U))  # TypeError unless U is an array
    if isinstance(G, tuple | list):
        if len(G) != 2:
            raise ValueError(f"G must be an array or a pair (X, Y), got {len(G)} items")
        xp = get_namespace(("U", U), ("X", G[0]), ("Y", G[1]), xp=xp)
        check_matrix(G[0], "X", xp, "(..., n, r)")
        check_matrix(G[1], "Y", xp, "(..., p, r)")
        with no_fp_warnings(xp):
            G = G[0] @ herm(G[1], xp)
    else:
        xp = get_namespace(("U", U), ("G", G), xp=xp)
        check_matrix(G, "G", xp, "(..., n, p)")
    check_matrix(U, "U", xp, "(..., n, p)")
    n, p = tuple(U.shape[-2:])
    if tuple(G.shape[-2:]) != (n, p):
        raise ValueError(f"G must be an (..., n, p) gradient matching U's last two axes "
                         f"{(n, p)}, got {tuple(G.shape[-2:])}")
    if n != p and needs_square(method):
        raise ValueError(f"step(method={method!r}) needs a square U, got {(n, p)}; use "
                         "method='polar' for a non-square (Stiefel) U")
    check_same_device([("U", U), ("G", G)])
    if check_finite_U:
        check_finite(U, "U", xp)
    check_finite(G, "G", xp)
    if not isinstance(lr, float):  # a traced 0-d array: keep G's dtype
        lr = xp.astype(lr, real_dtype(xp, G.dtype))
    with no_fp_warnings(xp):
        S = G * (-lr)
    if not is_lazy_array(S) and not bool(xp.all(xp.isfinite(S))):
        raise _too_large(G, lr, xp)
    with no_fp_warnings(xp):  # a step that overflows in UᴴS: checked below, reported as such
        result = full_retraction(U, S, method, xp)
    if not is_lazy_array(result) and not bool(xp.all(xp.isfinite(result))):
        check_finite(U, "U", xp)
        raise _too_large(G, lr, xp)
    if out is None:
        return result
    check_out(out, xp, tuple(result.shape), result.dtype, ("U", U))
    out[...] = result
    return out
