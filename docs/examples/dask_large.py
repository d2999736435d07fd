r"""Train an orthogonal matrix larger than any one worker's memory, on a Dask cluster.

U (n×n, float64 by default: n = 16384 is 2 GiB) is a ``dask.array`` chunked by rows
(``--rows`` rows per chunk) and persisted on a ``LocalCluster`` of ``--workers``
worker processes, each with a memory limit (``--memory-limit``, 1.5 GiB by
default) below the size of U: no worker could hold it, and none ever does. U
starts from the identity, built chunk by chunk on the workers (no O(n³)
initialisation, nothing of size n² on the client).

The task: fit a hidden rotation ``T = I + V (R − I) Vᵀ`` (V: n×k orthonormal, R a
k×k rotation; T is never formed) on batches of b inputs Z lying near the span of V,
with the loss of a linear layer,

    loss(U) = ½ ‖U Z − T Z‖_F²,     ∇loss = (U Z − T Z) Zᵀ = E Zᵀ,

whose gradient comes as the factors ``(E, Z)`` (n×b each, never multiplied out).
Each step is :func:`unitary_lowrank.step` with that factored gradient: a rank-k
sketch of the factors, then the retraction ``U + (U Q)(F − I) Qᴴ``. Per step the
workers read U three times (``E = U Z``, then ``Uᴴ A`` and the update, which also
writes the new U) and exchange O(n·(b + k)) numbers; U itself never moves. Each
step prints the relative loss ``‖U Z − T Z‖_F / ‖T Z‖_F`` on its batch and its wall
time; at the end, the probe estimate of ``‖UᵀU − I‖₂``
(:func:`unitary_lowrank.unitarity_error` with ``method="probe"``, computed row
block by row block; the exact method would need U's n×n Gram matrix in one
place, and refuses) and the distance ``‖U V − T V‖_F / √k`` to the target on its
subspace.

Run::

    python docs/examples/dask_large.py                    # n = 16384 float64, 4 workers
    python docs/examples/dask_large.py --n 512 --rows 128 --steps 3 --workers 2 \
        --memory-limit 500MiB

The memory a step needs on a worker is its rows of U plus about one chunk: the new
U is persisted and the old one dropped in the same statement, so each old chunk is
released as soon as its new chunk is written.
"""

from __future__ import annotations

import argparse
import math
import time


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--n", type=int, default=16384, help="size of U")
    p.add_argument("--rows", type=int, default=1024, help="rows of U per chunk")
    p.add_argument("--steps", type=int, default=5, help="training steps")
    p.add_argument("--rank", type=int, default=4, help="rank k of the target and of each step")
    p.add_argument("--batch", type=int, default=8, help="inputs b per step")
    p.add_argument("--lr", type=float, default=0.5, help="learning rate")
    p.add_argument("--method", default="exp", choices=("exp", "polar", "cayley"))
    p.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    p.add_argument("--workers", type=int, default=4, help="worker processes")
    p.add_argument("--memory-limit", default="1.5GiB", help="memory limit of each worker")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.n < 2 * args.rank or args.rank < 2 or args.rank % 2:
        p.error("--rank must be even, at least 2 and at most n/2")
    if not 1 <= args.rows <= args.n:
        p.error("--rows must be in [1, n]")
    return args


def identity(n: int, rows: int, dtype: str):
    """The n×n identity as a dask array of row blocks, each built on a worker."""
    import dask.array as da
    import numpy as np

    def block(block_info=None):
        (r0, r1), _ = block_info[None]["array-location"]
        out = np.zeros((r1 - r0, n), dtype=dtype)
        out[np.arange(r1 - r0), np.arange(r0, r1)] = 1
        return out

    return da.map_blocks(block, chunks=((rows,) * (n // rows) + ((n % rows,) if n % rows
                                                                 else ()), (n,)),
                         dtype=dtype, meta=np.empty((0, 0), dtype=dtype))


def target(n: int, k: int, rows: int, dtype: str, seed: int):
    """``(V, R)``: V n×k orthonormal (one chunk), R a k×k rotation by k/2 plane angles."""
    import dask.array as da
    import numpy as np

    rng = da.random.default_rng(seed)
    V, _ = da.linalg.qr(rng.standard_normal((n, k), chunks=(rows, k)).astype(dtype))
    V = V.rechunk((n, k))  # n×k numbers: one chunk, which U @ V multiplies by U's row blocks
    angles = np.linspace(0.2, 0.6, k // 2)
    R = np.zeros((k, k))
    for j, a in enumerate(angles):
        c, s = math.cos(a), math.sin(a)
        R[2 * j: 2 * j + 2, 2 * j: 2 * j + 2] = [[c, -s], [s, c]]
    return V, R.astype(dtype)


def main(argv=None) -> None:
    """Start the cluster, train, check unitarity, print the figures."""
    args = parse_args(argv)
    import dask.array as da
    import numpy as np
    from dask.utils import format_bytes, parse_bytes
    from distributed import Client, LocalCluster, wait

    import unitary_lowrank as ul

    n, k, b, dtype = args.n, args.rank, args.batch, args.dtype
    size = n * n * np.dtype(dtype).itemsize
    limit = parse_bytes(args.memory_limit)
    print(f"U: {n}x{n} {dtype}, {format_bytes(size)} in chunks of {args.rows} rows "
          f"({format_bytes(args.rows * n * np.dtype(dtype).itemsize)}); {args.workers} "
          f"workers with a memory limit of {format_bytes(limit)} each"
          + (" (below the size of U)" if limit < size else ""))
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      memory_limit=limit, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        V, R = target(n, k, args.rows, dtype, args.seed)
        V = client.persist(V)
        U = client.persist(identity(n, args.rows, dtype))
        wait([U, V])
        rng = np.random.default_rng(args.seed + 1)
        times = []
        for step in range(1, args.steps + 1):
            # inputs near the target's subspace: Z = V C + noise, ZZᵀ ≈ VVᵀ + small
            C = rng.standard_normal((k, b)) / math.sqrt(b)
            noise = da.random.default_rng(args.seed + 100 + step).standard_normal(
                (n, b), chunks=(n, b)) * (0.1 / math.sqrt(n))
            Z = client.persist(V @ C.astype(dtype) + noise.astype(dtype))
            TZ = Z + V @ ((R - np.eye(k, dtype=dtype)) @ (V.T @ Z))  # T Z, T never formed
            E = client.persist(U @ Z - TZ)
            loss = float(da.linalg.norm(E) / da.linalg.norm(TZ))
            t0 = time.perf_counter()
            # the old U is dropped as the new one is persisted: its chunks go as used
            U = client.persist(ul.step(U, (E, Z), args.lr, rank=k, method=args.method,
                                       rng=step))
            wait(U)
            times.append(time.perf_counter() - t0)
            print(f"step {step:3d}  time {times[-1]:7.3f} s  relative loss {loss:.6e}")
        err = float(ul.unitarity_error(U, method="probe", rng=0).compute())
        dist = float(da.linalg.norm(U @ V - V @ R) / math.sqrt(k))
        print(f"median step time {sorted(times)[len(times) // 2]:.3f} s")
        print(f"distance to the target on its subspace {dist:.6e}")
        print(f"unitarity error (probe) {err:.6e}")


if __name__ == "__main__":
    main()
