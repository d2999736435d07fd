r"""Low-rank retractions of a step ``A @ Bᴴ`` onto the unitary group: projUNN-D and -T.

The public wrappers own validation and dispatch; the arithmetic lives in
:mod:`unitary_lowrank._agnostic._updates` and, for square NumPy inputs, in the
two-pass engines of :mod:`unitary_lowrank._engines`.
"""

from __future__ import annotations

import functools
import re
import textwrap
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from . import _autodiff, _engines
from ._agnostic import _updates
from ._array_api import (
    adjoint_product,
    align_factors,
    basis_update,
    get_namespace,
    in_one_task,
    is_dask_array,
    is_lazy_array,
    no_fp_warnings,
    real_dtype,
)
from ._engines import chunked, fast
from ._validation import (
    Step,
    check_finite,
    check_method,
    check_out,
    validate_checked_step,
    validate_step,
)
from .methods import needs_square
from .typing import Array, Engine, Method, Namespace

__all__ = ["project", "retract", "transport"]

#: The values of the ``engine`` argument (:data:`unitary_lowrank._engines.ENGINES`).
ENGINES = _engines.ENGINES


def _check_core_input(U: Any, xp: ModuleType, *small: Any) -> None:
    """Raise a clear error when the small intermediates are not finite.

    A and B are known to be finite here, so either U holds NaN or infinity (which
    ``Uᴴ A`` usually propagates into the core) or the step overflowed. Only in that
    error path is U itself scanned, to tell which.
    """
    if any(is_lazy_array(x) for x in small):
        return
    if all(bool(xp.all(xp.isfinite(x))) for x in small):
        return
    check_finite(U, "U", xp)
    raise ValueError("the step A @ B^H is too large: its core overflowed (scale the step down)")


def _check_unitary_along_step(UQ: Any, xp: ModuleType, u_dtype: Any) -> None:
    """`ValueError` when U is far from unitary on the step's subspace (O(nk²), not O(n³)).

    The updates assume ``UᴴU = I`` (the polar one amplifies an error along the step);
    ``‖(UQ)ᴴ(UQ) − I‖₂`` measures it where the step acts. The bound √eps lets the
    slow drift of long runs through (float32: 1e-5 after 10⁵ steps) and stops a U
    that is not unitary at all (zeros, a scaled unitary, a random matrix). eps is
    that of U's own dtype, so float32 weights with a float64 step pass.
    """
    if is_lazy_array(UQ):
        return
    err = _updates.gram_error(UQ, xp)
    tol = float(xp.finfo(real_dtype(xp, u_dtype)).eps) ** 0.5
    if bool(xp.all(err <= tol)):  # a comparison: no scalar conversion of a tensor with grad
        return
    worst = float(xp.max(xp.where(xp.isnan(err), xp.full_like(err, float("inf")), err)))
    raise ValueError(
        f"U is not unitary (orthonormal columns) along the step: ‖(UQ)ᴴ(UQ) − I‖₂ = "
        f"{worst:.2e} exceeds sqrt(eps) = {tol:.1e}; repair it first with "
        "reunitarize(U), or pass check_unitary=False"
    )


def _run(U, A, B, method, *, square, check_finite_U, check_unitary, out, engine, xp, func):
    """`project`, `transport` and `retract` after their own checks.

    Validates the caller's arrays, then updates. Small square NumPy and CPU torch
    inputs under ``engine="auto"`` take the one-call kernel first (``_engines.fast.update``).
    """
    if isinstance(engine, str) and engine == "auto" and fast.takes_namespace(xp, U):
        result = fast.update(U, A, B, method, check_finite_U, check_unitary, out)
        if result is not None:
            return result
    xp = get_namespace(("U", U), ("A", A), ("B", B), xp=xp)
    step = validate_step(U, A, B, xp, square=square, check_finite_U=check_finite_U, func=func)
    return _update(U, step, method, check_unitary=check_unitary, out=out, engine=engine, xp=xp)


