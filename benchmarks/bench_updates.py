"""The low-rank updates against the memory floor, the dense O(n³) updates and a peer baseline.

For every (dtype, n, k), all in one process on the same data, medians after a
warm-up:

- ``project``/``transport``/``retract(cayley)`` with the default engine, and
  ``transport(..., out=U)`` (in place), each over ``U.copy()``: the memory
  floor, since a rank-k update must read and write U at least once;
- for results of at least ``_pool.MIN_BYTES`` (32 MiB), ``project`` and
  ``transport`` with the result pool turned off (every result on fresh memory,
  as ``U.copy()``'s) over the default, where a dropped result's memory is
  reused (``unitary_lowrank/_pool.py``);
- the two-pass NumPy engines over the pure-array path (``engine="blas"`` and
  ``"numba"`` over ``"array_api"``), and numba over blas;
- the dense O(n³) computations of the same matrices at the precision of U:
  ``scipy.linalg.polar(U + ABᴴ)`` (the peer library's polar factor, what a user
  would call), and ``U @ scipy.linalg.expm(Ω)`` and the dense Cayley solve
  ``U @ scipy.linalg.solve(I − Ω/2, I + Ω/2)`` of
  :mod:`unitary_lowrank.testing.reference` (``double=False``), each divided by
  the low-rank update that computes the same matrix;
- the Wen–Yin low-rank Cayley update (Sherman–Morrison–Woodbury), written here
  as a peer baseline, over ours;
- float64 over float32 at the same n, k (half the bytes to move).

The dense O(n³) baselines hardly depend on k (forming the step ``A Bᴴ`` or
``(Uᴴ A) Bᴴ`` costs O(n²k)): they are timed once per (dtype, n) (medians of
three after a warm-up up to n = 2048, one run beyond) and reused for every k.

Rows also carry the accuracy (largest difference from the dense result, and
``‖XᴴX − I‖₂``), so a fast wrong answer cannot hide.
"""

from __future__ import annotations

import itertools

import numpy as np

import unitary_lowrank as ul
from benchmarks._timing import measure, without_result_pool
from unitary_lowrank import _pool
from unitary_lowrank.testing import lowrank_factors
from unitary_lowrank.testing.reference import reference_retract

__all__ = ["run", "wen_yin_cayley"]

FULL_SIZES = (256, 1024, 2048, 4096)
FULL_RANKS = (1, 4, 16)
DTYPES = ("float64", "float32", "complex128", "complex64")


