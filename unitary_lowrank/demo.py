"""A short demonstration: low-rank updates of a large random unitary against the dense references.

``python -m unitary_lowrank bench`` prints the table of :func:`bench`.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, TextIO

import numpy as np

from .dense import unitarity_error
from .haar import random_unitary
from .testing import lowrank_factors
from .updates import project, retract, transport

__all__ = ["bench"]


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up (caches, first-call compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _dense_references(U: np.ndarray, A: np.ndarray, B: np.ndarray) -> dict[str, Any]:
    """The three dense O(n³) updates the low-rank ones replace (SciPy)."""
    try:
        import scipy.linalg as sl
    except ImportError:
        raise ImportError(
            "the benchmark compares with SciPy's dense routines: "
            "pip install 'unitary_lowrank[bench]'"
        ) from None

    n = U.shape[-1]
    S = U.conj().T @ A @ B.conj().T
    Y = (S - S.conj().T) / 2
    eye = np.eye(n, dtype=U.dtype)
    return {
        "polar": lambda: sl.polar(U + A @ B.conj().T)[0],
        "exp": lambda: U @ sl.expm(Y),
        "cayley": lambda: U @ sl.solve(eye - Y / 2, eye + Y / 2),
    }


def bench(
    *,
    n: int = 1024,
    ranks: Iterable[int] = (1, 4),
    dtypes: Iterable[str] = ("float64", "float32"),
    repeats: int = 5,
    step_norm: float = 0.05,
    seed: int = 0,
    stream: TextIO | None = None,
) -> list[dict[str, Any]]:
    """Time the low-rank updates of an n×n unitary against dense SVD polar, ``expm`` and solve.

    For each dtype and rank k, draws a Haar unitary U and a step ``A Bᴴ`` of
    spectral norm `step_norm`, then reports for ``project`` (polar),
    ``transport`` (exp) and ``retract(..., "cayley")``: the median time, the
    time of the dense SciPy computation of the same result (``scipy.linalg.polar``,
    ``U @ expm(Y)``, ``U @ solve(I − Y/2, I + Y/2)``), the speed-up, the largest
    entry-wise difference from the dense result and the unitarity error
    ``‖XᴴX − I‖₂``. Also reports the time of ``U.copy()``, the memory floor of
    any update.

    Parameters
    ----------
    n : int, default: 1024
        Matrix size.
    ranks : iterable of int, default: (1, 4)
        Ranks k of the step.
    dtypes : iterable of str, default: ("float64", "float32")
        Dtype names (real: orthogonal group; complex: unitary group).
    repeats : int, default: 5
        Timed repetitions (the median is reported) after one warm-up call.
    step_norm : float, default: 0.05
        Spectral norm of the step ``A Bᴴ``.
    seed : int, default: 0
        Seed of the random inputs.
    stream : file-like, optional
        Where to print the table; default ``sys.stdout``.

    Returns
    -------
    list of dict
        One row per (dtype, k, method) with keys ``dtype``, ``n``, ``k``,
        ``method``, ``seconds``, ``dense_seconds``, ``speedup``, ``copy_seconds``,
        ``time_over_copy``, ``max_abs_diff`` and ``unitarity_error``.

    Raises
    ------
    ValueError
        If `n` or a rank is not positive, or `repeats` < 1.
    ImportError
        If SciPy (the dense references) is not installed.

    Examples
    --------
    >>> import io
    >>> from unitary_lowrank.demo import bench
    >>> rows = bench(n=64, ranks=(1,), dtypes=("float64",), repeats=1, stream=io.StringIO())
    >>> sorted({r["method"] for r in rows})
    ['cayley', 'exp', 'polar']
    >>> all(r["unitarity_error"] < 1e-12 for r in rows)
    True
    """
    ranks = [int(k) for k in ranks]
    dtypes = list(dtypes)
    if n < 1 or any(k < 1 for k in ranks) or repeats < 1:
        raise ValueError(f"n, ranks and repeats must be positive, got n={n}, ranks={ranks}, "
                         f"repeats={repeats}")
    out = sys.stdout if stream is None else stream
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    header = (f"{'dtype':>10} {'n':>5} {'k':>3} {'method':>7} {'low-rank':>10} {'dense':>10} "
              f"{'speed-up':>9} {'/copy':>6} {'max|X-dense|':>13} {'|XᴴX-I|':>9}")
    print(f"Low-rank updates of a {n}x{n} Haar unitary, step norm {step_norm}, "
          f"median of {repeats} (seconds)", file=out)
    print(header, file=out)
    for dt in dtypes:
        U = random_unitary(n, dtype=dt, rng=rng)
        t_copy = _median_time(U.copy, max(repeats, 5))
        for k in ranks:
            A, B = lowrank_factors(n, n, k, dt, rng, norm=step_norm)
            dense = _dense_references(U, A, B)
            fast = {
                "polar": partial(project, U, A, B),
                "exp": partial(transport, U, A, B),
                "cayley": partial(retract, U, A, B, method="cayley"),
            }
            for method in ("polar", "exp", "cayley"):
                t_fast = _median_time(fast[method], repeats)
                t_dense = _median_time(dense[method], max(1, min(repeats, 3)))
                X = fast[method]()
                ref = dense[method]()
                row = {
                    "dtype": dt, "n": n, "k": k, "method": method,
                    "seconds": t_fast, "dense_seconds": t_dense,
                    "speedup": t_dense / t_fast, "copy_seconds": t_copy,
                    "time_over_copy": t_fast / t_copy,
                    "max_abs_diff": float(np.max(np.abs(X - ref))),
                    "unitarity_error": float(unitarity_error(X)),
                }
                rows.append(row)
                print(f"{dt:>10} {n:>5} {k:>3} {method:>7} {t_fast:>10.2e} {t_dense:>10.2e} "
                      f"{row['speedup']:>8.0f}x {row['time_over_copy']:>6.1f} "
                      f"{row['max_abs_diff']:>13.1e} {row['unitarity_error']:>9.1e}", file=out)
    print("dense: scipy.linalg.polar, U @ expm(Y), U @ solve(I - Y/2, I + Y/2); "
          "/copy: time over U.copy(), the memory floor", file=out)
    return rows

