r"""Low-rank factors of a gradient, dense or factored: randomized range finder and samplers.

projUNN's updates take the step as rank-k factors ``A @ Bᴴ``. The routines here
produce them from a dense gradient ``G`` or from the gradient's own factors
``(X, Y)`` (``G = X @ Yᴴ``, the sum of outer products over batch and time that
a linear or recurrent layer produces), without ever forming the product.

The public wrappers own validation, sampling on the host and the rank search
of ``tol=``; the arithmetic lives in :mod:`unitary_lowrank._agnostic._sketch`.
"""

from __future__ import annotations

import math
import numbers
from types import ModuleType
from typing import Any, Literal, NamedTuple, overload

from ._agnostic import _sketch
from ._array_api import (
    broadcast_batch,
    core_dtype,
    device_of,
    dtype_name,
    get_namespace,
    in_one_task,
    is_lazy_array,
    no_fp_warnings,
    real_dtype,
    whole_matrices,
)
from ._random import draws
from ._validation import as_int, check_matrix, check_same_device
from .methods import SAMPLERS
from .typing import Array, Namespace, Sampler, Seed

__all__ = ["SAMPLERS", "LowRank", "lowrank", "range_finder"]



class LowRank(NamedTuple):
    """Result of ``lowrank(..., return_info=True)``.

    Attributes
    ----------
    A : array, shape (..., m, rank)
        Left factor.
    B : array, shape (..., n, rank)
        Right factor (orthonormal columns, or zero columns past the rank of
        a factored G).
    rank : int
        The rank of the factors (chosen by ``tol=``, or the one asked for).
    error : array, shape (...)
        Relative Frobenius error ``‖G − A Bᴴ‖_F / ‖G‖_F`` of each matrix of the
        batch (0 for ``G = 0``), a real array of G's precision in G's namespace
        and on its device. It is the error of the returned factors (not a
        probabilistic bound), accurate to rounding relative to ``‖G‖``; see
        the Notes of :func:`lowrank`.
    """

    A: Any
    B: Any
    rank: int
    error: Any


class _Operator(NamedTuple):
    """A validated dense or factored G."""

    G: Any  # array, or tuple (X, Y)
    xp: ModuleType
    batch: tuple[int, ...]
    m: int
    n: int
    r: int | None  # inner size of a factored G, None when dense
    dtype: Any
    device: Any
    scale: Any  # (..., 1, 1) powers of two: the input is scale · G (_finite_and_scaled)


#: Entries beyond 2^±400 (about 1e±120) could overflow or underflow squared norms in
#: double precision; in single precision (float32, complex64: 2^±126 at most) beyond
#: 2^±40 (about 1e±12), whose squares times n² stay within its range.
_SAFE_EXPONENT = 400.0
_SAFE_EXPONENT_SINGLE = 40.0


def _finite_and_scaled(x: Any, name: str, xp: ModuleType) -> tuple[Any, Any]:
    """Check `x` for NaN/inf and bring it into the safe range: ``(x / s, s)``.

    One pass computes ``max |x|`` per matrix, which is finite exactly when `x` is.
    Matrices whose largest entry lies outside ``[2^-400, 2^400]`` (``[2^-40, 2^40]``
    in single precision) are divided by the power of two nearest to it (exact; at
    most 2^1023, or 2^127, itself finite), so that the products and squared norms
    of the samplers and error estimates can neither overflow (entries ~1e155 and
    up in double precision, ~1e19 in single) nor underflow; ordinary gradients are
    left alone, without a copy.
    """
    shape = (*x.shape[:-2], 1, 1)
    if 0 in tuple(x.shape):  # nothing to check or scale (empty batch, or r = 0)
        return x, xp.ones(shape, dtype=real_dtype(xp, x.dtype), device=device_of(x))
    axes = (-2, -1)
    if xp.isdtype(x.dtype, "real floating"):
        # max |x| as max(max x, −min x): two reading passes and no m×r |x|
        # temporary to write; max and min propagate NaN as abs does
        m = xp.maximum(xp.max(x, axis=axes, keepdims=True),
                       -xp.min(x, axis=axes, keepdims=True))
    else:
        m = xp.max(xp.abs(x), axis=axes, keepdims=True)
    lazy = is_lazy_array(x) or is_lazy_array(m)  # m is traced under jit even for a constant x
    if not lazy and not bool(xp.all(xp.isfinite(m))):
        raise ValueError(f"{name} contains NaN or infinity")
    one = xp.ones_like(m)
    single = real_dtype(xp, x.dtype) == xp.float32
    safe, top = (_SAFE_EXPONENT_SINGLE, 127.0) if single else (_SAFE_EXPONENT, 1023.0)
    e = xp.log2(xp.where(m > 0, m, one))
    r = xp.round(e)
    r = xp.where(r > top, one * top, r)  # 2^round(e) of the largest values would overflow
    s = xp.where(xp.abs(e) > safe, 2.0 ** r, one)
    if lazy or bool(xp.any(s != 1)):
        x = x / s
    return x, s


