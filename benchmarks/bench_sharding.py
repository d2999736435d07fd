"""Sharded JAX: a rank-k update of U split by rows over 4 host devices against one device.

JAX reads its number of CPU devices from ``XLA_FLAGS`` when it is imported, so
:func:`run` starts one subprocess (this module with ``--worker``) with
``--xla_force_host_platform_device_count=4`` and reads its rows back as JSON. In it,
for n = 4096 and 8192, float32 and float64, rank k = 1 and 4, all on the same data:

- ``jax.jit(ul.transport)`` and ``jax.jit(ul.project)`` of U on one device (device 0)
  and of U sharded by rows over the 4 devices (``NamedSharding(mesh, P("rows",
  None))``, A and B likewise): ``sharded_over_single``;
- ``jax.jit(lambda U: U + 0)`` of each, the memory floor of one pass over U:
  ``single_over_copy`` and ``sharded_over_copy``;
- the largest collective of the compiled sharded update (entries of its largest
  array, from the HLO text) against the n² entries of U, and the largest difference
  between the sharded and the single-device result.

U is ``transport(I, A₀, B₀)`` (a rank-8 rotation of the identity), built by the jit on
the devices: no O(n³) Haar draw. Medians of 9 samples, the single-device and the
sharded samples taken in turns (:func:`_alternating`). The 4 host devices are threads
of one process and share the machine's cores (2 on the machine of
``docs/sharding.md``), so the ratio shows the cost of partitioning and of the
collectives, not a speed-up from more hardware.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["run"]

SIZES = (4096, 8192)
RANKS = (1, 4)
DTYPES = ("float32", "float64")
METHODS = ("transport", "project")
DEVICES = 4
ROOT = Path(__file__).resolve().parents[1]


def run(quick: bool) -> list[dict]:
    """Benchmark rows (see the module docstring); `quick`: n = 64, k = 1, float32, one sample."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (f"{env.get('XLA_FLAGS', '')} "
                        f"--xla_force_host_platform_device_count={DEVICES}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "benchmarks.bench_sharding", "--worker"]
    if quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)
    if out.returncode != 0:
        raise RuntimeError(f"sharding benchmark worker failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _largest_collective(hlo: str) -> int:
    """Entries of the largest array that a collective of the HLO text produces."""
    pattern = (r"=\s*(\([^=]*?\)|\S+)\s+(?:all-gather|all-reduce|reduce-scatter|all-to-all|"
               r"collective-permute)(?:-start)?\(")
    sizes = [math.prod(int(d) for d in dims.split(",") if d)
             for m in re.finditer(pattern, hlo)
             for dims in re.findall(r"[a-z]+\d*\[([\d,]*)\]", m.group(1))]
    return max(sizes, default=0)


def _alternating(calls: dict, reps: int) -> dict:
    """Median seconds of each call, its samples taken in turns (one of each per round).

    On a shared machine the load changes over seconds; taking the samples of the
    variants in turns exposes them to the same load, so their ratio is fairer than
    that of two separate runs. One untimed call of each first (compilation, caches).
    """
    for fn in calls.values():
        fn()
    samples: dict = {name: [] for name in calls}
    for _ in range(reps):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in samples.items()}


def _worker(quick: bool) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, SingleDeviceSharding
    from jax.sharding import PartitionSpec as P

    import unitary_lowrank as ul

    devices = jax.devices("cpu")
    if len(devices) < DEVICES:
        raise RuntimeError(f"JAX sees {len(devices)} CPU devices, {DEVICES} needed")
    mesh = Mesh(np.array(devices[:DEVICES]), ("rows",))
    rows_sharding = NamedSharding(mesh, P("rows", None))
    one = SingleDeviceSharding(devices[0])
    sizes, ranks, dtypes = ((64,), (1,), ("float32",)) if quick else (SIZES, RANKS, DTYPES)
    methods = METHODS[:1] if quick else METHODS
    reps = 1 if quick else 9
    old_x64 = bool(jax.config.jax_enable_x64)
    out: list[dict] = []
    try:
        for dtype in dtypes:
            jax.config.update("jax_enable_x64", dtype == "float64")
            for n in sizes:
                out += _size(n, dtype, ranks, methods, reps, jax, jnp, np, ul,
                             rows_sharding, one)
    finally:
        jax.config.update("jax_enable_x64", old_x64)
    return out


def _size(n, dtype, ranks, methods, reps, jax, jnp, np, ul, rows_sharding, one):
    """The rows of one size and dtype (U built once, on the devices, for both placements)."""
    rng = np.random.default_rng(n)
    A0 = (rng.standard_normal((n, 8)) / math.sqrt(n)).astype(dtype)
    B0 = rng.standard_normal((n, 8)).astype(dtype)

    def build(sharding):
        @jax.jit
        def make(A0, B0):
            eye = jax.lax.with_sharding_constraint(jnp.eye(n, dtype=dtype), sharding)
            return ul.transport(eye, A0, B0)
        return make(jax.device_put(A0, sharding), jax.device_put(B0, sharding))

    placements = {"single": one, "sharded": rows_sharding}
    U = {p: build(s) for p, s in placements.items()}
    copy = jax.jit(lambda U: U + 0)
    t_copy = _alternating({p: (lambda p=p: copy(U[p]).block_until_ready()) for p in placements},
                          reps)
    rows = []
    for k in ranks:
        A = (0.05 * rng.standard_normal((n, k)) / math.sqrt(n)).astype(dtype)
        B = rng.standard_normal((n, k)).astype(dtype)
        for method in methods:
            fn = jax.jit(ul.transport if method == "transport" else ul.project)
            args = {p: (U[p], jax.device_put(A, s), jax.device_put(B, s))
                    for p, s in placements.items()}
            compiled = {p: fn.lower(*args[p]).compile() for p in placements}
            t = _alternating({p: (lambda p=p: compiled[p](*args[p]).block_until_ready())
                              for p in placements}, reps)
            res = {p: compiled[p](*args[p]) for p in placements}
            kept = bool(res["sharded"].sharding.is_equivalent_to(rows_sharding, 2))
            # shard by shard against the same rows of the single-device result (no host copy
            # of the whole of U)
            diff = max(float(np.max(np.abs(np.asarray(sh.data)
                                           - np.asarray(res["single"][sh.index]))))
                       for sh in res["sharded"].addressable_shards)
            del res
            params = {"n": n, "k": k, "dtype": dtype, "method": method,
                      "devices": len(rows_sharding.mesh.devices.flat),
                      "single_s": t["single"], "sharded_s": t["sharded"],
                      "copy_single_s": t_copy["single"], "copy_sharded_s": t_copy["sharded"],
                      "largest_collective": _largest_collective(compiled["sharded"].as_text()),
                      "u_entries": n * n, "max_abs_diff_single": diff,
                      "result_sharded_by_rows": kept}
            ratios = {"sharded_over_single": t["sharded"] / t["single"],
                      "single_over_copy": t["single"] / t_copy["single"],
                      "sharded_over_copy": t["sharded"] / t_copy["sharded"]}
            rows.append({"section": "sharding", "case": f"{method} n={n} k={k} {dtype}",
                         "params": params, "time_s": t["sharded"], "ratios": ratios})
            print(f"[sharding] {method} n={n} k={k} {dtype}: single {t['single']:.4f} s, "
                  f"sharded {t['sharded']:.4f} s", file=sys.stderr, flush=True)
    return rows


if __name__ == "__main__":
    if "--worker" not in sys.argv:
        raise SystemExit("usage: python -m benchmarks.run --sections sharding")
    print(json.dumps(_worker("--quick" in sys.argv)))
