"""Worker of ``tests/test_sharding_jax.py``: the library under ``jax.jit`` on U sharded by rows.

Run as a script, in a process whose ``XLA_FLAGS`` gives JAX several host devices (it
sets ``--xla_force_host_platform_device_count=4`` itself when the variable is unset,
before JAX is imported). For every case of :func:`cases` it

1. builds the inputs on the host (NumPy) and the single-device NumPy result of the
   library (the reference);
2. puts the inputs on a 4-device mesh (U by rows: ``P("rows", None)``, or a batch of
   matrices by rows ``P(None, "rows", None)`` or by matrices ``P("rows", None, None)``),
   compiles ``jax.jit`` of the call once and runs the compiled program;
3. records the sharding of the result, its distance from the reference, its tolerance
   (from :mod:`unitary_lowrank.testing`), and every collective of the compiled HLO
   with the number of entries of its largest operand or result.

It prints one JSON object on its last line of stdout: ``{"devices": ..., "results":
[...], "checker": [...]}``; ``"checker"`` holds the verdicts of the HLO checker on
deliberately bad programs (``UᵀU``, a replicated result), which must be flagged.

The module imports neither JAX nor the library at import time: the test file reads
:func:`cases` and :func:`collectives` from it to parametrize its tests.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import zlib

#: Size of the matrices, rank of the updates, batch size, devices of the mesh.
N = 256
K = 2
F = 4
DEVICES = 4
#: A collective may move at most ``SLACK · f · (n·w + w²)`` entries, w the widest thin
#: block of the case (2k for the QR of ``[B, Uᴴ A]``, the sketch size, the probe block).
SLACK = 2
#: Functions run in every layout and dtype; ``reunitarize`` has its own check.
FUNCTIONS = ("project", "transport", "retract-polar", "retract-exp", "retract-cayley",
             "step-dense", "step-factored", "step-lowrank", "step-key", "lowrank-dense",
             "lowrank-factored", "range-finder", "probe", "probe-key", "reunitarize")
#: ``retract`` with "polar" and "exp" is ``project`` and ``transport`` (one code path):
#: those two run batched; ``step-key`` and ``probe-key`` (a JAX PRNG key, compared with
#: the unsharded jit) and ``range-finder`` (the basis of ``lowrank``'s sketch) run on U
#: by rows only.
ROWS_ONLY = ("retract-polar", "retract-exp", "step-key", "range-finder", "probe-key")
#: U by rows, a batch of matrices by rows, a batch sharded over its matrices.
LAYOUTS = ("rows", "batch-rows", "batch-axis")
#: The dtypes of each layout: every function meets all four dtypes across the three
#: layouts (the Fourier-domain batch is complex), in fewer programs to compile.
LAYOUT_DTYPES = {"rows": ("float32", "complex128"), "batch-rows": ("complex64",),
                 "batch-axis": ("float64",)}
#: Newton–Schulz steps of ``reunitarize`` (from an error of about 4e-3: 1e-20 after 3).
NS_STEPS = 3
#: Sketch parameters of the step and lowrank cases; rank of the factored gradient.
OVERSAMPLE = 4
N_ITER = 1
R_FACTORED = 6
PROBES, DEPTH = 2, 3

_COLLECTIVE = re.compile(
    r"^(all-gather|all-reduce|reduce-scatter|all-to-all|ragged-all-to-all|"
    r"collective-permute|collective-broadcast)(-start|-done)?$"
)
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*(?P<shape>\([^=]*?\)|\S+)\s+"
    r"(?P<op>[a-z][\w\-]*)\((?P<args>.*)$"
)
_ARRAY = re.compile(r"\b(?:pred|[subf]\d+|bf16|c64|c128|f8\w*)\[([\d,]*)\]")


def cases() -> list[dict]:
    """Every (function, layout, dtype) case, as plain dicts (no JAX needed).

    Each layout runs in the dtypes of :data:`LAYOUT_DTYPES`; the functions of
    :data:`ROWS_ONLY` on U by rows only.
    """
    out = []
    for func in FUNCTIONS:
        for layout in LAYOUTS[:1] if func in ROWS_ONLY else LAYOUTS:
            dtypes = LAYOUT_DTYPES[layout]
            for dtype in dtypes:
                out.append({"id": f"{func}-{layout}-{dtype}", "func": func, "layout": layout,
                            "dtype": dtype})
    return out


def width(func: str) -> int:
    """The widest thin block w of a case (columns of the n×w arrays it must exchange)."""
    if func.startswith(("step", "lowrank", "range")):
        return max(2 * K, K + OVERSAMPLE, R_FACTORED)
    if func.startswith("probe"):
        return PROBES * DEPTH
    return 2 * K


def limit(func: str, layout: str, n: int = N, f: int = F) -> int:
    """Entries a collective of the case may move: ``SLACK · f · (n·w + w²)``."""
    w = width(func)
    return SLACK * (1 if layout == "rows" else f) * (n * w + w * w)


def _elements(shape_text: str) -> list[int]:
    return [math.prod(int(d) for d in dims.split(",") if d) for dims in
            _ARRAY.findall(shape_text)]


def collectives(hlo: str) -> list[dict]:
    """Every collective of an HLO module's text: op, shapes, and its largest array.

    ``entries`` is the number of entries of the largest array among the collective's
    result and operands (the operands' shapes are looked up by name, as the compiled
    text prints only their names).
    """
    shapes: dict[str, str] = {}
    found = []
    for line in hlo.splitlines():
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        shapes[m["name"]] = m["shape"]
        if not _COLLECTIVE.match(m["op"]):
            continue
        operands = re.findall(r"%([\w.\-]+)", m["args"].split("), ")[0])
        texts = [m["shape"]] + [shapes.get(o, "") for o in operands]
        # operands printed with their shapes (older text formats)
        texts.append(m["args"].split("), ")[0])
        sizes = [e for t in texts for e in _elements(t)]
        found.append({"op": m["op"], "shape": m["shape"], "entries": max(sizes, default=0)})
    return found


def check_collectives(found: list[dict], bound: int, allowed: int = 0) -> list[str]:
    """The collectives above `bound` entries, as messages (empty when none).

    `allowed` is the number of collectives above the bound that the case declares
    (the n×n Gram all-reduce of each Newton–Schulz step); their op must be an
    all-reduce. Any other collective above the bound is a failure.
    """
    big = [c for c in found if c["entries"] > bound]
    bad = [c for c in big if not c["op"].startswith("all-reduce")] if allowed else big
    msgs = [f"{c['op']} of {c['shape']} moves {c['entries']} entries > {bound}" for c in bad]
    grams = [c for c in big if c not in bad and not c["op"].endswith("-done")]
    if len(grams) > allowed:
        msgs.append(f"{len(grams)} all-reduces above {bound} entries, {allowed} allowed")
    return msgs


# --------------------------------------------------------------------- the JAX side


@contextlib.contextmanager
def _x64(on: bool):
    import jax

    old = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", on)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


def _inputs(case, jax, np, ul, testing):
    """Host inputs, the function of the jit, and the reference of a case.

    The reference is the library's single-device NumPy result; for ``step-key``,
    whose sketch is drawn by ``jax.random``, the jit of the same call on one device.
    """
    dtype, func, layout = case["dtype"], case["func"], case["layout"]
    batched = layout != "rows"
    rng = np.random.default_rng(zlib.crc32(case["id"].encode()))  # fixed per case
    f = F if batched else None
    bs = (f,) if batched else ()
    U = ul.random_unitary(N, dtype=dtype, batch_shape=bs, rng=rng)
    cplx = dtype.startswith("complex")

    def factors(k, norm, r=None):
        pairs = [testing.lowrank_factors(N, N, k, dtype, rng, norm=norm, rank=r, spread=2.0)
                 for _ in range(f or 1)]
        A = np.stack([p[0] for p in pairs]) if batched else pairs[0][0]
        B = np.stack([p[1] for p in pairs]) if batched else pairs[0][1]
        return A, B

    def separated(r, k):
        """X (n×r), Y (n×r) of G = X Yᴴ with singular values 1, …, gap 0.5 after the k-th."""
        s = np.concatenate([np.linspace(1.0, 0.8, k), np.linspace(0.3, 0.1, r - k)])
        Xs, Ys = [], []
        for _ in range(f or 1):
            Qa = ul.random_unitary(N, r, dtype=dtype, rng=rng)
            Qb = ul.random_unitary(N, r, dtype=dtype, rng=rng)
            Xs.append((Qa * s).astype(dtype))
            Ys.append(Qb)
        return (np.stack(Xs), np.stack(Ys)) if batched else (Xs[0], Ys[0])

    norm = 0.1
    if func in ("project", "transport") or func.startswith("retract"):
        A, B = factors(K, norm)
        method = {"project": "polar", "transport": "exp"}.get(func, func.split("-")[-1])
        if func == "project":
            fn = ul.project
        elif func == "transport":
            fn = ul.transport
        else:
            def fn(U, A, B, method=method):
                return ul.retract(U, A, B, method)
        args = (U, A, B)
        ref = fn(U, A, B)
        cond = 1.0 / (1.0 - norm) if method == "polar" else 1.0
        return fn, args, ref, ("U", "A", "B"), ("U",), cond
    lr = 0.05
    if func == "step-key":
        X, Y = factors(K, 1.0)
        G = X @ np.conj(np.swapaxes(Y, -1, -2))
        key = jax.random.key(5)

        def fn(U, G, key):
            return ul.step(U, G, lr, rank=K, oversample=OVERSAMPLE, n_iter=N_ITER, rng=key)
        one = jax.devices()[0]
        ref = jax.jit(fn)(jax.device_put(U, one), jax.device_put(G, one), key)
        return fn, (U, G, key), np.asarray(ref), ("U", "G", "key"), ("U",), 2.0
    if func == "range-finder":
        X, Y = factors(K, 1.0)
        G = X @ np.conj(np.swapaxes(Y, -1, -2))

        def fn(G):
            return ul.range_finder(G, K, n_iter=N_ITER, rng=7)
        return fn, (G,), fn(G), ("G",), ("Q",), 2.0
    if func in ("step-dense", "lowrank-dense"):
        X, Y = factors(K, 1.0)  # G of exact rank k: the sketch is exact
        G = X @ np.conj(np.swapaxes(Y, -1, -2))
        if func == "step-dense":
            def fn(U, G):
                return ul.step(U, G, lr, rank=K, oversample=OVERSAMPLE, n_iter=N_ITER, rng=7)
            return fn, (U, G), fn(U, G), ("U", "G"), ("U",), 2.0

        def fn(G):
            A, B = ul.lowrank(G, K, oversample=OVERSAMPLE, n_iter=N_ITER, rng=7)
            return A, B
        return fn, (G,), fn(G), ("G",), ("A", "B"), 2.0
    X, Y = separated(R_FACTORED, K)
    cond = 1.0 / 0.5  # σ_1 / (σ_k − σ_{k+1})
    if func == "step-factored":
        def fn(U, X, Y):
            return ul.step(U, (X, Y), lr, rank=K, method="polar", rng=7)
        return fn, (U, X, Y), fn(U, X, Y), ("U", "X", "Y"), ("U",), cond
    if func == "step-lowrank":
        # the gradient's rank-k factors from lowrank, then a step with them as (A, B)
        def fn(U, X, Y):
            info = ul.lowrank((X, Y), K, return_info=True, rng=7)
            return ul.step(U, (info.A, info.B), lr, rank=K, method="cayley", rng=7)
        return fn, (U, X, Y), fn(U, X, Y), ("U", "X", "Y"), ("U",), cond
    if func == "lowrank-factored":
        def fn(X, Y):
            A, B = ul.lowrank((X, Y), K, rng=7)
            return A, B
        return fn, (X, Y), fn(X, Y), ("X", "Y"), ("A", "B"), cond
    # a drifted U: unitary error of about 1e-3, far above float32 rounding
    drift = (1e-3 / math.sqrt(N)) * rng.standard_normal(U.shape)
    if cplx:
        drift = drift + 1j * (1e-3 / math.sqrt(N)) * rng.standard_normal(U.shape)
    Ud = (U + drift).astype(dtype)
    if func == "probe":
        def fn(U):
            return ul.unitarity_error(U, method="probe", probes=PROBES, depth=DEPTH, rng=3)
        return fn, (Ud,), fn(Ud), ("U",), ("err",), 1.0
    if func == "probe-key":
        def fn(U, key):
            return ul.unitarity_error(U, method="probe", probes=PROBES, depth=DEPTH, rng=key)
        key = jax.random.key(11)
        ref = jax.jit(fn)(jax.device_put(Ud, jax.devices()[0]), key)
        return fn, (Ud, key), np.asarray(ref), ("U", "key"), ("err",), 1.0

    def fn(U):
        return ul.reunitarize(U, method="newton-schulz", iterations=NS_STEPS)
    return fn, (Ud,), fn(Ud), ("U",), ("U",), 1.0


def _spec(kind: str, layout: str, ndim: int, P):
    """The partition spec of an input or result: by rows, or by matrices of a batch."""
    if kind == "key":
        return P()
    if kind == "err":  # the probe's (batch,) estimates: by matrices, or replicated
        return P("rows") if layout == "batch-axis" and ndim == 1 else P()
    if layout == "batch-axis":
        return P("rows", *([None] * (ndim - 1)))
    return P(*([None] * (ndim - 2)), "rows", None)


def run_case(case, jax, np, ul, testing, mesh, NamedSharding, P) -> dict:
    """Run one case; returns its record (``error`` holds a traceback on failure)."""
    rec = dict(case)
    try:
        double = case["dtype"] in ("float64", "complex128")
        with _x64(double):
            fn, args, ref, in_kinds, out_kinds, cond = _inputs(case, jax, np, ul, testing)
            placed = [jax.device_put(a, NamedSharding(mesh, _spec(k, case["layout"], a.ndim, P)))
                      for a, k in zip(args, in_kinds, strict=True)]
            compiled = jax.jit(fn).lower(*placed).compile()
            out = compiled(*placed)
            outs = out if isinstance(out, tuple) else (out,)
            refs = ref if isinstance(ref, tuple) else (ref,)
            rec["shardings"] = []
            rec["sharded_as_expected"] = True
            for o, kind in zip(outs, out_kinds, strict=True):
                want = NamedSharding(mesh, _spec(kind, case["layout"], o.ndim, P))
                same = bool(o.sharding.is_equivalent_to(want, o.ndim))
                if kind in ("A", "B", "Q") and case["layout"] != "batch-axis":
                    # n×k factors: by rows like their source, or whole on every device
                    same |= bool(o.sharding.is_fully_replicated)
                rec["shardings"].append(str(getattr(o.sharding, "spec", o.sharding)))
                rec["sharded_as_expected"] &= same
            rec.update(_accuracy(case, outs, refs, np, ul, testing, cond))
            hlo = compiled.as_text()
        found = collectives(hlo)
        rec["collectives"] = [(c["op"], c["entries"]) for c in found]
        rec["limit"] = limit(case["func"], case["layout"])
        allowed = NS_STEPS if case["func"] == "reunitarize" and case["layout"] != "batch-axis" \
            else 0
        if allowed:  # one n×n Gram all-reduce per step (per matrix of a batch)
            rec["gram_allreduces_allowed"] = allowed
        rec["violations"] = check_collectives(found, rec["limit"], allowed)
    except Exception:  # noqa: BLE001 - reported to the test, which fails the case
        import traceback

        rec["error"] = traceback.format_exc()[-3000:]
    return rec


def _accuracy(case, outs, refs, np, ul, testing, cond) -> dict:
    """Distance from the NumPy reference and its tolerance; unitarity of U results."""
    dtype, func = case["dtype"], case["func"]
    n = N
    got = [np.asarray(o) for o in outs]
    if func.startswith("lowrank"):  # the factors are unique only up to a rotation
        got = [got[0] @ np.conj(np.swapaxes(got[1], -1, -2))]
        refs = [refs[0] @ np.conj(np.swapaxes(refs[1], -1, -2))]
    if func == "range-finder":  # so is the basis: compare the projectors Q Qᴴ
        got = [got[0] @ np.conj(np.swapaxes(got[0], -1, -2))]
        refs = [refs[0] @ np.conj(np.swapaxes(refs[0], -1, -2))]
    diff = max(float(np.max(np.abs(g.astype(np.complex128) - r))) for g, r in
               zip(got, refs, strict=True))
    if func.startswith("probe"):
        # an estimate in the precision of the cores: float64 with x64, else the dtype's
        core = "float64" if dtype in ("float64", "complex128") else "float32"
        tol = testing.unitarity_bound(n, core)
        return {"diff": diff, "tol": tol, "unitarity": None, "unitarity_tol": None}
    tol = testing.compare_tol(n, dtype, condition=cond)
    rec = {"diff": diff, "tol": tol}
    if func.startswith(("lowrank", "range")):
        rec.update(unitarity=None, unitarity_tol=None)
        return rec
    err = float(np.max(ul.unitarity_error(got[0])))
    bound = (testing.rounded_unitarity_bound(n, dtype) if func == "reunitarize"
             else testing.unitarity_bound(n, dtype))
    rec.update(unitarity=err, unitarity_tol=bound)
    return rec


def run_checker(jax, np, mesh, NamedSharding, P) -> list[dict]:
    """The checker on programs that gather U: each must be flagged (violations non-empty)."""
    U = jax.device_put(np.eye(N, dtype="float32"), NamedSharding(mesh, P("rows", None)))
    a = jax.device_put(np.ones((N, K), dtype="float32"), NamedSharding(mesh, P("rows", None)))
    bad = {
        "U.T @ U": (jax.jit(lambda U: U.T @ U), (U,)),
        "replicated result": (jax.jit(lambda U, a: U + a @ (a.T @ U)[:, :N] * 0,
                                      out_shardings=NamedSharding(mesh, P())), (U, a)),
        "U @ U": (jax.jit(lambda U: U @ U), (U,)),
    }
    good = {"U + a (aᵀU)": (jax.jit(lambda U, a: U + a @ (a.T @ U)), (U, a))}
    out = []
    for name, (f, args) in {**bad, **good}.items():
        found = collectives(f.lower(*args).compile().as_text())
        out.append({"name": name, "must_flag": name in bad,
                    "collectives": [(c["op"], c["entries"]) for c in found],
                    "violations": check_collectives(found, limit("project", "rows"))})
    return out


def run_eager(jax, np, ul, testing, mesh, NamedSharding, P) -> list[dict]:
    """Eager (un-jitted) calls on U by rows with A, B placed otherwise on the same devices.

    The library must take U sharded by rows with factors replicated, or with the
    same row layout spelled ``P("rows")``, as one placement (no device error), and
    compute what NumPy computes.
    """
    rng = np.random.default_rng(3)
    U0 = np.linalg.qr(rng.standard_normal((N, N)))[0].astype("float32")
    A0 = (1e-2 * rng.standard_normal((N, K))).astype("float32")
    B0 = rng.standard_normal((N, K)).astype("float32")
    U = jax.device_put(U0, NamedSharding(mesh, P("rows", None)))
    layouts = {"replicated": P(), "rows spelled P('rows')": P("rows")}
    out = []
    for name, spec in layouts.items():
        A = jax.device_put(A0, NamedSharding(mesh, spec))
        B = jax.device_put(B0, NamedSharding(mesh, spec))
        rec = {"name": name}
        try:
            got = np.asarray(ul.project(U, A, B))
            rec["diff"] = float(np.max(np.abs(got - ul.project(U0, A0, B0))))
            rec["tol"] = testing.compare_tol(N, "float32")
        except Exception as exc:  # reported to the test, which fails with it
            rec["error"] = f"{type(exc).__name__}: {exc}"
        out.append(rec)
    return out


def main(argv: list[str]) -> None:
    """Run the cases named in `argv` (all when none) and print the JSON record."""
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={DEVICES}")
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    import unitary_lowrank as ul
    from unitary_lowrank import testing

    devices = jax.devices()
    if len(devices) < DEVICES:
        print(json.dumps({"devices": len(devices), "results": [], "checker": [], "eager": []}))
        return
    mesh = Mesh(np.array(devices[:DEVICES]), ("rows",))
    wanted = set(argv)
    results = [run_case(c, jax, np, ul, testing, mesh, NamedSharding, P) for c in cases()
               if not wanted or c["id"] in wanted or c["func"] in wanted]
    checker = run_checker(jax, np, mesh, NamedSharding, P)
    eager = run_eager(jax, np, ul, testing, mesh, NamedSharding, P)
    print(json.dumps({"devices": len(devices), "results": results, "checker": checker,
                      "eager": eager}))


if __name__ == "__main__":
    main(sys.argv[1:])
