"""The updates beside a competing busy process: the default engine against serial kernels.

On a machine whose cores are shared (a data loader, another job), a threaded
kernel waits at its end for its slowest thread, which waits for a time slice.
This section measures, in a fresh interpreter that may use every core for
Numba, for each case:

- ``auto``: the default call (``engine="auto"``, default thread setting);
- ``serial``: the same engine with one thread (``set_num_threads(1)``);
- ``threads``: the same engine with ``set_num_threads(os.cpu_count())``;

first on an otherwise idle machine, then with one busy process spinning on a
core. Samples of the three alternate, so that drift in the machine's load
affects all alike; each is a median. Ratios: ``auto / serial`` (the target is
at most 1.3 under contention) and ``threads / serial``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

__all__ = ["run"]

_CHILD = r"""
import json, multiprocessing as mp, os, statistics, sys, time
import numpy as np
import unitary_lowrank as ul
from unitary_lowrank.testing import lowrank_factors

def spin(stop):
    while not stop.is_set():
        pass

def median_times(calls, samples, min_time):
    times = {name: [] for name in calls}
    for _ in range(samples):
        for name, fn in calls.items():
            loops, start = 0, time.perf_counter()
            while True:
                fn(); loops += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_time:
                    break
            times[name].append(elapsed / loops)
    return {name: statistics.median(t) for name, t in times.items()}

def main(cases, samples, min_time):
    cpus = os.cpu_count() or 1
    def with_threads(count, fn):
        def call():
            old = ul.set_num_threads(count)
            try:
                return fn()
            finally:
                ul.set_num_threads(old)
        return call
    rows = []
    for n, k, dtype in cases:
        rng = np.random.default_rng(n)
        U = ul.random_unitary(n, dtype=dtype, rng=rng)
        A, B = lowrank_factors(n, n, k, dtype, rng, norm=0.05)
        engine = "numba" if (k <= 2 and ul._engines.load_numba() is not None) else "blas"
        calls = {
            "auto": lambda: ul.project(U, A, B),
            "serial": with_threads(1, lambda: ul.project(U, A, B, engine=engine)),
            "threads": with_threads(cpus, lambda: ul.project(U, A, B, engine=engine)),
            "copy": U.copy,
        }
        for fn in calls.values():
            fn()  # compile and warm
        for load in ("idle", "busy"):
            stop = mp.get_context("spawn").Event()
            rival = None
            if load == "busy":
                rival = mp.get_context("spawn").Process(target=spin, args=(stop,))
                rival.start()
                time.sleep(0.5)
            try:
                t = median_times(calls, samples, min_time)
            finally:
                if rival is not None:
                    stop.set()
                    rival.join()
            rows.append({"n": n, "k": k, "dtype": dtype, "engine": engine, "load": load,
                         "cpus": cpus, **t})
    print(json.dumps(rows))

if __name__ == "__main__":
    main(json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
"""


def run(quick: bool) -> list[dict]:
    """Rows ``{"section": "contention", ...}``; `quick` is the CI smoke test (tiny, few samples)."""
    cases = [(64, 1, "float64")] if quick else [
        (1024, 1, "float64"), (1024, 4, "float64"), (2048, 1, "float64"), (2048, 4, "float64")]
    samples, min_time = (1, 0.0) if quick else (15, 0.02)
    env = dict(os.environ)
    for var in ("NUMBA_NUM_THREADS", "UNITARY_LOWRANK_NUM_THREADS"):
        env.pop(var, None)  # Numba may use every core; our default decides
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "contention.py")  # a file: the spawned rival imports it
        with open(script, "w", encoding="utf-8") as f:
            f.write(_CHILD)
        out = subprocess.run([sys.executable, script, json.dumps(cases), str(samples),
                              str(min_time)], env=env, capture_output=True, text=True,
                             check=True, timeout=1800).stdout
    rows = []
    for r in json.loads(out):
        rows.append({
            "section": "contention",
            "case": f"project n={r['n']} k={r['k']} {r['dtype']} {r['engine']} {r['load']}",
            "params": r,
            "time_s": r["auto"],
            "ratios": {"auto/serial": r["auto"] / r["serial"],
                       "threads/serial": r["threads"] / r["serial"],
                       "serial/copy": r["serial"] / r["copy"]},
        })
    return rows
