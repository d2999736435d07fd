r"""Drift control: repair a matrix that has drifted off the unitary group, and a policy.

Rounding makes a weight updated 10⁵–10⁶ times drift away from the unitary group
like √steps (``docs/theory.md``, drift; ``docs/reliability.md``). This
module repairs the drift (:func:`reunitarize`) and decides when to
(:class:`DriftGuard`: a cheap probe estimate of ``‖UᴴU − I‖₂`` every K steps,
a repair only when it exceeds a tolerance), so that the amortised cost per
step stays O(n²k).
"""

from __future__ import annotations

import math
from typing import Any

from ._agnostic import _drift
from ._array_api import (
    chunked_like,
    core_dtype,
    get_namespace,
    is_lazy_array,
    real_dtype,
    splits_matrices,
    square_tiles,
)
from ._random import as_generator
from ._validation import as_int, as_real, check_finite, check_matrix, check_out
from .dense import unitarity_error
from .typing import Array, Namespace, Repair, Seed

__all__ = ["DriftGuard", "reunitarize"]

#: ``method="auto"`` uses Newton–Schulz below this bound on ‖UᴴU − I‖₂, the SVD above.
_AUTO_LIMIT = 0.5
#: Newton–Schulz never runs more steps than this (from ‖E‖₂ < 1 it needs far fewer
#: unless U is nearly singular, where σ only grows by 3/2 per step).
_MAX_STEPS = 64
METHODS = ("auto", "newton-schulz", "polar")


def _check_method(method: Any) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be 'auto', 'newton-schulz' or 'polar', got {method!r}")


def _ns_steps(bound: float, target: float) -> int:
    """Newton–Schulz steps that take ``‖E‖₂ <= bound < 1`` below `target`.

    Each step maps an eigenvalue e of ``E = UᴴU − I`` to ``−e²(3 − e)/4``, so
    ``|e| ↦ |e|²(3 + |e|)/4`` bounds it whatever its sign.
    """
    steps = 1
    e = bound * bound * (3.0 + bound) / 4.0
    while e > target and steps < _MAX_STEPS:
        e = e * e * (3.0 + e) / 4.0
        steps += 1
    return steps


def _scalar(x: Any) -> float:
    """A 0-d array as a Python float.

    A torch tensor is detached first, so that a weight that requires grad does
    not warn about the conversion.
    """
    return float(x.detach() if hasattr(x, "detach") else x)


def _spectral_bound(E: Any, xp) -> float:
    """Largest ``‖E‖₂`` over the batch, read on the host.

    The Frobenius norm when it already proves ``‖E‖₂ < 1``, the exact
    eigenvalues otherwise.
    """
    fro = _scalar(xp.max(xp.linalg.vector_norm(E, axis=(-2, -1))))
    if fro < 1.0 or math.isnan(fro):
        return fro
    return _scalar(xp.max(xp.abs(xp.linalg.eigvalsh(E))))


