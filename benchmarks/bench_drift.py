"""Drift control: 10⁵ rank-1 steps in float32 at n = 128, with and without the repair policy.

Section "drift": for ``transport`` (step norms log-uniform in [1e-4, 0.1]) and
``project`` (step norms log-uniform in [1e-4, 0.5]), two trajectories from the
same Haar start and the same steps: one without repair, one with
:class:`unitary_lowrank.DriftGuard` (check every 100 steps with the probe
estimate, default tolerance 32·eps = 3.8e-6, Newton–Schulz repair). They are run
in lock-step chunks of 100 steps (the guard is called *before* each update, so
a chunk ends just before the next check), each chunk timed with
``benchmarks._timing.measure`` and the two variants alternating, so both see
the same machine load.

Rows: ``time_s`` is the median time of a 100-step chunk. Ratios:
``extra_time`` = (total guarded time) / (total unguarded time) − 1 (everything
included, but sensitive to load spikes); ``extra_time_median`` = median over the
chunks of (guarded chunk time) / (unguarded chunk time) − 1 (robust to load
spikes; it shows the cost of the checks, not of the rare repairs);
``worst_error`` = largest exact ``unitarity_error`` seen at the chunk ends
(every 100 steps for the guarded run, every 1000 for the unguarded one);
``worst_error_replay`` = largest exact error over an untimed replay of the
guarded trajectory (same seeds, so the same matrices) sampled every 10 steps;
``final_error``; and, for the guarded run, ``checks`` and ``repairs``. Exact
errors are computed between chunks or in the replay, outside the timed region.

Section "drift-dtypes": for each dtype, 10⁴ rank-1 ``transport`` steps at
n = 128 without repair and with the default guard: worst exact error (sampled
every 100 steps), the error of one step from a Haar matrix, and of
``reunitarize`` on the drifted matrix — the accuracy each dtype reaches
(float32/complex64 weights with float64/complex128 small cores).

The steps are a pool of 4096 random unit-vector pairs (drawn once), cycled;
the trajectory still changes every step because the update depends on U.
``quick=True``: n = 16, 2 000 (dtypes: 500) steps, chunks of 50 (a CI smoke
test, seconds). Timings on a shared machine are noisy; OpenBLAS with several
threads on a loaded machine can make small matrix products 100× slower, so run
the full benchmark with ``OPENBLAS_NUM_THREADS=1``.
"""

from __future__ import annotations

import numpy as np

import unitary_lowrank as ul
from benchmarks._timing import measure

__all__ = ["run"]


def _pool(n: int, size: int, max_norm: float, dtype: str, rng: np.random.Generator):
    wide = "complex128" if dtype.startswith("complex") else "float64"
    x = rng.standard_normal((size, n, 1))
    y = rng.standard_normal((size, n, 1))
    if wide == "complex128":
        x = x + 1j * rng.standard_normal((size, n, 1))
        y = y + 1j * rng.standard_normal((size, n, 1))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    norms = 10.0 ** rng.uniform(-4.0, np.log10(max_norm), size)
    return (x * norms[:, None, None]).astype(dtype), y.astype(dtype)


class _Trajectory:
    """A weight updated by a cycled pool of steps, optionally guarded."""

    def __init__(self, U0, A, B, update, guard=None):
        self.U, self.A, self.B, self.update, self.guard = U0.copy(), A, B, update, guard
        self.i = 0

    def advance(self, steps: int):
        U, A, B, f, g, pool = self.U, self.A, self.B, self.update, self.guard, self.A.shape[0]
        for j in range(self.i, self.i + steps):
            U = f(U if g is None else g(U), A[j % pool], B[j % pool])
        self.U, self.i = U, self.i + steps
        return U


def _guard(every: int) -> ul.DriftGuard:
    guard = ul.DriftGuard(every=every, rng=1)
    # The guard is called before each update; starting its counter at every - 1 puts
    # its checks on the first step of each chunk, so a chunk ends just before a check.
    guard.steps = every - 1
    return guard


def _err(U) -> float:
    return float(ul.unitarity_error(U))