def retract_validated(U, A, B, method, *, check_finite_U, out, xp):
    """``retract(U, A, B, method, check_finite=check_finite_U, out=out)`` without repeated checks.

    Internal (not in ``__all__``), for ``training.step``: `method` is already
    checked, U passed ``check_matrix``, and A, B are factors that the library
    computed in the namespace `xp` (None: U's, inferred only if the one-call
    kernel does not take the update).
    """
    result = fast.update(U, A, B, method, check_finite_U, True, out)
    if result is not None:
        return result
    if xp is None:  # the fast path of ``step`` resolves the namespace only when needed
        xp = get_namespace(("U", U))
    step = validate_checked_step(U, A, B, xp, square=needs_square(method),
                                 check_finite_U=check_finite_U,
                                 func=f"retract(method={method!r})")
    return _update(U, step, method, check_unitary=True, out=out, engine="auto", xp=xp)


def _update(U_given, step: Step, method, *, check_unitary, out, engine, xp):
    """The update of validated arrays, into `out` if given.

    `U_given` is U as the caller passed it: `out` must be on its device, and its
    dtype sets the tolerance of the unitarity check (``unitarity_dtype`` below,
    None when the check is off).
    """
    U, A, B, batch = step
    A, B = align_factors(U, A, B)  # Dask: the factors in U's chunks, so the result keeps them
    shape = (*batch, *U.shape[-2:])
    check_out(out, xp, shape, U.dtype, ("U", U_given))
    if A.shape[-1] == 0 or 0 in shape:  # empty step or empty batch: nothing moves
        return _deliver(xp.asarray(xp.broadcast_to(U, shape), copy=True), out)
    engine_module = _engines.select(engine, xp, tuple(U.shape), A.shape[-1])
    unitarity_dtype = U_given.dtype if check_unitary else None
    with no_fp_warnings(xp):
        if engine_module is not None:
            return _two_pass_update(engine_module, U, A, B, batch, method, unitarity_dtype, out, xp)
        result = _portable_update(U, A, B, batch, method, unitarity_dtype, xp)
    return _deliver(result, out)


def _two_pass_update(engine, U, A, B, batch, method, unitarity_dtype, out, xp):
    """The square update by a NumPy engine (:class:`~unitary_lowrank._engines.Engine`)."""
    UhA, UB = engine.adjoint_products(U, A, B, batch)  # one pass over U
    Q, beta, alpha = _updates.step_subspace(UhA, B, batch, xp)
    D = _square_core(U, alpha, beta, method, xp)
    L = engine.basis_from_products(U, A, UB, Q, beta, alpha, batch)
    if unitarity_dtype is not None:
        _check_unitary_along_step(L, xp, unitarity_dtype)
    return engine.write_update(U, L, D, Q, batch, out)  # the second pass


def _portable_update(U, A, B, batch, method, unitarity_dtype, xp):
    """The update by the array-agnostic body: square U, or U with fewer columns (polar)."""
    if U.shape[-2] == U.shape[-1] and is_dask_array(U):
        fused = chunked.update(U, A, B, method)
        if fused is not None:
            return fused
        # the small core in one task, not as dozens of tiny Dask tasks (lazy: no checks);
        # then U + (U Q) K by one task per chunk of rows
        n, k, dt = U.shape[-1], A.shape[-1], U.dtype
        r = min(n, 2 * k)
        Q, K = in_one_task(functools.partial(_updates.square_factors, batch=batch, method=method),
                           [((*batch, n, r), dt), ((*batch, r, n), dt)],
                           adjoint_product(U, A, xp), B, xp=xp)
        return basis_update(U, Q, K, xp)
    if U.shape[-2] == U.shape[-1]:
        return _autodiff.apply(_SquareRule, (U, adjoint_product(U, A, xp), B),
                               (batch, method, unitarity_dtype), xp)
    Ahat, Aperp = _updates.stiefel_projection(U, A, xp)
    eps = float(xp.finfo(real_dtype(xp, U.dtype)).eps)
    return _autodiff.apply(_StiefelRule, (U, Ahat, Aperp, B, A), (batch, unitarity_dtype, eps),
                           xp)