def reunitarize(U: Array, /, *, method: Repair = "auto", iterations: int | None = None,
                out: Array | None = None, xp: Namespace | None = None) -> Array:
    r"""Nearest matrix with orthonormal columns to a `U` that has drifted.

    Repairs the rounding drift of a weight updated many times: returns the
    polar factor of `U` (the matrix with orthonormal columns nearest to `U`),
    by Newton–Schulz (Björck) iteration ``U ← U(3I − UᴴU)/2`` — matrix
    products only, :math:`O(np^2)` per step — or by a dense SVD.

    Parameters
    ----------
    U : array, shape (..., n, p)
        Matrices with ``p <= n`` and nearly orthonormal columns; leading axes
        are batch axes.
    method : {"auto", "newton-schulz", "polar"}, default: "auto"
        ``"newton-schulz"``: iterate until the error bound reaches the
        precision of `U` (one step from ``‖UᴴU − I‖₂ = 1e-5``); it converges
        only for ``‖UᴴU − I‖₂ < 1`` and raises `ValueError` beyond.
        ``"polar"``: the SVD polar factor, :math:`O(np^2)` with a larger
        constant, for any `U`. ``"auto"``: Newton–Schulz when the Frobenius
        norm of ``UᴴU − I`` is below 0.5 for every matrix of the batch, the
        SVD otherwise.
    iterations : int, optional
        Number of Newton–Schulz steps; default: as many as the quadratic
        convergence bound needs (``|e| ↦ |e|²(3 + |e|)/4`` per step) to reach
        the machine epsilon of `U`. Not allowed with ``method="polar"``.
    out : array, optional
        Array of `U`'s shape and dtype to write the result into, e.g.
        ``out=U``; written only once the result is complete.
    xp : array namespace, optional
        Namespace of `U`; inferred by default.

    Returns
    -------
    array, shape (..., n, p)
        The repaired matrices, in the namespace, device and dtype of `U`. The
        arithmetic is done in double precision and the result rounded once to
        `U`'s dtype, so it is unitary to the rounding of that dtype:
        ``‖XᴴX − I‖₂ <= eps·√n·(1 + eps·√n/4) + 30·n·eps₆₄`` with ``eps`` the
        machine epsilon of `U`'s dtype and ``eps₆₄`` that of float64
        (:func:`unitary_lowrank.testing.rounded_unitarity_bound`).

    Raises
    ------
    TypeError
        If `U` is not a floating array (or is a masked array, a
        ``numpy.matrix`` or a torch ``meta`` tensor), `iterations` is not an
        integer, `xp` is not an array namespace (or not that of `U`), or `out`
        is not an array of `U`'s library.
    ValueError
        If `U` has fewer than two dimensions or more columns than rows, holds
        NaN or infinity, `method` is unknown, `iterations` is below 1 or given
        with ``"polar"``, `out` does not match (shape, dtype, device) or is
        read-only, ``method="newton-schulz"`` and ``‖UᴴU − I‖₂ >= 1`` (the
        iteration would not converge), or ``method="polar"`` is asked of a
        Dask array whose matrices are split over several chunks (Newton–Schulz
        runs on its tiles; ``docs/dask.md``).

    See Also
    --------
    DriftGuard : Decides when to call this, from a cheap estimate.
    unitarity_error : The error being repaired.
    polar : Dense polar factor in the dtype of its input.

    Notes
    -----
    In ``"auto"`` and ``"newton-schulz"`` modes one scalar (the largest error
    bound of the batch) is read on the host to choose the number of steps; with
    lazy arrays (e.g. under ``jax.jit``) nothing is read, and `iterations`
    steps (default 2) are taken without a check.

    Examples
    --------
    >>> import numpy as np
    >>> import unitary_lowrank as ul
    >>> from unitary_lowrank.testing import assert_close, compare_tol, rounded_unitarity_bound
    >>> rng = np.random.default_rng(0)
    >>> U = ul.random_unitary(64, dtype="float32", rng=rng)
    >>> U = (U + 1e-4 * rng.standard_normal((64, 64))).astype("float32")
    >>> bool(ul.unitarity_error(U) > 1e-4)
    True
    >>> V = ul.reunitarize(U)
    >>> V.dtype, bool(ul.unitarity_error(V) <= rounded_unitarity_bound(64, "float32"))
    (dtype('float32'), True)

    It is the polar factor of `U`, to the tolerance of a comparison with a
    dense reference:

    >>> assert_close(V, ul.polar(U.astype("float64")), compare_tol(64, "float32"))
    """
    xp = get_namespace(("U", U), xp=xp)
    check_matrix(U, "U", xp, "(..., n, p)")
    _check_method(method)
    n, p = U.shape[-2:]
    if p > n:
        raise ValueError(
            f"U must have shape (..., n, p) with p <= n (orthonormal columns), "
            f"got {tuple(U.shape)}"
        )
    if iterations is not None:
        if method == "polar":
            raise ValueError("iterations applies to Newton-Schulz only, not to method='polar'")
        iterations = as_int(iterations, "iterations", 1)
    check_out(out, xp, tuple(U.shape), U.dtype, ("U", U))
    check_finite(U, "U (it cannot be repaired)", xp)
    if method == "polar" and splits_matrices(U):
        raise ValueError(
            "reunitarize(method='polar') needs each matrix of U in one chunk for its SVD, "
            f"got a Dask array with chunks {_chunk_sizes(U)} along its last two axes; use "
            "method='newton-schulz' or 'auto' (matrix products, tile by tile)"
        )
    # Dask: the Gram matrices of Newton-Schulz tile by tile, the result in U's chunks
    return _to_out(chunked_like(_repair(square_tiles(U), method, iterations, xp), U), out)


def _chunk_sizes(U: Any) -> str:
    """The chunk sizes of a Dask array's last two axes, for messages."""
    return " × ".join(str(tuple(c)) for c in U.chunks[-2:])