def as_operator(G: Any, xp: ModuleType | None, name: str = "G") -> _Operator:
    """Validate G (array or pair (X, Y)) and cast a pair to its common dtype.

    The input of :func:`lowrank_operator`; :func:`unitary_lowrank.step` validates
    its gradient with it too.
    """
    if isinstance(G, tuple | list):
        if len(G) != 2:
            raise ValueError(
                f"{name} given as a sequence must be a pair (X, Y) standing for X @ Yᴴ, "
                f"got {len(G)} items"
            )
        X, Y = G
        nx, ny = f"{name}[0] (X)", f"{name}[1] (Y)"
        xp = get_namespace((nx, X), (ny, Y), xp=xp)
        check_matrix(X, nx, xp, "(..., m, r)")
        check_matrix(Y, ny, xp, "(..., n, r)")
        if X.shape[-1] != Y.shape[-1]:
            raise ValueError(
                f"the factors of {name} = X @ Yᴴ must have the same number of columns r, "
                f"got X {tuple(X.shape)} and Y {tuple(Y.shape)}"
            )
        try:
            batch = broadcast_batch(tuple(X.shape[:-2]), tuple(Y.shape[:-2]))
        except ValueError:
            raise ValueError(
                f"the batch axes of the factors of {name}, X {tuple(X.shape)} and "
                f"Y {tuple(Y.shape)}, do not broadcast"
            ) from None
        check_same_device([(nx, X), (ny, Y)])
        dtype = xp.result_type(X.dtype, Y.dtype)
        X, Y = (v if v.dtype == dtype else xp.astype(v, dtype) for v in (X, Y))
        # Dask: the thin factors (O((m + n) r) numbers) in one chunk per matrix, so that
        # their checks and products are single tasks, not trees over U's row chunks
        X, Y = whole_matrices(X), whole_matrices(Y)
        X, sx = _finite_and_scaled(X, nx, xp)
        Y, sy = _finite_and_scaled(Y, ny, xp)
        return _Operator(
            (X, Y), xp, batch, X.shape[-2], Y.shape[-2], X.shape[-1], dtype, device_of(X),
            sx * sy,
        )
    xp = get_namespace((name, G), xp=xp)
    check_matrix(G, name, xp, "(..., m, n)")
    G, sg = _finite_and_scaled(G, name, xp)
    return _Operator(
        G, xp, tuple(G.shape[:-2]), G.shape[-2], G.shape[-1], None, G.dtype, device_of(G), sg,
    )


#: Alias of :func:`as_operator` for ``training.py``, which imports it under this name.
_operator = as_operator


def _check_sampler(sampler: Any) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be 'randomized', 'lsi' or 'column', got {sampler!r}")


def _gaussian(op: _Operator, gen, rows: int, cols: int, shared: bool) -> Any:
    shape = (rows, cols) if shared else (*op.batch, rows, cols)
    return gen.gaussian(op, shape)