class _SquareRule:
    """The square update ``U + (UQ)(F − I)Qᴴ`` of ``(U, Â = UᴴA, B)`` with its derivatives.

    An :class:`~unitary_lowrank._autodiff.Rule`: torch and JAX differentiate it by
    :func:`~unitary_lowrank._agnostic._updates.square_jvp` / ``square_vjp``, not
    through the QR and eigh/SVD, which have no derivative at degenerate steps.
    ``static = (batch, method, unitarity_dtype)``.
    """

    @staticmethod
    def residuals(arrays, static, xp):
        U, Ahat, B = arrays
        Q, beta, alpha = _updates.step_subspace(Ahat, B, static[0], xp)
        D, spectrum = _updates.core_factors(alpha, beta, static[1], xp)
        return (Q, beta, alpha, D, *spectrum)

    @staticmethod
    def forward(arrays, static, xp):
        U, Ahat, B = arrays
        batch, method, unitarity_dtype = static
        Q, beta, alpha = _updates.step_subspace(Ahat, B, batch, xp)
        _check_core_input(U, xp, alpha)
        D, spectrum = _updates.core_factors(alpha, beta, method, xp)
        _check_core_input(U, xp, D)
        res = (Q, beta, alpha, D, *spectrum)
        if unitarity_dtype is None or is_lazy_array(U):
            # nothing else reads U Q: formed with the update (Dask: in the same pass over U)
            return _updates.add_low_rank(U, None, Q, D, xp), res
        L = _updates.times_basis(U, Q, xp)
        _check_unitary_along_step(L, xp, unitarity_dtype)
        return _updates.add_low_rank(U, L, Q, D, xp), res

    @staticmethod
    def jvp(arrays, res, tangents, static, xp):
        return _updates.square_jvp(*arrays, *tangents, res, static[1], xp)

    @staticmethod
    def vjp(arrays, res, cotangent, static, xp):
        return _updates.square_vjp(*arrays, cotangent, res, static[1], xp)


class _StiefelRule:
    """The polar update of U with fewer columns, of ``(U, Â, A⊥, B, A)``, with its derivatives.

    ``A = UÂ + A⊥`` (:func:`~unitary_lowrank._agnostic._updates.stiefel_projection`);
    A itself only sets the rounding level of A⊥ and gets no derivative here.
    ``static = (batch, unitarity_dtype, eps)``.
    """

    @staticmethod
    def _core(arrays, static, xp):
        U, Ahat, Aperp, B, A = arrays
        batch, _, eps = static
        Q, beta, alpha = _updates.step_subspace(Ahat, B, batch, xp)
        _check_core_input(U, xp, alpha, Aperp)
        Z, D, spectrum = _updates.stiefel_core_factors(A, Aperp, beta, alpha, batch, eps, xp)
        _check_core_input(U, xp, D)
        return Q, Z, D, (Q, beta, alpha, *spectrum)

    @staticmethod
    def residuals(arrays, static, xp):
        return _StiefelRule._core(arrays, static, xp)[3]

    @staticmethod
    def forward(arrays, static, xp):
        U = arrays[0]
        Q, Z, D, res = _StiefelRule._core(arrays, static, xp)
        L = _updates.times_basis(U, Q, xp)
        if static[1] is not None:
            _check_unitary_along_step(L, xp, static[1])
        return _updates.add_low_rank(U, L, Q, D, xp, Z), res

    @staticmethod
    def jvp(arrays, res, tangents, static, xp):
        return _updates.stiefel_jvp(*arrays[:4], *tangents[:4], res, xp)

    @staticmethod
    def vjp(arrays, res, cotangent, static, xp):
        return (*_updates.stiefel_vjp(*arrays[:4], cotangent, res, xp), None)


def _square_core(U, alpha, beta, method, xp):
    """``F − I`` of the square update, with its input α and itself checked finite.

    The core is tiny, so checking it is free; finite U and a finite core give a
    finite result (``|F − I| <= 2``), so NaN never reaches the caller's weights.
    """
    _check_core_input(U, xp, alpha)
    D = _updates.core_minus_identity(alpha, beta, method, xp)
    _check_core_input(U, xp, D)
    return D