def _case(name: str, update, max_norm: float, *, n: int, steps: int, every: int,
          error_every: int, replay_every: int) -> list[dict]:
    rng = np.random.default_rng(0)
    U0 = ul.random_unitary(n, dtype="float32", rng=rng)
    A, B = _pool(n, 4096, max_norm, "float32", rng)
    # Warm-up outside the clock: numba compiles the update kernels on first use (when
    # the core picks them), and the probe and the repair have first-call costs too.
    for _ in range(3):
        W = update(U0, A[0], B[0])
    ul.unitarity_error(W, method="probe", rng=0)
    ul.reunitarize(W)

    plain = _Trajectory(U0, A, B, update)
    guard = _guard(every)
    guarded = _Trajectory(U0, A, B, update, guard)
    t_plain, t_guard = [], []
    worst_plain = worst_guard = 0.0
    for c in range(steps // every):
        # alternate the order so that neither variant always runs first
        pair = [(plain, t_plain), (guarded, t_guard)]
        for traj, times in pair if c % 2 == 0 else pair[::-1]:
            times.append(measure(lambda t=traj: t.advance(every), repeats=1, warmup=0,
                                 min_time=0.0))
        worst_guard = max(worst_guard, _err(guarded.U))
        if (c + 1) % error_every == 0:
            worst_plain = max(worst_plain, _err(plain.U))
    final_plain, final_guard = _err(plain.U), _err(guarded.U)
    worst_plain = max(worst_plain, final_plain)

    # Untimed replay of the guarded run (same seeds: the same matrices), finer sampling.
    replay = _Trajectory(U0, A, B, update, _guard(every))
    worst_replay = 0.0
    for _ in range(steps // replay_every):
        worst_replay = max(worst_replay, _err(replay.advance(replay_every)))
    assert replay.guard.repairs == guard.repairs, "the replay diverged from the timed run"

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
                    "worst_error": worst_guard, "worst_error_replay": worst_replay,
                    "final_error": final_guard,
                    "checks": float(guard.checks), "repairs": float(guard.repairs)}},
    ]


def _dtypes_section(n: int, steps: int, sample: int) -> list[dict]:
    rows = []
    for dtype in ("float32", "complex64", "float64", "complex128"):
        rng = np.random.default_rng(1)
        U0 = ul.random_unitary(n, dtype=dtype, rng=rng)
        A, B = _pool(n, 4096, 0.1, dtype, rng)
        one_step = _err(ul.transport(U0, A[0], B[0]))
        worst = {}
        last = {}
        times = {}
        for label, guard in (("no repair", None), ("DriftGuard", ul.DriftGuard(rng=1))):
            traj = _Trajectory(U0, A, B, ul.transport, guard)
            worst[label] = 0.0
            chunk_times = []
            for _ in range(steps // sample):
                chunk_times.append(measure(lambda t=traj: t.advance(sample), repeats=1,
                                           warmup=0, min_time=0.0))
                worst[label] = max(worst[label], _err(traj.U))
            last[label] = traj.U
            times[label] = float(np.median(chunk_times))
        repaired = _err(ul.reunitarize(last["no repair"]))
        rows.append({
            "section": "drift-dtypes", "case": f"transport {dtype} n={n} {steps} steps",
            "params": {"n": n, "k": 1, "dtype": dtype, "steps": steps, "sample_every": sample},
            "time_s": times["DriftGuard"],
            "ratios": {"one_step_error": one_step, "worst_no_repair": worst["no repair"],
                       "worst_guarded": worst["DriftGuard"], "reunitarized": repaired,
                       "eps": float(np.finfo(dtype).eps)}})
    return rows


def run(quick: bool) -> list[dict]:
    """Rows of the drift sections (see the module docstring)."""
    if quick:
        size = {"n": 16, "steps": 2000, "every": 50, "error_every": 4, "replay_every": 10}
        dt = {"n": 16, "steps": 500, "sample": 50}
    else:
        size = {"n": 128, "steps": 100_000, "every": 100, "error_every": 10,
                "replay_every": 10}
        dt = {"n": 128, "steps": 10_000, "sample": 100}
    rows = _case("transport", ul.transport, 0.1, **size)
    rows += _case("project", ul.project, 0.5, **size)
    rows += _dtypes_section(**dt)
    return rows


if __name__ == "__main__":
    import sys

    for row in run("--quick" in sys.argv):
        print(row["case"], f"{row['time_s']:.3e}",
              {k: float(f"{v:.3g}") for k, v in row["ratios"].items()}, flush=True)