def _repair(U: Any, method: str, iterations: int | None, xp) -> Any:
    """The polar factor of `U`, in double precision, rounded to `U`'s dtype.

    Newton–Schulz steps when they converge (and are asked for), the SVD
    otherwise.
    """
    if 0 in U.shape:  # static: nothing to repair (or no column to orthonormalise)
        return xp.asarray(U, copy=True)
    if method == "polar":
        return _drift.polar_double(U, xp)
    X = xp.astype(U, core_dtype(xp, U.dtype))
    lazy = is_lazy_array(U) or is_lazy_array(X)  # X is traced under jit even for a constant U
    # Orthonormal columns have entries of modulus <= 1; entries above 2 mean
    # ‖UᴴU − I‖₂ >= 3, and checking first keeps the Gram matrix from overflowing.
    far = False if lazy else not _scalar(xp.max(xp.abs(X))) <= 2.0
    if far and method == "auto":
        return _drift.polar_double(U, xp)
    E = None if far else _drift.gram_deviation(X, xp)
    if lazy:
        steps = 2 if iterations is None else iterations
    else:
        bound = _error_bound(E, far, method, xp)
        if bound is None:
            return _drift.polar_double(U, xp)
        eps = float(xp.finfo(real_dtype(xp, U.dtype)).eps)
        steps = _ns_steps(bound, eps) if iterations is None else iterations
    for i in range(steps):
        if i:
            E = _drift.gram_deviation(X, xp)
        X = _drift.newton_schulz_step(X, E, xp)
    return xp.astype(X, U.dtype)


def _error_bound(E: Any, far: bool, method: str, xp) -> float | None:
    """A bound ``< 1`` on ``‖E‖₂`` to start Newton–Schulz from, or None for the SVD.

    ``"auto"``: the Frobenius norm when it is below ``_AUTO_LIMIT``, else None.
    ``"newton-schulz"``: the spectral norm, and `ValueError` from 1 on, where the
    iteration does not converge.
    """
    if method == "auto":
        fro = _scalar(xp.max(xp.linalg.vector_norm(E, axis=(-2, -1))))
        return fro if fro < _AUTO_LIMIT else None
    bound = math.inf if far else _spectral_bound(E, xp)
    if not bound < 1.0:
        raise ValueError(
            f"U is too far from orthonormal columns for Newton-Schulz "
            f"(max ||U^H U - I||_2 = {bound:.3g} >= 1, where it does not "
            "converge); use method='polar' or 'auto'"
        )
    return bound