def _basis(op: _Operator, sampler: str, size: int, n_iter: int, shared: bool, gen) -> Any:
    """Orthonormal basis of the sketch of `sampler`.

    Of shape (..., m, size) for "randomized"; for "column", (..., m, min(m, size))
    with zero columns where the drawn columns of G span fewer dimensions (repeats).
    """
    xp = op.xp
    if sampler == "column":
        u = gen.uniform(op, (*op.batch, size))
        S = _sketch.column_selection(op.G, u, xp)
        return _sketch.orth_span(_sketch.apply(op.G, S, xp), xp)
    Omega = _gaussian(op, gen, op.n, size, shared)
    return _sketch.range_basis(op.G, Omega, n_iter, xp)


def range_finder(G: Array | tuple[Array, Array], size: int, *, n_iter: int = 2,
                 shared: bool = False, rng: Seed = None, xp: Namespace | None = None) -> Array:
    r"""Orthonormal basis of the approximate range of G (randomized range finder).

    Returns Q with orthonormal columns such that ``Q Qᴴ G ≈ G``, by
    Halko–Martinsson–Tropp's Algorithm 4.4: a Gaussian test matrix Ω (complex
    Gaussian for complex G), ``Q = orth(G Ω)`` and `n_iter` rounds of
    QR-stabilised power iteration ``Q ← orth(G orth(Gᴴ Q))``.

    Parameters
    ----------
    G : array, shape (..., m, n), or pair (X, Y)
        The matrix, dense, or as factors ``X`` (..., m, r) and ``Y`` (..., n, r)
        standing for ``X @ Yᴴ`` (the product is never formed: the cost is
        O((m + n)·r·size) instead of O(mn·size)). Leading axes are batch axes.
    size : int
        Number of columns of Q, ``1 <= size <= min(m, n)``.
    n_iter : int, default: 2
        Number of power iterations (each costs two more passes over G).
    shared : bool, default: False
        Use one test matrix for the whole batch instead of one per matrix.
    rng : None, int, numpy.random.Generator, JAX PRNG key or torch.Generator, optional
        Randomness. From a seed or NumPy generator the test matrix is drawn on
        the host in double precision, cast there and moved once to G's device,
        so a seed gives the same range on every backend. For JAX arrays a JAX
        key (``jax.random.key`` or ``jax.random.PRNGKey``) draws it with
        ``jax.random`` in G's dtype (traceable: under ``jax.jit`` a key passed
        as an argument gives fresh numbers, where a seed is a constant); for
        torch tensors a ``torch.Generator`` draws it with torch on the
        generator's device (moved to G's if another). A key or generator of
        another library than G's is a `TypeError`.
    xp : array namespace, optional
        Namespace of G; inferred by default.

    Returns
    -------
    array, shape (..., m, size)
        Q with orthonormal columns, in the namespace, on the device and in the
        dtype of G. When ``rank(G) <= size`` its span contains the range of G
        (up to rounding).

    Raises
    ------
    TypeError
        If G (or a factor) is not a floating array (or is a masked array, a
        ``numpy.matrix`` or a torch ``meta`` tensor), the factors come from
        different libraries, `size`/`n_iter` is not an integer, `rng` is not a
        seed or generator (or is a JAX key or torch generator for another
        library's G), or `xp` is not an array namespace (or not that of G).
    ValueError
        If `size` is out of range, the factors' shapes do not fit, or G holds
        NaN or infinity.

    See Also
    --------
    lowrank : Rank-k factors built on this basis.

    References
    ----------
    .. [1] N. Halko, P.-G. Martinsson, J. A. Tropp, "Finding structure with
       randomness", SIAM Review 53(2), 2011.

    Examples
    --------
    >>> import numpy as np
    >>> import unitary_lowrank as ul
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((30, 3)) + 1j * rng.standard_normal((30, 3))
    >>> Y = rng.standard_normal((20, 3)) + 1j * rng.standard_normal((20, 3))
    >>> G = X @ Y.conj().T
    >>> Q = ul.range_finder(G, 3, rng=0)
    >>> Q.shape
    (30, 3)
    >>> bool(np.allclose(Q @ (Q.conj().T @ G), G))
    True
    >>> Qf = ul.range_finder((X, Y), 3, rng=0)  # the same from the factors
    >>> bool(np.allclose(Qf @ Qf.conj().T, Q @ Q.conj().T))
    True
    """
    op = as_operator(G, xp)
    size = as_int(size, "size", 1, min(op.m, op.n), f" = min(m, n) for G of size {op.m}×{op.n}")
    n_iter = as_int(n_iter, "n_iter", 0)
    gen = draws(rng, op.xp, "G is")
    if 0 in op.batch:
        return op.xp.zeros((*op.batch, op.m, size), dtype=op.dtype, device=op.device)
    return _basis(op, "randomized", size, n_iter, bool(shared), gen)


