"""Helpers for testing code that uses unitary matrices (ours and yours).

Tolerances are derived from the dtype's machine epsilon and the problem size,
never chosen to make a test pass. Two submodules complete it:

- :mod:`unitary_lowrank.testing.reference`: the dense O(n³) references of the
  updates, :func:`~unitary_lowrank.testing.reference.reference_retract` (of
  ``U + A Bᴴ``), :func:`~unitary_lowrank.testing.reference.reference_step`
  (of ``U + D``) and :func:`~unitary_lowrank.testing.reference.reference_polar`,
  in double precision on the host (they call SciPy);
- :mod:`unitary_lowrank.testing.strategies`: Hypothesis strategies (it imports
  hypothesis, and loads the compiled kernels with :func:`load_engines` when it
  is imported, so that no example pays for them).

This module imports neither SciPy nor hypothesis (nor numba, until
:func:`load_engines` is called).

Examples
--------
>>> import numpy as np
>>> import unitary_lowrank as ul
>>> from unitary_lowrank import testing
>>> U = ul.random_unitary(8, dtype="complex64", rng=0)
>>> testing.assert_unitary(U)
>>> testing.unitarity_bound(8, "complex64")  # 30 * n * eps(float32)
2.86102294921875e-05
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._array_api import DTYPE_NAMES, dtype_name
from .._random import as_generator
from ..haar import random_unitary

__all__ = [
    "DTYPE_NAMES",
    "assert_close",
    "assert_same_kind",
    "assert_unitary",
    "compare_tol",
    "eps_of",
    "load_engines",
    "lowrank_factors",
    "rounded_unitarity_bound",
    "to_numpy",
    "unitarity_bound",
]


def _np_dtype(dtype: Any) -> np.dtype:
    if isinstance(dtype, str):
        return np.dtype(dtype)
    try:
        return np.dtype(dtype)
    except TypeError:
        return np.dtype(str(dtype).rsplit(".", 1)[-1])


def eps_of(dtype: Any) -> float:
    """Machine epsilon of a dtype's precision (complex64 has float32's).

    Parameters
    ----------
    dtype : str or dtype
        A dtype name or a dtype object of NumPy, torch, CuPy or array-api-strict.

    Returns
    -------
    float
        ``finfo(dtype).eps``.

    Examples
    --------
    >>> from unitary_lowrank.testing import eps_of
    >>> eps_of("complex64") == eps_of("float32")
    True
    """
    return float(np.finfo(_np_dtype(dtype)).eps)


@functools.cache
def load_engines() -> bool:
    """Load the compiled kernels of the small updates and sketches, for every dtype.

    The first update (or sketch) of a process imports numba and loads the
    compiled kernels of its dtype from numba's cache, which takes about a second
    in all (more on a first run, which compiles them). A property test pays
    it in its first example, and Hypothesis's default ``deadline`` of 200 ms
    then fails the test as flaky (``FlakyFailure`` from ``DeadlineExceeded``).
    This function pays it up front: it runs :func:`~unitary_lowrank.project` and
    :func:`~unitary_lowrank.step` (samplers ``"randomized"`` and ``"lsi"``) once
    on a 2×2 matrix of each of the four dtypes. Importing
    :mod:`unitary_lowrank.testing.strategies` calls it; call it yourself (e.g.
    in a ``conftest.py``) for property tests that draw their own matrices.
    Only the first call does any work.

    Returns
    -------
    bool
        Whether the kernels are there: False when numba is not installed or is
        disabled (``UNITARY_LOWRANK_DISABLE_NUMBA=1``), and the updates take the
        array-agnostic code, which has nothing to load.

    Examples
    --------
    >>> from unitary_lowrank.testing import load_engines
    >>> isinstance(load_engines(), bool)
    True
    """
    from .. import _engines
    from ..training import step
    from ..updates import project

    if _engines.load_small() is None:
        return False
    for name in DTYPE_NAMES:
        U = np.eye(2, dtype=name)
        A = np.full((2, 1), 1e-3, dtype=name)
        B = np.ones((2, 1), dtype=name)
        project(U, A, B)
        for sampler in ("randomized", "lsi"):
            step(U, np.ones((2, 2), dtype=name), 1e-3, sampler=sampler, rng=0)
    return True


def unitarity_bound(n: int, dtype: Any, factor: float = 30.0) -> float:
    """Bound ``factor · n · eps`` on ``‖XᴴX − I‖₂`` for a backward-stable unitary result.

    Parameters
    ----------
    n : int
        Size of the matrix (its number of rows).
    dtype : str or dtype
        Its dtype.
    factor : float, default: 30
        The constant c of ``c·n·eps``.

    Returns
    -------
    float
        The bound.

    Examples
    --------
    >>> from unitary_lowrank.testing import unitarity_bound
    >>> unitarity_bound(100, "float64") < 1e-12
    True
    """
    return factor * max(int(n), 1) * eps_of(dtype)


def rounded_unitarity_bound(n: int, dtype: Any, factor: float = 30.0) -> float:
    """Bound on ``‖XᴴX − I‖₂`` for a result computed in double precision, then rounded to `dtype`.

    For results such as :func:`~unitary_lowrank.reunitarize` and
    :func:`~unitary_lowrank.random_unitary`, whose arithmetic is done in
    double precision and which are "unitary to the rounding of their own
    dtype". Rounding an n×p matrix Q with orthonormal columns entry by entry
    (relative error ``u = eps/2`` per entry) moves it by ``Δ`` with
    ``‖Δ‖₂ <= ‖Δ‖_F <= u·√p``, so ``‖XᴴX − I‖₂ <= eps·√p + eps²·p/4`` (√n is
    used for √p, p <= n); the double-precision computation itself adds its
    own ``unitarity_bound(n, float64, factor)``.

    Parameters
    ----------
    n : int
        Number of rows of the matrix.
    dtype : str or dtype
        Its dtype (float64/complex128 results are not rounded again, and the
        bound is then about ``unitarity_bound(n, dtype, factor)``).
    factor : float, default: 30
        The constant c of the double-precision part ``c·n·eps₆₄``.

    Returns
    -------
    float
        The bound.

    Examples
    --------
    >>> from unitary_lowrank.testing import eps_of, rounded_unitarity_bound
    >>> rounded_unitarity_bound(16, "float32") < 5 * eps_of("float32")  # ≈ √16·eps
    True
    """
    e = eps_of(dtype)
    root = max(int(n), 1) ** 0.5
    return e * root * (1.0 + e * root / 4.0) + unitarity_bound(n, "float64", factor)


def compare_tol(n: int, dtype: Any, factor: float = 100.0, *, condition: float = 1.0) -> float:
    """Tolerance ``factor · n · eps · condition`` for comparing with a dense oracle.

    Parameters
    ----------
    n : int
        Problem size.
    dtype : str or dtype
        Dtype of the result under test.
    factor : float, default: 100
        The constant c.
    condition : float, default: 1
        Condition number of the problem (for the polar factor ``1/σ_min(M)``).

    Returns
    -------
    float
        The tolerance on the largest absolute entry-wise difference.

    Examples
    --------
    >>> from unitary_lowrank.testing import compare_tol
    >>> compare_tol(10, "float64") == 100 * 10 * 2.0**-52
    True
    """
    return factor * max(int(n), 1) * eps_of(dtype) * condition


def to_numpy(x: Any) -> np.ndarray:
    """Copy an array of any supported library to a NumPy array (test code only).

    Library code never does this: it would move device data to the host.

    Parameters
    ----------
    x : array
        NumPy, CuPy, torch, JAX or array-api-strict array, on any device.

    Returns
    -------
    numpy.ndarray
        A writable host copy.

    Examples
    --------
    >>> import array_api_strict as xps
    >>> from unitary_lowrank.testing import to_numpy
    >>> to_numpy(xps.asarray([1.0, 2.0], device=xps.Device("device1")))
    array([1., 2.])
    """
    mod = type(x).__module__.split(".")[0]
    if mod == "cupy":
        return x.get()
    if mod == "torch":
        return x.detach().resolve_conj().cpu().numpy()
    if mod == "array_api_strict":
        import array_api_strict as xps

        x = x.to_device(xps.Device("CPU_DEVICE"))
    return np.array(x, copy=True)  # writable, never a view of the caller's (or JAX's) data


def assert_same_kind(result: Any, like: Any, dtype: Any = None) -> None:
    """Assert `result` has the namespace, device and dtype of `like` (or `dtype`).

    Parameters
    ----------
    result, like : array
        Arrays to compare.
    dtype : dtype, optional
        Expected dtype of `result`; default ``like.dtype``.

    Raises
    ------
    AssertionError
        If namespace, device or dtype differ.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank.testing import assert_same_kind
    >>> assert_same_kind(np.ones(2), np.zeros(3))
    """
    from array_api_compat import array_namespace, device

    assert array_namespace(result) is array_namespace(like), (
        f"namespace {array_namespace(result).__name__} != {array_namespace(like).__name__}"
    )
    assert device(result) == device(like), f"device {device(result)} != {device(like)}"
    expected = like.dtype if dtype is None else dtype
    assert result.dtype == expected, f"dtype {result.dtype} != {expected}"


def assert_unitary(U: Any, *, factor: float = 30.0, xp: Any = None) -> None:
    """Assert ``‖UᴴU − I‖₂ <= factor · n · eps`` for every matrix of a batch.

    Parameters
    ----------
    U : array, shape (..., n, p)
        Matrices of any supported library.
    factor : float, default: 30
        The constant c of the bound.
    xp : array namespace, optional
        Namespace of `U`.

    Raises
    ------
    AssertionError
        If a matrix is farther from unitary than the bound, or not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank.testing import assert_unitary
    >>> assert_unitary(np.eye(4))
    """
    from array_api_compat import array_namespace

    from ..dense import unitarity_error

    xp = array_namespace(U) if xp is None else xp
    err = to_numpy(unitarity_error(U, xp=xp))
    bound = unitarity_bound(U.shape[-2], dtype_name(xp, U.dtype), factor)
    worst = float(np.max(err, initial=0.0)) if err.size else 0.0
    assert np.all(np.isfinite(err)) and worst <= bound, (
        f"unitarity error {worst:.3e} exceeds {factor}·n·eps = {bound:.3e} "
        f"(n={U.shape[-2]}, dtype={dtype_name(xp, U.dtype)})"
    )


def assert_close(actual: Any, desired: Any, tol: float, *, what: str = "result") -> None:
    """Assert ``max |actual − desired| <= tol`` (after copying both to NumPy).

    Parameters
    ----------
    actual, desired : array
        Arrays of any supported library, of one shape.
    tol : float
        Absolute tolerance on the largest entry-wise difference.
    what : str, default: "result"
        Name used in the failure message.

    Raises
    ------
    AssertionError
        If the shapes differ or the difference exceeds `tol`.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank.testing import assert_close
    >>> assert_close(np.ones(3), np.ones(3) + 1e-17, 1e-15)
    """
    a, d = to_numpy(actual), to_numpy(desired)
    assert a.shape == d.shape, f"{what}: shape {a.shape} != {d.shape}"
    diff = float(np.max(np.abs(a.astype(np.complex128) - d), initial=0.0)) if a.size else 0.0
    assert diff <= tol, f"{what}: max difference {diff:.3e} exceeds tolerance {tol:.3e}"


def lowrank_factors(
    n: int,
    p: int,
    k: int,
    dtype: str,
    rng: Any = None,
    *,
    norm: float = 0.1,
    rank: int | None = None,
    spread: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy factors ``A`` (n×k), ``B`` (p×k) of a step with known norm and rank.

    ``A = Qa diag(s)`` and ``B = Qb`` with orthonormal ``Qa``, ``Qb``, so the step
    ``A Bᴴ`` has spectral norm `norm` and exactly `rank` non-zero singular
    values, spread log-uniformly over ``[norm/spread, norm]``.

    Parameters
    ----------
    n, p : int
        Rows of A and of B.
    k : int
        Number of columns.
    dtype : str
        Dtype name.
    rng : None, int or numpy.random.Generator
        Randomness.
    norm : float, default: 0.1
        Spectral norm of ``A Bᴴ``.
    rank : int, optional
        Rank of the step, ``<= min(k, n, p)``; default ``min(k, n, p)``.
    spread : float, default: 10
        Ratio of the largest to the smallest non-zero singular value.

    Returns
    -------
    A, B : numpy.ndarray
        The factors.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank.testing import lowrank_factors
    >>> A, B = lowrank_factors(6, 6, 2, "float64", 0, norm=0.5)
    >>> float(np.linalg.norm(A @ B.T, 2))  # doctest: +ELLIPSIS
    0.5...
    """
    gen = as_generator(rng)
    m = min(k, n, p)
    rank = m if rank is None else rank
    if not 0 <= rank <= m:
        raise ValueError(f"rank must be in [0, {m}], got {rank}")
    Qa = random_unitary(n, m, dtype="complex128" if dtype.startswith("complex") else "float64",
                        rng=gen)
    Qb = random_unitary(p, m, dtype=Qa.dtype.name, rng=gen)
    s = np.zeros(m)
    if rank:
        s[:rank] = norm * spread ** -np.sort(gen.uniform(0, 1, rank))
        s[0] = norm
    A = np.zeros((n, k), Qa.dtype)
    B = np.zeros((p, k), Qa.dtype)
    A[:, :m] = Qa * s
    B[:, :m] = Qb
    return A.astype(dtype), B.astype(dtype)

