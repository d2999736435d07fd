"""``python -m unitary_lowrank bench``: low-rank updates against the dense references.

The low-rank updates of a large Haar unitary are timed, and checked, against the
dense computations of the same updates:
:func:`unitary_lowrank.testing.reference.reference_retract`, the library's one
dense O(n³) computation of each update (SVD polar factor, ``U expm(Ω)``, Cayley
solve). It is timed at the precision of the update (``double=False``) and
compared with in double precision.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, TextIO

import numpy as np

import unitary_lowrank as ul
from unitary_lowrank.methods import METHODS, Method
from unitary_lowrank.testing import lowrank_factors

__all__ = ["bench"]


_HEADER = (f"{'dtype':>10} {'n':>5} {'k':>3} {'method':>7} {'low-rank':>10} {'dense':>10} "
           f"{'speed-up':>9} {'/copy':>6} {'max|X-dense|':>13} {'|XᴴX-I|':>9}")
_FOOTER = ("dense: unitary_lowrank.testing.reference.reference_retract (SVD polar factor,\n"
           "       U @ expm(Y), U @ solve(I - Y/2, I + Y/2)), timed in the dtype of U;\n"
           "max|X-dense|: against it in double precision; /copy: time over U.copy(), the "
           "memory floor")


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up (caches, first-call compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _dense_reference() -> Callable[..., np.ndarray]:
    """:func:`~unitary_lowrank.testing.reference.reference_retract` (it needs SciPy)."""
    try:
        import scipy.linalg  # noqa: F401 - reference_retract's expm
    except ImportError:
        raise ImportError(
            "the benchmark compares with SciPy's dense routines: "
            "pip install 'unitary_lowrank[bench]'"
        ) from None
    from unitary_lowrank.testing.reference import reference_retract

    return reference_retract


def _low_rank(U: np.ndarray, A: np.ndarray, B: np.ndarray, method: Method
              ) -> Callable[[], Any]:
    """The low-rank update `method` of `U` by the step ``A Bᴴ``, as a call without arguments."""
    if method == "polar":
        return partial(ul.project, U, A, B)
    if method == "exp":
        return partial(ul.transport, U, A, B)
    return partial(ul.retract, U, A, B, method=method)


def _measure(U: np.ndarray, A: np.ndarray, B: np.ndarray, method: Method, repeats: int,
             t_copy: float, reference: Callable[..., np.ndarray]) -> dict[str, Any]:
    """The measured half of a row of :func:`bench`: times, speed-up and accuracy of one update."""
    fast = _low_rank(U, A, B, method)
    t_fast = _median_time(fast, repeats)
    t_dense = _median_time(partial(reference, U, A, B, method, double=False),
                           max(1, min(repeats, 3)))
    X = fast()
    return {
        "seconds": t_fast, "dense_seconds": t_dense,
        "speedup": t_dense / t_fast, "copy_seconds": t_copy,
        "time_over_copy": t_fast / t_copy,
        "max_abs_diff": float(np.max(np.abs(X - reference(U, A, B, method)))),
        "unitarity_error": float(ul.unitarity_error(X)),
    }


def _format_row(row: dict[str, Any]) -> str:
    return (f"{row['dtype']:>10} {row['n']:>5} {row['k']:>3} {row['method']:>7} "
            f"{row['seconds']:>10.2e} {row['dense_seconds']:>10.2e} "
            f"{row['speedup']:>8.0f}x {row['time_over_copy']:>6.1f} "
            f"{row['max_abs_diff']:>13.1e} {row['unitarity_error']:>9.1e}")


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
    """Time the low-rank updates of an n×n unitary against the dense references.

    For each dtype and rank k, draws a Haar unitary U and a step ``A Bᴴ`` of
    spectral norm `step_norm`, then reports for ``project`` (polar),
    ``transport`` (exp) and ``retract(..., "cayley")``: the median time, the
    time of the dense computation of the same update in the same dtype
    (:func:`~unitary_lowrank.testing.reference.reference_retract` with
    ``double=False``: the SVD polar factor of ``U + A Bᴴ``, ``U @ expm(Y)``,
    ``U @ solve(I − Y/2, I + Y/2)``), the speed-up, the largest entry-wise
    difference from the dense result in double precision and the unitarity error
    ``‖XᴴX − I‖₂``. Also reports the time of
    ``U.copy()``, the memory floor of any update.

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
    >>> from unitary_lowrank.cli.bench import bench
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
    reference = _dense_reference()
    out = sys.stdout if stream is None else stream
    rng = np.random.default_rng(seed)
    print(f"Low-rank updates of a {n}x{n} Haar unitary, step norm {step_norm}, "
          f"median of {repeats} (seconds)", file=out)
    print(_HEADER, file=out)
    rows: list[dict[str, Any]] = []
    for dt in dtypes:
        U = ul.random_unitary(n, dtype=dt, rng=rng)
        t_copy = _median_time(U.copy, max(repeats, 5))
        for k in ranks:
            A, B = lowrank_factors(n, n, k, dt, rng, norm=step_norm)
            for method in METHODS:
                row = {"dtype": dt, "n": n, "k": k, "method": method,
                       **_measure(U, A, B, method, repeats, t_copy, reference)}
                rows.append(row)
                print(_format_row(row), file=out)
    print(_FOOTER, file=out)
    return rows