def _deliver(result, out):
    """`result`, or `out` with `result` copied into it."""
    if out is None:
        return result
    out[...] = result
    return out


#: The description of the ``engine`` parameter, shared by the docstrings of
#: `project`, `transport` and `retract` (put in place of their line ``{engine}``).
_ENGINE_PARAMETER = """\
engine : {"auto", "blas", "numba", "array_api"}, default: "auto"
    Implementation for square NumPy inputs, which need only two passes over
    `U` and no n×n temporary: ``"blas"`` walks `U` in cache-sized blocks of
    rows with BLAS products, ``"numba"`` uses fused Numba kernels (the
    ``numba`` extra); ``"array_api"`` is the portable path that every other
    library and rectangular `U` take; ``"auto"``, for square NumPy inputs
    of at least 2¹⁸ entries (one 512×512 matrix or a batch of smaller
    ones): ``"numba"`` for k <= 2 when installed, else ``"blas"`` for
    matrices from 512×512 on, else ``"array_api"`` (the fastest on the
    benchmark); and for one square matrix below 512×512 with k = 1 (or
    k <= 4 and n·k <= 512), a NumPy array or a CPU torch tensor without autograd,
    one compiled Numba call for the whole update when numba is installed
    (the same formula, checks and errors; ``benchmarks/README.md``, small
    sizes).
"""


_F = TypeVar("_F", bound=Callable[..., Any])


def _describe_engine(func: _F) -> _F:
    """Put :data:`_ENGINE_PARAMETER` in place of the line ``{engine}`` of `func`'s docstring.

    It is indented like that line (the compiler strips the indentation of
    docstrings from Python 3.13 on).
    """
    if func.__doc__:  # None under python -OO
        func.__doc__ = re.sub(
            r"^( *)\{engine\}\n",
            lambda line: textwrap.indent(_ENGINE_PARAMETER, line.group(1)),
            func.__doc__,
            count=1,
            flags=re.MULTILINE,
        )
    return func


@_describe_engine
def project(U: Array, A: Array, B: Array, /, *, check_finite: bool = False,
            check_unitary: bool = True, out: Array | None = None, engine: Engine = "auto",
            xp: Namespace | None = None) -> Array:
    r"""Nearest matrix with orthonormal columns to ``U + A @ Bᴴ`` (projUNN-D).

    Returns the unitary (orthogonal for real input) polar factor of
    :math:`M = U + A B^H`, the matrix with orthonormal columns nearest to `M`
    in the Frobenius norm, in :math:`O(npk)` operations: no :math:`n \times n`
    SVD, eigendecomposition or solve is ever formed.

    Parameters
    ----------
    U : array, shape (..., n, p)
        Matrix with orthonormal columns, ``p <= n``: unitary (complex) or
        orthogonal (real) when ``p == n``, a point of the Stiefel manifold when
        ``p < n``.
    A : array, shape (..., n, k)
        Left factor of the step.
    B : array, shape (..., p, k)
        Right factor of the step (the step is ``A @ Bᴴ``; for gradient descent
        ``A @ Bᴴ ≈ -lr * G``).
    check_finite : bool, default: False
        Scan `U` for NaN and infinity before any work (a full pass over `U`).
        `A` and `B` are always checked, and so is the small core, through which
        a non-finite `U` usually shows anyway; the switch makes it certain.
    check_unitary : bool, default: True
        Check that `U` is unitary where the step acts, ``‖(UQ)ᴴ(UQ) − I‖₂ <=
        sqrt(eps)`` (O(nk²), with Q the step's orthonormal basis), and raise a
        `ValueError` otherwise, instead of returning a non-unitary result.
    out : array, optional
        Array of the result's shape and dtype to write the result into, e.g.
        ``out=U`` for an in-place update. It is written only after the whole
        result has been computed and found finite.
    {engine}
    xp : array namespace, optional
        Namespace of the inputs; inferred by default.

    Returns
    -------
    array, shape (..., n, p)
        The polar factor, in the namespace, on the device and in the dtype
        (``result_type`` of the inputs) of `U`, `A` and `B`. Leading axes
        broadcast. A NumPy result of 32 MiB or more lies on memory recycled
        from dropped results (:func:`~unitary_lowrank.set_result_pool`).

    Raises
    ------
    TypeError
        If an input is not a floating array, or the inputs come from different
        array libraries.
    ValueError
        If the shapes do not fit together, an input is on another device, `A`
        or `B` (or `U`, see `check_finite`) holds NaN or infinity, or the step
        overflows.

    See Also
    --------
    transport : The geodesic (exponential) update along the same step.
    retract : One entry point for the polar, exponential and Cayley updates.
    polar : Dense polar factor, the reference.

    Notes
    -----
    With ``Â = Uᴴ A`` and a Householder QR ``[B, Â] = Q [β, α]``, the square
    case is ``U + (U Q)(polar(I + αβᴴ) − I) Qᴴ`` with a core of size
    ``r = min(n, 2k)`` computed in double precision even for single-precision
    inputs. The rectangular case adds the part of `A` orthogonal to the range
    of `U` (``docs/theory.md``). When `M` is singular the
    polar factor is not unique; the result is then one of them and still has
    orthonormal columns.

    Examples
    --------
    >>> import numpy as np
    >>> import unitary_lowrank as ul
    >>> rng = np.random.default_rng(0)
    >>> U = ul.random_unitary(50, dtype="complex128", rng=rng)
    >>> A = 0.1 * rng.standard_normal((50, 2)); B = rng.standard_normal((50, 2))
    >>> X = ul.project(U, A, B)
    >>> bool(ul.unitarity_error(X) < 1e-13)
    True
    >>> bool(np.allclose(X, ul.polar(U + A @ B.conj().T)))
    True
    """
    return _run(
        U, A, B, "polar", square=False, check_finite_U=check_finite,
        check_unitary=check_unitary, out=out, engine=engine,
        xp=xp, func="project",
    )


