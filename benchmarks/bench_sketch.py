"""Sketching a gradient to rank k: factored (X, Y) input against forming G, and the samplers.

Section "factored vs dense": a gradient ``G = X Yᴴ`` with m = n = 2048 and
r = 256 (batch × time outer products), rank 4, float64 and float32.
:func:`unitary_lowrank.lowrank` on the factors (never forms G) against forming
``G = X @ Yᴴ`` and sketching the dense G with the same defaults (oversample 10,
2 power iterations). The ratio ``dense_over_factored`` is the speed-up. Both
rows also report the Frobenius error over the optimal rank-k error (exact,
from a QR of the factors and a 256×256 SVD), so a fast wrong answer cannot hide.

Section "samplers": a dense 512×512 gradient with a 1/i spectrum, rank 4:
the randomized default, the paper's LSI and column sampling, against a full
``numpy.linalg.svd`` (the exact truncated SVD), with their error ratios.

``quick=True`` shrinks every size (m = n = 64, r = 16) for the CI smoke test.
All variants of a section run in the same process on the same data; times are
medians after a warm-up (``benchmarks._timing.measure``).
"""

from __future__ import annotations

import numpy as np

import unitary_lowrank as ul
from benchmarks._timing import measure

__all__ = ["run"]


def _optimal_error_factored(X: np.ndarray, Y: np.ndarray, k: int) -> float:
    """Optimal rank-k Frobenius error of X Yᴴ from the factors (double precision)."""
    wide = np.complex128 if np.iscomplexobj(X) else np.float64
    _, Rx = np.linalg.qr(X.astype(wide))
    _, Ry = np.linalg.qr(Y.astype(wide))
    s = np.linalg.svd(Rx @ Ry.conj().T, compute_uv=False)
    return float(np.sqrt(np.sum(s[k:] ** 2)))


def _error_factored(X, Y, A, B) -> float:
    """‖X Yᴴ − A Bᴴ‖_F without forming either product: via QRs of [X, −A] and [Y, B]."""
    wide = np.complex128 if np.iscomplexobj(X) else np.float64
    _, R1 = np.linalg.qr(np.concatenate([X, -A], axis=1).astype(wide))
    _, R2 = np.linalg.qr(np.concatenate([Y, B], axis=1).astype(wide))
    return float(np.linalg.norm(R1 @ R2.conj().T))


def _factored_section(quick: bool) -> list[dict]:
    m = n = 64 if quick else 2048
    r, k = (16, 4) if quick else (256, 4)
    repeats, warmup = (3, 1) if quick else (5, 1)
    rows = []
    for dtype in ("float64", "float32"):
        rng = np.random.default_rng(0)
        # gradient-like: outer products whose weights decay (later time steps matter less)
        w = 1.0 / np.sqrt(1.0 + np.arange(r))
        X = (rng.standard_normal((m, r)) * w).astype(dtype)
        Y = rng.standard_normal((n, r)).astype(dtype)

        def dense():
            return ul.lowrank(X @ Y.T, k, rng=1)

        def factored():
            return ul.lowrank((X, Y), k, rng=1)

        t_dense = measure(dense, repeats=repeats, warmup=warmup)
        t_fact = measure(factored, repeats=repeats, warmup=warmup)
        best = _optimal_error_factored(X, Y, k)
        err_dense = _error_factored(X, Y, *dense()) / best
        err_fact = _error_factored(X, Y, *factored()) / best
        params = {"m": m, "n": n, "r": r, "rank": k, "dtype": dtype, "oversample": 10,
                  "n_iter": 2, "backend": "numpy"}
        rows.append({
            "section": "sketch: factored vs dense",
            "case": "form G = X @ Y.T, then lowrank(G)",
            "params": {**params, "error_over_optimal": err_dense},
            "time_s": t_dense,
            "ratios": {"dense_over_factored": t_dense / t_fact},
        })
        rows.append({
            "section": "sketch: factored vs dense",
            "case": "lowrank((X, Y)) (G never formed)",
            "params": {**params, "error_over_optimal": err_fact},
            "time_s": t_fact,
            "ratios": {"dense_over_factored": t_dense / t_fact},
        })
    return rows


def _sampler_section(quick: bool) -> list[dict]:
    n = 64 if quick else 512
    k = 4
    repeats, warmup = (3, 1) if quick else (5, 1)
    rng = np.random.default_rng(2)
    Qa = ul.random_unitary(n, dtype="float64", rng=rng)
    Qb = ul.random_unitary(n, dtype="float64", rng=rng)
    s = 1.0 / np.arange(1, n + 1)
    G = (Qa * s) @ Qb.T
    best = float(np.sqrt(np.sum(s[k:] ** 2)))

    def svd():
        W, sv, Vh = np.linalg.svd(G)
        return W[:, :k] * sv[:k], Vh[:k].T

    variants = {
        "numpy.linalg.svd, truncated (exact)": svd,
        "lowrank randomized (default)": lambda: ul.lowrank(G, k, rng=3),
        "lowrank lsi (paper)": lambda: ul.lowrank(G, k, sampler="lsi", rng=3),
        "lowrank column sampling": lambda: ul.lowrank(G, k, sampler="column", rng=3),
    }
    times = {name: measure(fn, repeats=repeats, warmup=warmup) for name, fn in variants.items()}
    t_svd = times["numpy.linalg.svd, truncated (exact)"]
    rows = []
    for name, fn in variants.items():
        A, B = fn()
        err = float(np.linalg.norm(G - A @ B.T)) / best
        rows.append({
            "section": "sketch: samplers",
            "case": name,
            "params": {"m": n, "n": n, "rank": k, "dtype": "float64", "spectrum": "1/i",
                       "backend": "numpy", "error_over_optimal": err},
            "time_s": times[name],
            "ratios": {"svd_over_this": t_svd / times[name]},
        })
    return rows


def run(quick: bool) -> list[dict]:
    """Benchmark rows (see the module docstring); `quick` uses tiny sizes."""
    return _factored_section(quick) + _sampler_section(quick)


if __name__ == "__main__":  # pragma: no cover - manual run
    import sys

    for row in run("--quick" in sys.argv):
        print(row)