def _factors_at(op: _Operator, k: int, sampler: str, oversample: int, n_iter: int,
                shared: bool, gen, residual: bool) -> tuple[Any, Any, Any, Any]:
    """``(left, s, right, res)`` of the sketch for a target rank k (not LSI); see project_svd."""
    xp = op.xp
    # Column sampling draws k + oversample columns with replacement, even past n.
    size = k + oversample if sampler == "column" else min(k + oversample, op.m, op.n)
    r = op.r
    if r is not None and (r <= k or (sampler == "randomized" and r <= size)):
        # The factors already are the answer: exact SVD in O((m + n) r²). For Dask
        # factors in one task (two QRs of n×r blocks and an r×r SVD), not as dozens
        # of tiny tasks in a row.
        q = min(op.m, op.n, r)
        sdt = real_dtype(xp, core_dtype(xp, op.dtype))
        return in_one_task(_sketch.exact_factored_svd,
                           [((*op.batch, op.m, q), op.dtype), ((*op.batch, q), sdt),
                            ((*op.batch, op.n, q), op.dtype), (op.batch, sdt)],
                           *op.G, xp=xp)
    Q = _basis(op, sampler, size, n_iter, shared, gen)
    return _sketch.project_svd(op.G, Q, residual, xp)


def _error_at(op: _Operator, errs: Any, k: int) -> Any:
    """Relative error of the rank-k truncation from the table `errs`, in G's real precision."""
    kk = min(k, errs.shape[-1])  # past the available triplets the error no longer changes
    return op.xp.astype(errs[..., kk - 1], real_dtype(op.xp, op.dtype))


@overload
def lowrank(G: Array | tuple[Array, Array], rank: int | None = None, *, tol: float | None = None,
            max_rank: int | None = None, sampler: Sampler = "randomized", oversample: int = 10,
            n_iter: int = 2, shared: bool = False, rng: Seed = None,
            return_info: Literal[False] = False,
            xp: Namespace | None = None) -> tuple[Array, Array]: ...


@overload
def lowrank(G: Array | tuple[Array, Array], rank: int | None = None, *, tol: float | None = None,
            max_rank: int | None = None, sampler: Sampler = "randomized", oversample: int = 10,
            n_iter: int = 2, shared: bool = False, rng: Seed = None,
            return_info: Literal[True], xp: Namespace | None = None) -> LowRank: ...