@_describe_engine
def transport(U: Array, A: Array, B: Array, /, *, check_finite: bool = False,
              check_unitary: bool = True, out: Array | None = None, engine: Engine = "auto",
              xp: Namespace | None = None) -> Array:
    r"""Geodesic step ``U @ expm(skew(Uᴴ A Bᴴ))`` of a unitary U (projUNN-T).

    Moves `U` along the geodesic of the unitary group in the direction of the
    tangent projection of the step ``A @ Bᴴ``, with
    ``skew(X) = (X - Xᴴ)/2``, in :math:`O(n^2 k)` operations.

    Parameters
    ----------
    U : array, shape (..., n, n)
        Unitary (complex) or orthogonal (real) matrix.
    A, B : array, shape (..., n, k)
        Factors of the step ``A @ Bᴴ``.
    check_finite : bool, default: False
        Scan `U` for NaN and infinity before any work (a full pass over `U`);
        without it a non-finite `U` is still usually caught in the small core.
    check_unitary : bool, default: True
        Raise a `ValueError` when `U` is not unitary where the step acts
        (``‖(UQ)ᴴ(UQ) − I‖₂ > sqrt(eps)``, an O(n k²) check).
    out : array, optional
        Where to write the result (e.g. ``out=U``), only once it is complete
        and finite.
    {engine}
    xp : array namespace, optional
        Namespace of the inputs; inferred by default.

    Returns
    -------
    array, shape (..., n, n)
        ``U @ expm(skew(Uᴴ A Bᴴ))`` in the namespace, device and dtype of the
        inputs (large NumPy results on recycled memory, as for :func:`project`).

    Raises
    ------
    TypeError
        If an input is not a floating array, or the inputs come from different
        array libraries.
    ValueError
        If `U` is not square, the shapes do not fit together, an input is on
        another device or `A` or `B` holds NaN or infinity.

    See Also
    --------
    project : The polar (nearest unitary) update.
    retract : One entry point for all three updates.

    Notes
    -----
    The exponential of the skew-Hermitian core ``Y = (αβᴴ − βαᴴ)/2`` comes from
    ``eigh(iY)``, in double precision, and ``expm(Y) − I`` is formed from
    ``−2 sin²(λ/2) − i sin λ`` so that tiny steps keep all their digits.

    Examples
    --------
    >>> import numpy as np
    >>> import unitary_lowrank as ul
    >>> from scipy.linalg import expm
    >>> rng = np.random.default_rng(0)
    >>> U = ul.random_unitary(40, dtype="float64", rng=rng)
    >>> A = 0.1 * rng.standard_normal((40, 1)); B = rng.standard_normal((40, 1))
    >>> X = ul.transport(U, A, B)
    >>> S = U.T @ A @ B.T
    >>> bool(np.allclose(X, U @ expm((S - S.T) / 2)))
    True
    """
    return _run(
        U, A, B, "exp", square=True, check_finite_U=check_finite,
        check_unitary=check_unitary, out=out, engine=engine,
        xp=xp, func="transport",
    )


