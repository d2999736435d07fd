"""The fixed cost of an update at training sizes: rank 1, float32, n = 64, 128, 256.

For every n, all in one process on the same data, single-threaded (the runner sets
``OPENBLAS_NUM_THREADS=1``), medians after a warm-up:

- ``U @ G``, one dense n×n product: the work a rank-1 update is meant to avoid,
  and the unit of the targets (``over_matmul``); ``U.copy()`` as the memory floor;
- ``project`` and ``transport`` with the default engine (the one-call kernel of
  ``_engines/small.py`` for these sizes), and the same calls with that kernel
  disabled (the general path, as before it existed: ``general_over_this``);
- ``step(U, G, lr)`` with a dense G, rank 1, for both samplers: ``"randomized"``
  (the default, 11 sketch columns, two power iterations) and ``"lsi"`` (two
  matrix-vector products and a QR of one column), with a Generator passed once
  (as a training loop does; an int seed would build a Generator per call);
- the same on CPU torch tensors (``torch_over_numpy``), with the number of torch
  functions called per update (``torch_calls``, counted by a ``TorchFunctionMode``:
  views and metadata only; the arithmetic runs in the compiled kernel).

Each row carries its target as ``target_over_matmul`` (``None`` where there is
none) and the accuracy against the dense reference (``max_abs_diff_dense``).
"""

from __future__ import annotations

import contextlib

import numpy as np

import unitary_lowrank as ul
from benchmarks._timing import measure
from unitary_lowrank import _engines
from unitary_lowrank.testing import lowrank_factors
from unitary_lowrank.testing.reference import reference_retract

__all__ = ["TARGETS", "run"]

SIZES = (64, 128, 256)
#: Targets over one ``U @ G`` of the same size (NumPy, float32, rank 1).
TARGETS = {
    ("project", 64): 5.0, ("project", 128): 1.0, ("project", 256): 0.5,
    ("transport", 64): 5.0, ("transport", 128): 1.0, ("transport", 256): 0.5,
    ("step", 128): 3.0, ("step lsi", 128): 3.0,
}
#: torch CPU over NumPy, at these sizes.
TORCH_TARGET = 2.0
TORCH_TARGET_SIZES = (128, 256)


@contextlib.contextmanager
def _general_path():
    """Inside the block the one-call kernels are disabled: the general path runs."""
    old = _engines.load_small
    _engines.load_small = lambda: None
    try:
        yield
    finally:
        _engines.load_small = old


def _torch_calls(fn) -> int | None:
    """How many torch functions one call of `fn` runs (None without torch)."""
    try:
        import torch
        from torch.overrides import TorchFunctionMode
    except ImportError:
        return None

    class Count(TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Count():
        fn()
    return Count.calls


def run(quick: bool) -> list[dict]:
    """Benchmark rows (see the module docstring); `quick`: n = 16, one sample each."""
    sizes = (16,) if quick else SIZES
    reps = 1 if quick else 9
    mt = 0.0 if quick else 0.05
    try:
        import torch
    except ImportError:
        torch = None
    rows: list[dict] = []
    for n in sizes:
        rng = np.random.default_rng(n)
        U = ul.random_unitary(n, dtype="float32", rng=rng)
        A, B = lowrank_factors(n, n, 1, "float32", rng, norm=0.05)
        G = (0.01 * rng.standard_normal((n, n))).astype(np.float32)
        t_mm = measure(lambda: U @ G, repeats=reps, min_time=mt)
        t_copy = measure(U.copy, repeats=reps, min_time=mt)
        gen = np.random.default_rng(0)
        calls = {
            "project": (lambda U, A, B, G: ul.project(U, A, B)),
            "transport": (lambda U, A, B, G: ul.transport(U, A, B)),
            "step": (lambda U, A, B, G: ul.step(U, G, 1e-3, rng=gen)),
            "step lsi": (lambda U, A, B, G: ul.step(U, G, 1e-3, sampler="lsi", rng=gen)),
        }
        tensors = None if torch is None else tuple(torch.from_numpy(x) for x in (U, A, B, G))
        for name, f in calls.items():
            t = measure(lambda f=f: f(U, A, B, G), repeats=reps, min_time=mt)
            with _general_path():
                t_general = measure(lambda f=f: f(U, A, B, G), repeats=reps, min_time=mt)
            ratios = {"over_matmul": t / t_mm, "over_copy": t / t_copy,
                      "general_over_this": t_general / t}
            params = {"n": n, "k": 1, "dtype": "float32", "matmul_s": t_mm, "copy_s": t_copy,
                      "general_s": t_general,
                      "target_over_matmul": TARGETS.get((name, n))}
            if tensors is not None:
                with torch.no_grad():
                    t_torch = measure(lambda f=f: f(*tensors), repeats=reps, min_time=mt)
                ratios["torch_over_numpy"] = t_torch / t
                params["torch_s"] = t_torch
                params["torch_calls"] = _torch_calls(lambda f=f: f(*tensors))
            if name in ("project", "transport"):
                X = f(U, A, B, G)
                method = "polar" if name == "project" else "exp"
                params["max_abs_diff_dense"] = float(np.max(np.abs(
                    X - reference_retract(U, A, B, method))))
                params["unitarity_error"] = float(ul.unitarity_error(X))
            rows.append({"section": "small", "case": f"{name} n={n} k=1 float32",
                         "params": params, "time_s": t, "ratios": ratios})
    return rows