def lowrank(G: Array | tuple[Array, Array], rank: int | None = None, *, tol: float | None = None,
            max_rank: int | None = None, sampler: Sampler = "randomized", oversample: int = 10,
            n_iter: int = 2, shared: bool = False, rng: Seed = None,
            return_info: bool = False,
            xp: Namespace | None = None) -> tuple[Array, Array] | LowRank:
    r"""Rank-`rank` factors ``A @ Bᴴ ≈ G`` of a dense or factored matrix.

    With the default sampler, a randomized range finder (:func:`range_finder`
    with ``rank + oversample`` columns and `n_iter` power iterations) followed
    by the truncated SVD of the small projected matrix ``Qᴴ G``: ``A = Q W_k Σ_k``,
    ``B = V_k``. ``A @ Bᴴ`` is then close to the best rank-`rank` approximation
    (truncated SVD) of G, and exact when ``rank(G) <= rank``.

    Parameters
    ----------
    G : array, shape (..., m, n), or pair (X, Y)
        The matrix, dense, or as factors ``X`` (..., m, r) and ``Y`` (..., n, r)
        of ``G = X @ Yᴴ``. The product is never formed (cost O((m + n)·r·rank)
        instead of O(mn·rank)); when ``r <= rank`` (or ``r <= rank + oversample``
        for the randomized sampler) the factors give the exact truncated SVD at
        O((m + n) r²). Leading axes are batch axes.
    rank : int, optional
        Rank of the factors, ``1 <= rank <= min(m, n)``. Required unless `tol`
        is given; with `tol` it is the smallest rank considered (default 1).
    tol : float, optional
        Instead of a fixed rank: the smallest rank ``>= rank`` (and
        ``<= max_rank``) whose relative Frobenius error
        ``‖G − A Bᴴ‖_F / ‖G‖_F`` is at most `tol` for every matrix of the batch
        (one rank for the whole batch, so the factors stack). The sketch is
        regrown (doubling) until the tolerance is met or `max_rank` is reached;
        in the latter case the factors of rank `max_rank` are returned and
        ``info.error`` shows the tolerance was missed. Not available for
        ``sampler="lsi"``. The error is accurate to rounding (about
        ``n·eps``), so a tol near eps finds the numerical rank. The rank search
        reads a few scalars back from the device (it cannot run under a jit).
    max_rank : int, optional
        Largest rank considered by `tol`; default ``min(m, n)``.
    sampler : {"randomized", "lsi", "column"}, default: "randomized"
        ``"randomized"``: Gaussian sketch of ``rank + oversample`` columns with
        `n_iter` power iterations. ``"lsi"`` (the paper's): sketch size exactly
        `rank`, no oversampling or power iteration: ``V = orth(Gᴴ Ω)``,
        ``A = G V``, ``B = V``. ``"column"``: ``rank + oversample`` columns of G
        drawn (with replacement) with probability proportional to their squared
        norms (Drineas–Kannan–Mahoney); G is projected onto their span (only
        onto it: a rank-revealing SVD of the drawn columns drops repeats) and
        truncated to its `rank` *largest* directions.
    oversample : int, default: 10
        Extra sketch columns for ``"randomized"`` and ``"column"``.
    n_iter : int, default: 2
        Power iterations of ``"randomized"``.
    shared : bool, default: False
        One Gaussian test matrix for the whole batch (``"randomized"``,
        ``"lsi"``), as the paper does across the frequencies of a convolution.
    rng : None, int, numpy.random.Generator, JAX PRNG key or torch.Generator, optional
        Randomness. A seed or NumPy generator draws on the host in double
        precision, moved once to G's device: a seed gives the same factors on
        every backend. A JAX key draws with ``jax.random`` for JAX arrays (also
        under ``jax.jit``), a ``torch.Generator`` with torch for torch tensors,
        as in :func:`range_finder`.
    return_info : bool, default: False
        Return a :class:`LowRank` ``(A, B, rank, error)`` instead of ``(A, B)``.
    xp : array namespace, optional
        Namespace of G; inferred by default.

    Returns
    -------
    A : array, shape (..., m, rank)
        Left factor, in the namespace, on the device and in the dtype of G.
    B : array, shape (..., n, rank)
        Right factor with orthonormal columns (zero columns past the rank of a
        factored G with ``r < rank``).
    info : LowRank
        Only with ``return_info=True``, in place of ``(A, B)``: the factors,
        the rank and the relative error per matrix.

    Raises
    ------
    TypeError
        If G (or a factor) is not a floating array (or is a masked array, a
        ``numpy.matrix`` or a torch ``meta`` tensor), the factors come from
        different libraries, a count is not an integer, `rng` is not a seed or
        generator (or is a JAX key or torch generator for another library's
        G), or `xp` is not an array namespace (or not that of G).
    ValueError
        If `rank` is out of range (``< 1`` or ``> min(m, n)``), neither or an
        invalid `tol` is given, the sampler is unknown, the factors' shapes do
        not fit, G holds NaN or infinity, or the factor A overflows the dtype
        (G's largest singular values beyond its range, e.g. entries near its
        largest finite value).

    See Also
    --------
    range_finder : The orthonormal basis alone.
    unitary_lowrank.step : A training step built on these factors.

    Notes
    -----
    Every sampler returns an orthogonal projection of G: ``A Bᴴ = P G`` with
    P the projector onto the top `rank` left directions of ``Q Qᴴ G`` (or, for
    LSI, ``A Bᴴ = G V Vᴴ``). Its error is then exactly
    ``‖G − A Bᴴ‖_F² = ‖(I − QQᴴ) G‖_F² + Σ_{i>rank} σ_i²`` with the singular
    values σ of ``Qᴴ G``, and ``‖G‖_F² = ‖(I − QQᴴ) G‖_F² + Σ σ_i²``: sums of
    non-negative terms, free of cancellation, so the reported error is
    accurate to rounding even when it is tiny. The residual costs one more
    pass over G (O(mn·size) dense, O((m + n) r²) factored) and is only
    formed for `tol` or `return_info`. The small SVD runs in double
    precision for every dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import unitary_lowrank as ul
    >>> rng = np.random.default_rng(0)
    >>> G = rng.standard_normal((40, 30)) * 0.5 ** np.arange(30)  # decaying spectrum
    >>> A, B = ul.lowrank(G, 4, rng=0)
    >>> A.shape, B.shape
    ((40, 4), (30, 4))
    >>> s = np.linalg.svd(G, compute_uv=False)
    >>> best = np.sqrt(np.sum(s[4:] ** 2))
    >>> bool(np.linalg.norm(G - A @ B.T) < 1.01 * best)
    True

    Factored input and the ``tol=`` mode, with its error estimate:

    >>> X = rng.standard_normal((500, 3)); Y = rng.standard_normal((400, 3))
    >>> info = ul.lowrank((X, Y), tol=1e-6, return_info=True)
    >>> info.rank, bool(info.error < 1e-6)
    (3, True)

    For JAX arrays under ``jax.jit``, pass a JAX key as an argument of the
    jitted function, e.g. ``jax.jit(lambda G, key: ul.lowrank(G, 2,
    sampler="lsi", rng=key))``: each key draws a new sketch, where a seed would
    be a constant of the compiled function.
    """
    return lowrank_operator(as_operator(G, xp), rank, tol=tol, max_rank=max_rank,
                            sampler=sampler, oversample=oversample, n_iter=n_iter,
                            shared=shared, rng=rng, return_info=return_info)