class DriftGuard:
    r"""Watch a weight for drift every `every` steps and repair it when needed.

    Call the guard once per update step: every `every` calls it estimates
    ``‖UᴴU − I‖₂`` with the cheap probe estimate of :func:`unitarity_error`
    (``method="probe"``, about the cost of 6 rank-1 updates) and, only if the
    estimate exceeds `tol`, returns ``reunitarize(U)``. Between checks it
    returns `U` itself, so the amortised cost per step is O(n²k) plus
    ``O(n² · probes · depth) / every``.

    Parameters
    ----------
    every : int, default: 100
        Steps between two checks (K).
    tol : float, optional
        Repair when the estimate exceeds this (a positive finite number).
        Default ``32 · eps`` of the weight's dtype (3.8e-6 for
        float32/complex64, 7.1e-15 for float64/complex128), a few times the
        rounding level of a freshly repaired matrix. The probe estimate is a
        lower bound, within a factor 2 of the truth in our tests, so the true
        error at a check that does not repair is below about ``2 · tol``.
    probes, depth : int, default: 4
        Parameters of the probe estimate (see :func:`unitarity_error`).
    method : {"auto", "newton-schulz", "polar"}, default: "auto"
        Repair method (see :func:`reunitarize`).
    rng : None, int or numpy.random.Generator, optional
        Randomness of the probes; a seed makes the whole policy reproducible.

    Attributes
    ----------
    steps : int
        Calls so far.
    checks : int
        Probe estimates computed.
    repairs : int
        Repairs done.
    last_estimate : float
        Estimate at the last check (largest over the batch), NaN before one.
    max_estimate : float
        Largest estimate seen.

    Raises
    ------
    TypeError
        If `every`, `probes` or `depth` is not an integer, `tol` is not a real
        number, or `rng` is not None, a seed or a Generator.
    ValueError
        If `every`, `probes` or `depth` is below 1, `tol` is not a positive
        finite number, `method` is unknown, or `rng` is a negative seed.

    See Also
    --------
    reunitarize, unitarity_error

    Notes
    -----
    Each check reads one scalar on the host (the decision is a Python branch),
    so the guard is for eager training loops, not for code traced by
    ``jax.jit``. A batch is repaired as a whole when any of its matrices
    exceeds `tol`. A weight that has become non-finite has the estimate
    ``inf`` and makes the repair raise `ValueError`: the guard fails loudly.

    Examples
    --------
    >>> import numpy as np
    >>> import unitary_lowrank as ul
    >>> rng = np.random.default_rng(0)
    >>> U = ul.random_unitary(64, dtype="float32", rng=rng)
    >>> guard = ul.DriftGuard(every=10, tol=1e-6, rng=0)
    >>> for _ in range(100):
    ...     a = (0.05 * rng.standard_normal((64, 1))).astype("float32")
    ...     b = rng.standard_normal((64, 1)).astype("float32")
    ...     U = guard(ul.transport(U, a, b))
    >>> guard.steps, guard.checks
    (100, 10)

    The last call was a check: below about ``2 · tol`` (see `tol`), or repaired.

    >>> bool(ul.unitarity_error(U) <= 2 * guard.tol)
    True
    """

    def __init__(self, every: int = 100, tol: float | None = None, *, probes: int = 4,
                 depth: int = 4, method: Repair = "auto", rng: Seed = None) -> None:
        self.every = as_int(every, "every", 1)
        if tol is not None:
            tol = as_real(tol, "tol", positive=True)  # refuses 0, negatives, NaN and inf
        self.tol = tol
        self.probes = as_int(probes, "probes", 1)
        self.depth = as_int(depth, "depth", 1)
        _check_method(method)
        self.method = method
        self._gen = as_generator(rng)
        self.steps = 0
        self.checks = 0
        self.repairs = 0
        self.last_estimate = math.nan
        self.max_estimate = 0.0

    def __repr__(self) -> str:
        """Settings and counters."""
        return (
            f"DriftGuard(every={self.every}, tol={self.tol}, steps={self.steps}, "
            f"checks={self.checks}, repairs={self.repairs}, "
            f"max_estimate={self.max_estimate:.3g})"
        )

    def tolerance(self, U: Any) -> float:
        """The tolerance applied to `U`: `tol`, or ``32 · eps`` of its dtype.

        Parameters
        ----------
        U : array
            The weight.

        Returns
        -------
        float
            The tolerance.
        """
        if self.tol is not None:
            return self.tol
        xp = get_namespace(("U", U))
        return 32.0 * float(xp.finfo(real_dtype(xp, U.dtype)).eps)

    def __call__(self, U: Array, /, *, out: Array | None = None) -> Array:
        """Count one step; every `every` steps check `U` and repair it if needed.

        Parameters
        ----------
        U : array, shape (..., n, p)
            The weight after this step's update.
        out : array, optional
            Where to write the result (e.g. ``out=U``).

        Returns
        -------
        array
            `U` itself (or `out` holding it), or the repaired matrix.
        """
        xp = get_namespace(("U", U))  # O(1): U is an array we can use
        check_out(out, xp, tuple(U.shape), U.dtype, ("U", U))
        self.steps += 1
        if self.steps % self.every:
            return _to_out(U, out)
        return self.check(U, out=out)

    def check(self, U: Array, /, *, out: Array | None = None) -> Array:
        """Estimate the error of `U` now and repair it if it exceeds the tolerance.

        Parameters
        ----------
        U : array, shape (..., n, p)
            The weight.
        out : array, optional
            Where to write the result (e.g. ``out=U``).

        Returns
        -------
        array
            `U` itself (or `out` holding it), or the repaired matrix.
        """
        xp = get_namespace(("U", U))
        check_out(out, xp, tuple(U.shape), U.dtype, ("U", U))
        worst = self._estimate(U, xp)
        self._record(worst)
        if not worst > self.tolerance(U):
            return _to_out(U, out)
        self.repairs += 1
        return reunitarize(U, method=self.method, out=out, xp=xp)

    def _estimate(self, U: Any, xp) -> float:
        """Largest probe estimate of ``‖UᴴU − I‖₂`` over the batch (0 for an empty batch)."""
        est = unitarity_error(U, method="probe", probes=self.probes, depth=self.depth,
                              rng=self._gen, xp=xp)
        return _scalar(xp.max(est)) if math.prod(est.shape) else 0.0

    def _record(self, worst: float) -> None:
        self.checks += 1
        self.last_estimate = worst
        self.max_estimate = max(self.max_estimate, worst)

    @property
    def stats(self) -> dict[str, float]:
        """Counters and estimates as a dict (for logging)."""
        return {
            "steps": self.steps,
            "checks": self.checks,
            "repairs": self.repairs,
            "last_estimate": self.last_estimate,
            "max_estimate": self.max_estimate,
        }


def _to_out(U: Any, out: Any) -> Any:
    if out is None or out is U:
        return U
    out[...] = U
    return out
