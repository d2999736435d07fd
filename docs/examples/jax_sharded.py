"""Train an orthogonal matrix split by rows over 4 JAX devices, by rank-k steps.

U (n×n, float32 by default) lives on a mesh of 4 devices, each holding n/4 of its
rows (``NamedSharding(mesh, P("rows", None))``); it starts from the identity, built
in place on the devices, so no O(n³) initialisation and no copy of U on one device
is ever needed. The task: fit a hidden rotation ``W* = transport(I, A*, B*)`` (a
rank-r rotation of the identity, also built sharded) on b unit-norm inputs X,

    loss(U) = ‖U X − W* X‖_F²,     ∇loss = 2 (U X − W* X) Xᵀ = R Xᵀ,

whose gradient comes as the factors ``(R, X)`` (n×b each, never multiplied out), as
the gradient of a linear layer does. Each step is one ``jax.jit`` of
:func:`unitary_lowrank.step` with that factored gradient: a rank-k sketch, then the
retraction, in O(n²k) work and O(n·k) numbers exchanged between the devices; the
result keeps U's sharding. Every ``--log-every`` steps it prints the loss and the probe
estimate of ``‖UᵀU − I‖₂`` (:func:`unitary_lowrank.unitarity_error` with
``method="probe"``, O(n²) and, here too, no gather of U), also jitted.

At the start it prints the collectives of the compiled step (from its HLO text) with
their largest array, to compare with the n² entries of U: on 4 devices the step
exchanges blocks of n×b, n×2k and n×(k + oversample) entries, never U.

JAX reads the number of CPU devices from ``XLA_FLAGS`` when it is imported, so the
script sets ``--xla_force_host_platform_device_count`` itself, before importing JAX
(on a machine with 4 accelerators, the mesh uses them instead: pass ``--platform``).

Run::

    python docs/examples/jax_sharded.py                       # n = 4096, 100 steps
    python docs/examples/jax_sharded.py --n 64 --steps 6 --log-every 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (checked: sizes that do not fit give a usage error)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--n", type=int, default=4096, help="size of U (a multiple of --devices)")
    p.add_argument("--steps", type=int, default=100, help="training steps")
    p.add_argument("--rank", type=int, default=4, help="rank k of each step")
    p.add_argument("--batch", type=int, default=16, help="number b of training inputs")
    p.add_argument("--target-rank", type=int, default=4, help="rank r of the hidden rotation")
    p.add_argument("--lr", type=float, default=0.2, help="learning rate")
    p.add_argument("--method", default="exp", choices=("exp", "polar", "cayley"))
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--devices", type=int, default=4, help="devices of the mesh")
    p.add_argument("--platform", default="cpu", help="JAX platform of the mesh's devices")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the run's figures to this file")
    args = p.parse_args(argv)
    for name in ("n", "steps", "rank", "batch", "target_rank", "devices", "log_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.n % args.devices:
        p.error(f"--n must be a multiple of --devices ({args.devices}), got {args.n}")
    if max(args.rank, args.batch, args.target_rank) > args.n:
        p.error("--rank, --batch and --target-rank must be <= --n")
    return args


def collectives(hlo: str) -> list[tuple[str, str, int]]:
    """``(op, result shape, entries)`` of every collective in a compiled HLO module's text."""
    found = []
    pattern = (r"=\s*(\([^=]*?\)|\S+)\s+(all-gather|all-reduce|reduce-scatter|all-to-all|"
               r"collective-permute)(?:-start)?\(")
    for m in re.finditer(pattern, hlo):
        sizes = [math.prod(int(d) for d in dims.split(",") if d)
                 for dims in re.findall(r"[a-z]+\d*\[([\d,]*)\]", m.group(1))]
        found.append((m.group(2), m.group(1), max(sizes, default=0)))
    return found