def wen_yin_cayley(U: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Peer baseline: Wen–Yin's Cayley update through Sherman–Morrison–Woodbury.

    ``W = U Ω Uᴴ = L Rᴴ`` with ``L = ½[A, UB]``, ``R = [UB, −A]``, and
    ``(I − W/2)⁻¹(I + W/2) U = U + L (I − RᴴL/2)⁻¹ (Rᴴ U)``: the same matrix as
    ``retract(U, A, B, "cayley")``, in O(n²k) but with an extra pass over U.
    """
    UB = U @ B
    L = 0.5 * np.concatenate([A, UB], axis=1)
    R = np.concatenate([UB, -A], axis=1)
    Rh = R.conj().T
    small = np.eye(R.shape[1], dtype=U.dtype) - 0.5 * (Rh @ L)
    return U + L @ np.linalg.solve(small, Rh @ U)


def _dense(U, A, B):
    """The dense updates of `U` by ``A Bᴴ``, at `U`'s precision, as functions to time."""
    import scipy.linalg

    dense = {m: (lambda m=m: reference_retract(U, A, B, m, double=False))
             for m in ("exp", "cayley")}
    dense["polar"] = lambda: scipy.linalg.polar(U + A @ B.conj().T)[0]
    return dense


def run(quick: bool, *, sizes=None, ranks=None, dtypes=None, dense_max_n: int = 4096,
        repeats: int | None = None) -> list[dict]:
    """Benchmark rows (see the module docstring); `quick` uses n ≤ 64 for the CI smoke test."""
    sizes = sizes or ((24,) if quick else FULL_SIZES)
    ranks = ranks or ((1, 3) if quick else FULL_RANKS)
    dtypes = dtypes or DTYPES
    reps = repeats or (1 if quick else 7)
    mt = 0.0 if quick else 0.05  # quick: one call per sample, the smoke test only runs the code
    rows: list[dict] = []
    numba_ok = ul._engines.load_numba() is not None
    per_dtype: dict[tuple, float] = {}
    for dtype in dtypes:
        for n in sizes:
            rng = np.random.default_rng(n)
            U = ul.random_unitary(n, dtype=dtype, rng=rng)
            t_copy = measure(U.copy, repeats=reps, min_time=mt)
            for k in ranks:
                if k > n:
                    continue
                A, B = lowrank_factors(n, n, k, dtype, rng, norm=0.05)
                W = U.copy()
                fast = {
                    "polar": lambda: ul.project(U, A, B),
                    "exp": lambda: ul.transport(U, A, B),
                    "cayley": lambda: ul.retract(U, A, B, method="cayley"),
                }
                times = {m: measure(f, repeats=reps, min_time=mt) for m, f in fast.items()}
                t_fresh = {}
                if quick or U.nbytes >= _pool.MIN_BYTES:  # smaller results are never pooled
                    with without_result_pool():
                        t_fresh = {m: measure(fast[m], repeats=reps, min_time=mt)
                                   for m in ("polar", "exp")}
                # in place, W keeps changing: cycle through fresh steps, as in training (the
                # same step over and over would align Wᴴ A with B, a degenerate case)
                pool = itertools.cycle([lowrank_factors(n, n, k, dtype, rng, norm=0.05)
                                        for _ in range(8)])
                t_inplace = measure(lambda: ul.transport(W, *next(pool), out=W), repeats=reps,
                                    min_time=mt)
                engines = ("array_api", "blas", "numba") if numba_ok else ("array_api", "blas")
                t_eng = {e: {m: measure(lambda m=m, e=e: ul.retract(U, A, B, method=m, engine=e),
                                        repeats=reps, min_time=mt) for m in ("polar", "exp")}
                         for e in engines}
                t_peer = measure(lambda: wen_yin_cayley(U, A, B), repeats=reps, min_time=mt)
                dense = _dense(U, A, B) if n <= dense_max_n else {}
                big = n > 2048  # one sample of the dense baselines beyond n = 2048
                # an O(n³) dense update costs the same whatever the rank of the step:
                # timed once per (dtype, n), its accuracy compared for every k
                if k == ranks[0]:
                    t_dense = {m: measure(f, repeats=1 if big else max(2, min(3, reps)),
                                          warmup=0 if big else 1, min_time=0.0)
                               for m, f in dense.items()}
                for m in ("polar", "exp", "cayley"):
                    X = fast[m]()
                    ratios = {"over_copy": times[m] / t_copy}
                    if m in t_fresh:
                        ratios["pool_off_over_on"] = t_fresh[m] / times[m]
                    if m in t_dense:
                        ratios["dense_over_lowrank"] = t_dense[m] / times[m]
                    if m in t_eng["blas"]:
                        ratios["blas_over_array"] = t_eng["blas"][m] / t_eng["array_api"][m]
                        if "numba" in t_eng:
                            ratios["numba_over_array"] = (t_eng["numba"][m]
                                                          / t_eng["array_api"][m])
                            ratios["numba_over_blas"] = t_eng["numba"][m] / t_eng["blas"][m]
                    if m == "exp":
                        ratios["inplace_over_copy"] = t_inplace / t_copy
                    if m == "cayley":
                        ratios["wen_yin_over_ours"] = t_peer / times[m]
                    acc = {"unitarity_error": float(ul.unitarity_error(X))}
                    if m in dense and n <= 1024:
                        acc["max_abs_diff_dense"] = float(np.max(np.abs(X - dense[m]())))
                    if m == "cayley":
                        acc["max_abs_diff_wen_yin"] = float(np.max(np.abs(
                            X - wen_yin_cayley(U, A, B))))
                    per_dtype[(dtype, n, k, m)] = times[m]
                    rows.append({
                        "section": "updates",
                        "case": f"{m} n={n} k={k} {dtype}",
                        "params": {"method": m, "n": n, "k": k, "dtype": dtype,
                                   "copy_s": t_copy, "inplace_s": t_inplace,
                                   "pool_off_s": t_fresh.get(m),
                                   "dense_s": t_dense.get(m),
                                   **{f"{e}_s": t.get(m) for e, t in t_eng.items()}, **acc},
                        "time_s": times[m],
                        "ratios": ratios,
                    })
    for row in rows:  # float64 time over float32 time at the same n, k, method
        p = row["params"]
        if p["dtype"] == "float32" and ("float64", p["n"], p["k"], p["method"]) in per_dtype:
            row["ratios"]["float64_over_float32"] = (
                per_dtype[("float64", p["n"], p["k"], p["method"])] / row["time_s"])
    return rows