def lowrank_operator(op, rank, *, tol, max_rank, sampler, oversample, n_iter, shared, rng,
                     return_info):
    """:func:`lowrank` of an already validated operator (used by ``training.step``)."""
    _check_sampler(sampler)
    limit = min(op.m, op.n)
    what = f" = min(m, n) for G of size {op.m}×{op.n}"
    oversample = as_int(oversample, "oversample", 0)
    n_iter = as_int(n_iter, "n_iter", 0)
    shared = bool(shared)
    gen = draws(rng, op.xp, "G is")
    if tol is None:
        if rank is None:
            raise ValueError("lowrank needs a rank (an integer >= 1) or a tol=, got neither")
        if max_rank is not None:
            raise ValueError("max_rank only applies with tol=; pass rank alone for a fixed rank")
        k = as_int(rank, "rank", 1, limit, what)
        return _fixed(op, k, sampler, oversample, n_iter, shared, gen, return_info)
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not 0 < tol < math.inf:
        raise ValueError(f"tol must be a positive finite number, got {tol!r}")
    if sampler == "lsi":
        raise ValueError("tol= needs sampler='randomized' or 'column' (LSI has no error ordering)")
    kmin = 1 if rank is None else as_int(rank, "rank", 1, limit, what)
    kmax = limit if max_rank is None else as_int(max_rank, "max_rank", kmin, limit, what)
    return _adaptive(op, float(tol), kmin, kmax, sampler, oversample, n_iter, shared, gen,
                     return_info)


