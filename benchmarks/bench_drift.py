"""Drift control: 10⁵ rank-1 steps in float32 at n = 128, with and without the repair policy.

Section "drift": for ``transport`` (step norms log-uniform in [1e-4, 0.1]) and
``project`` (step norms log-uniform in [1e-4, 0.5]), two trajectories from the
same Haar start and the same steps: one without repair, one with
:class:`unitary_lowrank.DriftGuard` (check every 100 steps with the probe
estimate, default tolerance 32·eps = 3.8e-6, Newton–Schulz repair). They are run
in lock-step chunks of 100 steps (the guard is called *before* each update, so
a chunk ends just before the next check: the error at a chunk's end is the peak
the policy allows), each chunk timed with ``benchmarks._timing.measure`` and the
two variants alternating, so both see the same machine load.

Rows: ``time_s`` is the median time of a 100-step chunk. Ratios:
``extra_time`` = (total guarded time) / (total unguarded time) − 1 (everything
included, but sensitive to load spikes); ``extra_time_median`` = median over the
chunks of (guarded chunk time) / (unguarded chunk time) − 1 (robust to load
spikes; it shows the cost of the checks, not of the rare repairs);
``worst_error`` = largest exact ``unitarity_error`` seen at the chunk ends
(every 100 steps for the guarded run, every 1000 for the unguarded one);
``final_error``; and, for the guarded run, ``checks`` and ``repairs``.
Exact errors are computed between chunks, outside the timed region.

The steps are a pool of 4096 random unit-vector pairs (drawn once, float32),
cycled; the trajectory still changes every step because the update depends on U.
``quick=True``: n = 16, 2 000 steps, chunks of 50 (a CI smoke test, seconds).
Timings on a shared machine are noisy; OpenBLAS with several threads on a
loaded machine can make small matrix products 100× slower, so run the full
benchmark with ``OPENBLAS_NUM_THREADS=1``.
"""

from __future__ import annotations

import numpy as np

import unitary_lowrank as ul
from benchmarks._timing import measure

__all__ = ["run"]


def _pool(n: int, size: int, max_norm: float, rng: np.random.Generator):
    x = rng.standard_normal((size, n, 1))
    y = rng.standard_normal((size, n, 1))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    norms = 10.0 ** rng.uniform(-4.0, np.log10(max_norm), size)
    return (x * norms[:, None, None]).astype(np.float32), y.astype(np.float32)


def _case(name: str, update, max_norm: float, *, n: int, steps: int, every: int,
          error_every: int) -> list[dict]:
    rng = np.random.default_rng(0)
    U0 = ul.random_unitary(n, dtype="float32", rng=rng)
    A, B = _pool(n, 4096, max_norm, rng)
    state = {"plain": U0.copy(), "guarded": U0.copy(), "i_plain": 0, "i_guarded": 0}
    guard = ul.DriftGuard(every=every, rng=1)
    # The guard is called before each update; starting its counter at every - 1 puts
    # its checks on the first step of each chunk, so a chunk ends just before a check.
    guard.steps = every - 1
    pool = A.shape[0]

    def plain_chunk():
        U, i = state["plain"], state["i_plain"]
        for j in range(i, i + every):
            U = update(U, A[j % pool], B[j % pool])
        state["plain"], state["i_plain"] = U, i + every
        return U

    def guarded_chunk():
        U, i = state["guarded"], state["i_guarded"]
        for j in range(i, i + every):
            U = update(guard(U), A[j % pool], B[j % pool])
        state["guarded"], state["i_guarded"] = U, i + every
        return U

    # Warm-up outside the clock: numba compiles the update kernels on first use, and
    # the probe and the repair have first-call costs too.
    for _ in range(3):
        W = update(U0, A[0], B[0])
    ul.unitarity_error(W, method="probe", rng=0)
    ul.reunitarize(W)

    t_plain, t_guard = [], []
    worst_plain = worst_guard = 0.0
    for c in range(steps // every):
        # alternate the order so that neither variant always runs first
        first, second = (plain_chunk, guarded_chunk) if c % 2 == 0 else (guarded_chunk,
                                                                          plain_chunk)
        ta = measure(first, repeats=1, warmup=0, min_time=0.0)
        tb = measure(second, repeats=1, warmup=0, min_time=0.0)
        tp, tg = (ta, tb) if c % 2 == 0 else (tb, ta)
        t_plain.append(tp)
        t_guard.append(tg)
        worst_guard = max(worst_guard, float(ul.unitarity_error(state["guarded"])))
        if (c + 1) % error_every == 0:
            worst_plain = max(worst_plain, float(ul.unitarity_error(state["plain"])))
    final_plain = float(ul.unitarity_error(state["plain"]))
    final_guard = float(ul.unitarity_error(state["guarded"]))
    worst_plain = max(worst_plain, final_plain)
    params = {"n": n, "k": 1, "dtype": "float32", "steps": steps, "every": every,
              "max_step_norm": max_norm, "tol": guard.tolerance(U0)}
    return [
        {"section": "drift", "case": f"{name} no repair", "params": params,
         "time_s": float(np.median(t_plain)),
         "ratios": {"worst_error": worst_plain, "final_error": final_plain}},
        {"section": "drift", "case": f"{name} DriftGuard", "params": params,
         "time_s": float(np.median(t_guard)),
         "ratios": {"extra_time": float(np.sum(t_guard) / np.sum(t_plain) - 1.0),
                    "extra_time_median": float(np.median(np.divide(t_guard, t_plain)) - 1.0),
                    "worst_error": worst_guard, "final_error": final_guard,
                    "checks": float(guard.checks), "repairs": float(guard.repairs)}},
    ]


def run(quick: bool) -> list[dict]:
    """Rows of the drift section (see the module docstring)."""
    if quick:
        size = {"n": 16, "steps": 2000, "every": 50, "error_every": 4}
    else:
        size = {"n": 128, "steps": 100_000, "every": 100, "error_every": 10}
    rows = _case("transport", ul.transport, 0.1, **size)
    rows += _case("project", ul.project, 0.5, **size)
    return rows


if __name__ == "__main__":
    import sys

    for row in run("--quick" in sys.argv):
        print(row["case"], f"{row['time_s']:.3e}",
              {k: float(f"{v:.3g}") for k, v in row["ratios"].items()}, flush=True)