@_describe_engine
def retract(U: Array, A: Array, B: Array, /, method: Method = "polar", *,
            check_finite: bool = False, check_unitary: bool = True, out: Array | None = None,
            engine: Engine = "auto", xp: Namespace | None = None) -> Array:
    r"""Retract the step ``A @ Bᴴ`` onto the unitary group with the chosen method.

    Parameters
    ----------
    U : array, shape (..., n, p)
        Matrix with orthonormal columns; square for ``"exp"`` and ``"cayley"``.
    A : array, shape (..., n, k)
        Left factor of the step.
    B : array, shape (..., p, k)
        Right factor of the step.
    method : {"polar", "exp", "cayley"}, default: "polar"
        ``"polar"``: the nearest unitary to ``U + A Bᴴ`` (:func:`project`);
        ``"exp"``: ``U expm(Ω)`` (:func:`transport`); ``"cayley"``:
        ``U (I − Ω/2)⁻¹ (I + Ω/2)``, where ``Ω = skew(Uᴴ A Bᴴ)``.
    check_finite : bool, default: False
        Scan `U` for NaN and infinity before any work (a full pass over `U`).
    check_unitary : bool, default: True
        Raise a `ValueError` when `U` is not unitary where the step acts
        (``‖(UQ)ᴴ(UQ) − I‖₂ > sqrt(eps)``, an O(n k²) check).
    out : array, optional
        Where to write the result, once complete and finite.
    {engine}
    xp : array namespace, optional
        Namespace of the inputs; inferred by default.

    Returns
    -------
    array, shape (..., n, p)
        The retracted matrix, in the namespace, device and dtype of the inputs
        (large NumPy results on recycled memory, as for :func:`project`).

    Raises
    ------
    TypeError
        If an input is not a floating array, or the inputs come from different
        array libraries.
    ValueError
        If `method` is unknown, the shapes do not fit together (or `U` is not
        square for ``"exp"``/``"cayley"``), an input is on another device, or
        `A` or `B` holds NaN or infinity.

    See Also
    --------
    project, transport

    Notes
    -----
    All three share the O(n²k) formula ``U + (UQ)(F − I)Qᴴ`` and differ only
    in the small core F; the Cayley core is the Cayley transform of
    ``Y = (αβᴴ − βαᴴ)/2``, so the result is the Wen–Yin update without an
    n×n solve.

    Examples
    --------
    >>> import numpy as np
    >>> import unitary_lowrank as ul
    >>> rng = np.random.default_rng(1)
    >>> U = ul.random_unitary(30, dtype="float64", rng=rng)
    >>> A = 0.1 * rng.standard_normal((30, 2)); B = rng.standard_normal((30, 2))
    >>> S = U.T @ A @ B.T; W = (S - S.T) / 2; I = np.eye(30)
    >>> X = ul.retract(U, A, B, method="cayley")
    >>> bool(np.allclose(X, U @ np.linalg.solve(I - W / 2, I + W / 2)))
    True
    """
    check_method(method)
    return _run(
        U, A, B, method, square=needs_square(method), check_finite_U=check_finite,
        check_unitary=check_unitary, out=out,
        engine=engine, xp=xp, func=f"retract(method={method!r})",
    )