def _fixed(op, k, sampler, oversample, n_iter, shared, gen, return_info):
    xp = op.xp
    if 0 in op.batch or op.r == 0:  # empty batch, or G = X Yᴴ with r = 0, i.e. G = 0
        A = xp.zeros((*op.batch, op.m, k), dtype=op.dtype, device=op.device)
        B = xp.zeros((*op.batch, op.n, k), dtype=op.dtype, device=op.device)
        err = xp.zeros(op.batch, dtype=real_dtype(xp, op.dtype), device=op.device)
        return LowRank(A, B, k, err) if return_info else (A, B)
    if sampler == "lsi" and not (op.r is not None and op.r <= k):
        Omega = _gaussian(op, gen, op.m, k, shared)
        A, B = _sketch.lsi_factors(op.G, Omega, xp)
        if not return_info:
            return _rescaled(A, op), B
        s, res = _sketch.lsi_spectrum(op.G, A, B, xp)
        return LowRank(_rescaled(A, op), B, k,
                       _error_at(op, _sketch.relative_errors(s, res, xp), 1))
    left, s, right, res = _factors_at(op, k, sampler, oversample, n_iter, shared, gen,
                                      return_info)
    A, B = _sketch.truncate(left, s, right, k, xp)
    A = _rescaled(A, op)
    if not return_info:
        return A, B
    return LowRank(A, B, k, _error_at(op, _sketch.relative_errors(s, res, xp), k))


def _adaptive(op, tol, kmin, kmax, sampler, oversample, n_iter, shared, gen, return_info):
    """Smallest rank in [kmin, kmax] whose relative error is <= tol, by doubling sketches."""
    xp = op.xp
    if 0 in op.batch or op.r == 0:
        return _fixed(op, kmin, sampler, oversample, n_iter, shared, gen, return_info)
    target = kmin
    while True:
        left, s, right, res = _factors_at(op, target, sampler, oversample, n_iter, shared, gen,
                                          True)
        errs = _sketch.relative_errors(s, res, xp)  # (..., L), non-increasing in k
        L = errs.shape[-1]
        top = min(L, kmax)
        # Number of ranks in [1, top] that miss tol, per matrix; the answer is one more.
        # int32: counts up to kmax fit, and JAX without x64 has no int64 (it would warn)
        miss = xp.sum(xp.astype(errs[..., :top] > tol, xp.int32), axis=-1)
        need = max(int(xp.max(miss)) + 1, kmin)
        if need <= top:
            k = need
            break
        if top >= kmax or L >= min(op.m, op.n) or (op.r is not None and op.r <= L):
            k = max(kmin, top)  # no rank meets tol: the largest one that adds anything
            break
        target = min(2 * max(target, top), kmax)
    A, B = _sketch.truncate(left, s, right, k, xp)
    A = _rescaled(A, op)
    if not return_info:
        return A, B
    return LowRank(A, B, k, _error_at(op, errs, k))


def _rescaled(A: Any, op: _Operator) -> Any:
    """``A · scale``: the left factor of the scaled G back at G's size.

    `ValueError` when it overflows (σ₁ of G beyond the dtype's range: a finite G
    with entries near its largest value), instead of factors holding infinity
    and NumPy's overflow warning.
    """
    xp = op.xp
    with no_fp_warnings(xp):
        A = A * op.scale
    if not is_lazy_array(A) and not bool(xp.all(xp.isfinite(A))):
        raise ValueError(
            f"G is too large for {dtype_name(xp, op.dtype)}: the factor A of its rank-"
            f"{A.shape[-1]} approximation (of norm σ₁(G)) overflows; scale G down"
        )
    return A