def main(argv=None) -> dict:
    """Train, print the log, return (and optionally write) the run's figures."""
    args = parse_args(argv)
    if args.platform == "cpu":
        flag = f"--xla_force_host_platform_device_count={args.devices}"
        if "jax" in sys.modules and flag not in os.environ.get("XLA_FLAGS", ""):
            raise SystemExit("JAX is already imported: run this script as a program")
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    import unitary_lowrank as ul

    old_x64 = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", args.dtype == "float64")
    try:
        devices = jax.devices(args.platform)
        if len(devices) < args.devices:
            raise SystemExit(f"{args.devices} {args.platform} devices asked for, "
                             f"JAX has {len(devices)}")
        mesh = Mesh(np.array(devices[: args.devices]), ("rows",))
        rows = NamedSharding(mesh, P("rows", None))
        dtype = jnp.dtype(args.dtype)
        n, b, k = args.n, args.batch, args.rank

        # Everything n-sized is created on the devices, by rows: never on one device.
        @jax.jit
        def setup(key):
            k_x, k_a, k_b = jax.random.split(key, 3)
            eye = jax.lax.with_sharding_constraint(jnp.eye(n, dtype=dtype), rows)
            X = jax.random.normal(k_x, (n, b), dtype) / math.sqrt(n)  # unit-norm inputs
            A = jax.random.normal(k_a, (n, args.target_rank), dtype) / math.sqrt(n)
            B = jax.random.normal(k_b, (n, args.target_rank), dtype)
            X, A, B = (jax.lax.with_sharding_constraint(v, rows) for v in (X, A, B))
            W_star = ul.transport(eye, A, B)  # a rank-r rotation of I, O(n² r)
            return eye, X, W_star @ X

        U, X, Y = setup(jax.random.key(args.seed))

        def train_step(U, X, Y, key):
            D = U @ X - Y  # n×b, by rows
            loss = jnp.sum(jnp.abs(D) ** 2)
            U = ul.step(U, (2 * D, X), args.lr, rank=k, method=args.method, rng=key)
            return U, loss

        train = jax.jit(train_step, out_shardings=(rows, None))
        # The loss and the probe estimate, in one jit too; the probe's start vectors
        # come from a JAX key, fresh at every check. Everything runs jitted: on CPU host
        # devices, un-jitted operations on sharded arrays of this size could hang in
        # XLA's collectives (docs/sharding.md, limits).
        @jax.jit
        def evaluate(U, X, Y, key):
            D = U @ X - Y
            est = ul.unitarity_error(U, method="probe", rng=key)
            return jnp.sum(jnp.abs(D) ** 2), est
        key = jax.random.key(args.seed + 1)
        compiled = train.lower(U, X, Y, key).compile()
        found = collectives(compiled.as_text())
        biggest = max(found, key=lambda c: c[2], default=("none", "", 0))
        counts = {op: sum(c[0] == op for c in found) for op in dict.fromkeys(c[0] for c in found)}
        print(f"U: {n}×{n} {args.dtype} on {args.devices} {args.platform} devices, sharded "
              f"{U.sharding.spec} ({n // args.devices} rows each); rank-{k} {args.method} "
              f"steps, factored gradient of rank {b}")
        print(f"compiled step: {len(found)} collectives ("
              + ", ".join(f"{op} ×{c}" for op, c in counts.items())
              + f"), the largest {biggest[0]} {biggest[1]}: {biggest[2]} entries; "
              f"U has {n * n}")

        losses, log = [], []
        t0 = time.perf_counter()
        for s in range(args.steps + 1):
            key, k_step, k_probe = jax.random.split(key, 3)
            if s % args.log_every == 0 or s == args.steps:
                loss, est = (float(v) for v in evaluate(U, X, Y, k_probe))
                losses.append(loss)
                log.append({"step": s, "loss": loss, "probe": est})
                print(f"step {s:5d}  loss {loss:.4e}  probe ‖UᵀU−I‖₂ {est:.2e}", flush=True)
            if s < args.steps:
                U, _ = compiled(U, X, Y, k_step)
        U.block_until_ready()
        elapsed = time.perf_counter() - t0
        exact = float(ul.unitarity_error(np.asarray(U))) if n <= 2048 else None
        print(f"{args.steps} steps in {elapsed:.2f} s (with the logging); U still sharded "
              f"{U.sharding.spec}"
              + ("" if exact is None else f"; exact ‖UᵀU−I‖₂ {exact:.2e}"))
        result = {"n": n, "steps": args.steps, "rank": k, "devices": args.devices,
                  "by_rows": bool(U.sharding.is_equivalent_to(rows, 2)),
                  "losses": losses, "log": log,
                  "probe_estimate": log[-1]["probe"], "unitarity_error": exact,
                  "largest_collective": biggest[2], "seconds": elapsed}
    finally:
        jax.config.update("jax_enable_x64", old_x64)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return result


if __name__ == "__main__":
    main()
