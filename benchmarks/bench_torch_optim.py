"""Cost of one training step of an orthogonal n×n weight in PyTorch: ProjUNN against its peers.

Section "torch_optim". Each case times a whole iteration of the same trivial
loss ``L(W) = Σ W ∘ T`` (T a fixed random matrix, so the forward and backward
passes cost O(n²) and the optimizer's own work shows): ``zero_grad``, forward,
``backward`` and the optimizer step, float32 on the CPU, one torch thread:

- ``rmsprop``: ``torch.optim.RMSprop`` on an unconstrained weight — the floor,
  what one step costs without any constraint;
- ``projunn k=1`` and ``projunn k=4``: :class:`unitary_lowrank.torch.ProjUNN`
  (projUNN-T, LSI sketch, RMSprop's direction: the paper's settings) keeping the
  weight orthogonal; ``projunn adam k=4`` the same along Adam's direction (the
  default), and ``projunn adam full`` the dense full-rank step (``rank="full"``,
  what ``rank="auto"`` takes up to n = ``AUTO_FULL_MAX``);
- ``parametrization``: ``torch.nn.utils.parametrizations.orthogonal`` (its
  defaults: the matrix exponential, with trivialisation) on an
  ``nn.Linear(n, n)`` weight, the underlying parameter stepped by RMSprop; each
  forward pass rebuilds the weight from its parametrisation in O(n³);
- ``geotorch``: ``geotorch.orthogonal`` (its defaults) on an ``nn.Linear(n, n)``
  weight, stepped by RMSprop the same way (skipped when geotorch is not
  installed; it is in the ``test`` extra).

Ratios: ``over_rmsprop`` (time over the floor's) on every constrained case,
and ``param_over_projunn`` (the parametrisation's time over ProjUNN's) and
``geotorch_over_projunn`` on the ProjUNN rows. ``params`` carries the
weight's ``‖WᵀW − I‖₂`` after the timed steps. The cases alternate sample by
sample (each sample loops for at least 0.2 s), and ``time_s`` is the median of
7 samples per case, so that all cases see the same machine load. Full:
n = 128, 512, 1024 (the parametrisation and geotorch timed with three samples
of one call at n = 1024); ``quick``: n = 16, one sample each. Run with
``OPENBLAS_NUM_THREADS=1``.
"""

from __future__ import annotations

import statistics

import numpy as np
import torch  # without torch, benchmarks.run skips this section (ModuleNotFoundError)
from torch.nn.utils.parametrizations import orthogonal

import unitary_lowrank as ul
from benchmarks._timing import measure
from unitary_lowrank.torch import ProjUNN

__all__ = ["run"]

FULL_SIZES = (128, 512, 1024)
QUICK_SIZES = (16,)


def _iteration(loss_fn, opt):
    """One training iteration as a callable (returns the loss, for synchronisation)."""
    def step():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        return loss
    return step


def _cases(n: int, seed: int):
    """(name, iteration, weight getter) for every case at size n, on the same T."""
    gen = torch.Generator().manual_seed(seed)
    T = torch.randn(n, n, generator=gen) / n
    cases = []

    free = torch.nn.Parameter(torch.randn(n, n, generator=gen) / n ** 0.5)
    opt = torch.optim.RMSprop([free], lr=1e-3)
    cases.append(("rmsprop", _iteration(lambda: (free * T).sum(), opt), None))

    for name, kw in (("projunn k=1", {"rank": 1, "direction": "rmsprop"}),
                     ("projunn k=4", {"rank": 4, "direction": "rmsprop"}),
                     ("projunn adam k=4", {"rank": 4}),
                     ("projunn adam full", {"rank": "full"})):
        W = torch.nn.Parameter(torch.empty(n, n))
        torch.nn.init.orthogonal_(W, generator=gen)
        opt = ProjUNN([W], lr=1e-3 / 32, generator=seed, **kw)
        cases.append((name, _iteration(lambda W=W: (W * T).sum(), opt),
                      lambda W=W: W.detach()))

    lin = orthogonal(torch.nn.Linear(n, n, bias=False))
    opt = torch.optim.RMSprop(lin.parameters(), lr=1e-3)
    cases.append(("parametrization", _iteration(lambda: (lin.weight * T).sum(), opt),
                  lambda: lin.weight.detach()))

    try:
        import geotorch
    except ImportError:
        return cases
    geo = torch.nn.Linear(n, n, bias=False)
    geotorch.orthogonal(geo, "weight")
    opt = torch.optim.RMSprop(geo.parameters(), lr=1e-3)
    cases.append(("geotorch", _iteration(lambda: (geo.weight * T).sum(), opt),
                  lambda: geo.weight.detach()))
    return cases


def run(quick: bool) -> list[dict]:
    """Benchmark rows (see the module docstring); `quick`: n = 16 for the CI smoke test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as BLAS elsewhere in the suite: one thread, like with like
    try:
        return _run(quick)
    finally:
        torch.set_num_threads(threads)


def _run(quick: bool) -> list[dict]:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    reps = 1 if quick else 7
    mt = 0.0 if quick else 0.2
    rows: list[dict] = []
    for n in sizes:
        cases = _cases(n, seed=n)
        samples: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        for _, fn, _ in cases:  # warm-up: first-step checks, lazy state, caches
            fn()
        # the cases alternate, sample by sample, so that all see the same machine load
        for r in range(reps):
            for name, fn, _ in cases:
                slow = name in ("parametrization", "geotorch") and n >= 1024
                if slow and r >= 3:
                    continue
                samples[name].append(measure(fn, repeats=1, warmup=0,
                                             min_time=0.0 if slow else mt))
        times = {name: statistics.median(v) for name, v in samples.items()}
        errors = {name: None if weight is None else float(np.max(ul.unitarity_error(
            weight().double().numpy()))) for name, _, weight in cases}
        for name, t in times.items():
            ratios = {}
            if name != "rmsprop":
                ratios["over_rmsprop"] = t / times["rmsprop"]
            if name.startswith("projunn"):
                ratios["param_over_projunn"] = times["parametrization"] / t
                if "geotorch" in times:
                    ratios["geotorch_over_projunn"] = times["geotorch"] / t
            rows.append({
                "section": "torch_optim",
                "case": f"{name} n={n} float32",
                "params": {"n": n, "case": name, "dtype": "float32", "torch_threads": 1,
                           "unitarity_error": errors[name],
                           "rmsprop_s": times["rmsprop"]},
                "time_s": t,
                "ratios": ratios,
            })
    return rows
