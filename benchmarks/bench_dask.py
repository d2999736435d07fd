"""A rank-1 update of a Dask U chunked by rows, against a copy of U on the same cluster.

U (n×n, float32 and float64, n = 8192: 256 and 512 MiB) is persisted on a
``dask.distributed.LocalCluster`` of 2 single-threaded worker processes, in chunks
of 1024 rows. Timed from the call to the moment the result is persisted on the
workers (``client.persist`` then ``wait``), as medians of 9 rounds after a warm-up
round, each round timing the three in turn (so that all see the same share of
whatever else runs on the machine):

- ``copy``: ``U + 0`` (0 as a 0-d Dask array), one read and one write of U, the
  floor of any update that returns a new U (the ``U.copy()`` of a cluster);
- ``project`` and ``transport``: the rank-1 updates of :mod:`unitary_lowrank`,
  graph construction included. They read U twice (``Uᴴ A``, then each chunk of
  rows once for ``U + (U Q)(F − I)Qᴴ``) and write it once; between the two passes
  O(n) numbers go to one worker and back (the k×k core).

``over_copy`` is the ratio (target: at most :data:`TARGET`). Each row also has the
number of tasks of the update's graph and of the copy's, the largest chunk of the
update's graph in entries (n·1024 is one chunk of U), and the error of the result
against the NumPy update of the same matrices.

U is the Kronecker product of two Haar-random orthogonal matrices (64×64 and
128×128), so that it is orthogonal with no zero entries, and each chunk is built
on its worker.
"""

from __future__ import annotations

import math
import time

import numpy as np

import unitary_lowrank as ul

__all__ = ["TARGET", "run"]

#: ``over_copy`` target of the update.
TARGET = 3.0
N, ROWS, INNER = 8192, 1024, 128


def _kron_rows(q1: np.ndarray, q2: np.ndarray, block_info=None) -> np.ndarray:
    """Rows r0..r1 of ``kron(q1, q2)`` (whole blocks of q2's rows)."""
    (r0, r1), _ = block_info[None]["array-location"]
    m = q2.shape[0]
    return np.kron(q1[r0 // m: r1 // m], q2)


def _unitary(n: int, rows: int, dtype: str):
    import dask.array as da

    inner = min(INNER, rows)
    q1 = ul.random_unitary(n // inner, dtype=dtype, rng=0)
    q2 = ul.random_unitary(inner, dtype=dtype, rng=1)
    chunks = ((rows,) * (n // rows), (n,))
    return da.map_blocks(_kron_rows, q1, q2, chunks=chunks, dtype=dtype,
                         meta=np.empty((0, 0), dtype=dtype))


def _persist_time(client, make) -> float:
    """Seconds from ``make()`` to its result persisted on the workers."""
    from distributed import wait

    start = time.perf_counter()
    X = client.persist(make())
    wait(X)
    elapsed = time.perf_counter() - start
    del X
    return elapsed


def _interleaved_medians(client, makes: dict, repeats: int) -> dict:
    """Median persist time of each of `makes`, sampled in turn (after one warm-up round).

    Interleaving gives every variant the same share of the machine's other load, so
    that their ratios hold even when the load changes during the run.
    """
    samples: dict = {name: [] for name in makes}
    for round_ in range(repeats + 1):
        for name, make in makes.items():
            t = _persist_time(client, make)
            if round_:
                samples[name].append(t)
    return {name: float(np.median(ts)) for name, ts in samples.items()}


def _largest_chunk(x) -> int:
    largest = 0
    for layer in x.__dask_graph__().layers.values():
        chunks = (layer.collection_annotations or {}).get("chunks")
        if chunks:
            largest = max(largest, math.prod(max(c, default=0) for c in chunks))
    return largest


def _rows(client, n: int, rows: int, dtype: str, repeats: int, quick: bool) -> list[dict]:
    """The rows of one dtype, with U persisted on the cluster meanwhile."""
    import dask.array as da

    U = client.persist(_unitary(n, rows, dtype))
    rng = np.random.default_rng(0)
    A = (0.1 * rng.standard_normal((n, 1))).astype(dtype)
    B = (rng.standard_normal((n, 1)) / math.sqrt(n)).astype(dtype)
    # name=False: fresh keys at every call, so that no result of an earlier sample
    # is found still in the workers' memory
    zero = np.zeros((), dtype=dtype)
    calls = {"project": ul.project, "transport": ul.transport}
    makes = {"copy": lambda: U + da.from_array(zero, name=False)}
    for name, f in calls.items():
        makes[name] = lambda f=f: f(U, da.from_array(A, name=False), da.from_array(B, name=False))
    times = _interleaved_medians(client, makes, repeats)
    Un = U.compute() if quick else None  # the full-size check would need U on the host
    out = []
    for name, f in calls.items():
        X = f(U, da.from_array(A), da.from_array(B))
        params = {"n": n, "k": 1, "dtype": dtype, "rows_per_chunk": rows, "workers": 2,
                  "copy_s": times["copy"], "tasks": len(X.__dask_graph__()),
                  "copy_tasks": len((U + 0).__dask_graph__()),
                  "largest_chunk": _largest_chunk(X), "target_over_copy": TARGET}
        if Un is not None:
            params["max_abs_diff_numpy"] = float(np.max(np.abs(X.compute() - f(Un, A, B))))
        out.append({"section": "dask", "case": f"{name} n={n} k=1 {dtype}", "params": params,
                    "time_s": times[name], "ratios": {"over_copy": times[name] / times["copy"]}})
    return out


def run(quick: bool) -> list[dict]:
    """Benchmark rows (see the module docstring); `quick`: n = 256, 64-row chunks, one sample."""
    from distributed import Client, LocalCluster

    n, rows = (256, 64) if quick else (N, ROWS)
    repeats = 1 if quick else 9
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        return [row for dtype in ("float32", "float64")
                for row in _rows(client, n, rows, dtype, repeats, quick)]


if __name__ == "__main__":
    for row in run(quick=False):
        print(row["case"], f"{row['time_s']:.3f} s", f"over_copy {row['ratios']['over_copy']:.2f}",
              f"tasks {row['params']['tasks']}/{row['params']['copy_tasks']}")
