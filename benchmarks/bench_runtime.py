"""Time of a whole RNN training step against the hidden size (Fig. 2a of the projUNN paper).

Section "runtime". Each case times one training iteration of the same
recurrent network, ``h_t = relu(W h_{t−1} + V x_t + b)``, read out at the last
step (``T = 16`` steps, batch 32, 8 inputs, 10 classes, cross-entropy;
``quick``: T = 4, batch 4), on the CPU in float32 with one torch thread:
``zero_grad``, forward, ``backward`` and the optimizer step, with

- ``unconstrained``: ``W`` an ordinary weight, every parameter stepped by
  ``torch.optim.RMSprop`` — the floor;
- ``projunn-d k=1`` and ``projunn-t k=1``: :class:`unitary_lowrank.torch.ProjUNN`
  (``rank=1``, LSI sketch, RMSprop's direction: the paper's settings) on the
  whole model, ``W`` kept orthogonal by projUNN-D (``method="polar"``) or
  projUNN-T (``"exp"``) in O(n²);
- ``expm``: expRNN-style, ``W = expm(A − Aᵀ)`` rebuilt by ``torch.matrix_exp``
  at every forward pass (and differentiated through), ``A`` stepped by RMSprop;
- ``cayley``: scoRNN-style, ``W = (I + S)⁻¹(I − S) D`` with ``S = A − Aᵀ`` and
  ``D`` a fixed diagonal of ±1 (a solve at every forward pass), ``A`` stepped by
  RMSprop.

``ratios["over_unconstrained"]`` is each case's time over the floor's at the same
size (the figure's y axis); ``params`` carries the sizes and ``‖WᵀW − I‖₂``
after the timed steps. The cases alternate sample by sample (each sample loops
for at least 0.2 s, at least one call), and ``time_s`` is the median of 5
samples (3 for the dense cases at n >= 512), so that all cases see the same
machine load. Full: n = 64, 128, 256, 512, 1024; ``quick``: n = 8, 16.

``python -m benchmarks.bench_runtime [--quick] [--json PATH] [--plot PATH]`` runs
the section alone and draws the figure (``docs/figures/runtime.png``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch  # without torch, benchmarks.run skips this section (ModuleNotFoundError)
from torch import nn

import unitary_lowrank as ul
from benchmarks._timing import measure
from unitary_lowrank.torch import ProjUNN, orthogonal_, param_groups

__all__ = ["CASES", "plot_runtime", "run"]

FULL_SIZES = (64, 128, 256, 512, 1024)
QUICK_SIZES = (8, 16)
CASES = ("unconstrained", "projunn-d k=1", "projunn-t k=1", "expm", "cayley")
N_IN, N_OUT = 8, 10


class _RNN(nn.Module):
    """The network of every case; `weight` gives ``W`` (a parameter or a function of one)."""

    def __init__(self, n: int, weight: str):
        super().__init__()
        self.kind = weight
        self.inp = nn.Linear(N_IN, n)
        self.out = nn.Linear(n, N_OUT)
        if weight in ("plain", "projunn"):
            self.W = nn.Parameter(torch.empty(n, n))
            nn.init.orthogonal_(self.W)
            if weight == "projunn":
                orthogonal_(self, "W")  # Haar again, and marked for param_groups
        else:
            self.A = nn.Parameter(torch.randn(n, n) * (0.1 / n ** 0.5))
            if weight == "cayley":
                d = torch.ones(n)
                d[: n // 2] = -1.0  # scoRNN's D: a fixed diagonal of ±1
                self.register_buffer("D", d)
                self.register_buffer("I", torch.eye(n))

    def weight(self) -> torch.Tensor:
        if self.kind in ("plain", "projunn"):
            return self.W
        S = self.A - self.A.mT
        if self.kind == "expm":
            return torch.linalg.matrix_exp(S)
        return torch.linalg.solve(self.I + S, (self.I - S) * self.D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        W = self.weight()  # once per forward pass, as expRNN and scoRNN do
        u = self.inp(x)
        h = torch.zeros(x.shape[0], W.shape[0])
        for t in range(x.shape[1]):
            h = torch.relu(h @ W.mT + u[:, t])
        return self.out(h)


def _case(name: str, n: int, x: torch.Tensor, y: torch.Tensor):
    """(iteration, the weight) of one case at size n."""
    kind = {"unconstrained": "plain", "expm": "expm", "cayley": "cayley"}.get(name, "projunn")
    model = _RNN(n, kind)
    if kind == "projunn":
        opt = ProjUNN(param_groups(model), lr=1e-3, rank=1, direction="rmsprop",
                      method="polar" if name.startswith("projunn-d") else "exp", generator=n)
    else:
        opt = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    loss_fn = nn.functional.cross_entropy

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step, model.weight


def run(quick: bool) -> list[dict]:
    """Benchmark rows (see the module docstring); `quick`: n = 8, 16 for the CI smoke test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as BLAS elsewhere in the suite: one thread, like with like
    try:
        return _run(quick)
    finally:
        torch.set_num_threads(threads)


def _run(quick: bool) -> list[dict]:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    batch, steps = (4, 4) if quick else (32, 16)
    reps = 1 if quick else 5
    min_time = 0.0 if quick else 0.2
    rows: list[dict] = []
    for n in sizes:
        torch.manual_seed(n)
        x = torch.randn(batch, steps, N_IN)
        y = torch.randint(0, N_OUT, (batch,))
        cases = [(name, *_case(name, n, x, y)) for name in CASES]
        samples: dict[str, list[float]] = {name: [] for name in CASES}
        for _, fn, _ in cases:  # warm-up: first-step checks, lazy state, kernels
            fn()
        for r in range(reps):  # alternate, so that every case sees the same machine load
            for name, fn, _ in cases:
                slow = name in ("expm", "cayley") and n >= 512
                if slow and r >= 3:
                    continue
                samples[name].append(measure(fn, repeats=1, warmup=0,
                                             min_time=0.0 if slow else min_time))
        times = {name: statistics.median(v) for name, v in samples.items()}
        for name, _, weight in cases:
            with torch.no_grad():
                W = weight().double().numpy()
            rows.append({
                "section": "runtime",
                "case": f"{name} n={n}",
                "params": {"n": n, "case": name, "batch": batch, "T": steps,
                           "dtype": "float32", "torch_threads": 1,
                           "unitarity_error": float(ul.unitarity_error(W)),
                           "unconstrained_s": times["unconstrained"]},
                "time_s": times[name],
                "ratios": ({} if name == "unconstrained"
                           else {"over_unconstrained": times[name] / times["unconstrained"]}),
            })
    return rows


def plot_runtime(rows: list[dict], path: str) -> None:
    """Log-log plot of the time of a training step against n, one line per case.

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`run` (other sections' rows are ignored).
    path : str
        Output PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rt = [r for r in rows if r["section"] == "runtime"]
    if not rt:
        return
    fig, (ax, ax_r) = plt.subplots(1, 2, figsize=(11, 4.3))
    for name in CASES:
        pts = sorted((r["params"]["n"], r["time_s"], r["ratios"].get("over_unconstrained"))
                     for r in rt if r["params"]["case"] == name)
        if not pts:
            continue
        ns = [p[0] for p in pts]
        style = "s--" if name in ("expm", "cayley") else "o-"
        line = ax.loglog(ns, [p[1] for p in pts], style, label=name)[0]
        if name != "unconstrained":
            ax_r.loglog(ns, [p[2] for p in pts], style, color=line.get_color(), label=name)
    ns = sorted({r["params"]["n"] for r in rt})
    p = rt[0]["params"]
    from matplotlib.ticker import NullFormatter

    for a in (ax, ax_r):
        a.set_xticks(ns, [str(n) for n in ns])
        a.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("hidden size n")
    ax.set_ylabel("seconds per training step (median)")
    ax.set_title(f"RNN step (forward, backward, update), batch {p['batch']}, T = {p['T']}",
                 fontsize="medium")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax_r.axhline(1.0, color="k", lw=0.8)
    ax_r.set_xlabel("hidden size n")
    ax_r.set_ylabel("time over the unconstrained step")
    ax_r.set_title("ratio to the unconstrained RNN", fontsize="medium")
    ax_r.grid(True, which="both", alpha=0.3)
    ax_r.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.bench_runtime``: run the section, print it, write JSON and plot."""
    from benchmarks.run import print_table

    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_runtime",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    ap.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    ap.add_argument("--plot", metavar="PATH", help="write the figure (PNG)")
    args = ap.parse_args(argv)
    rows = run(args.quick)
    print_table(rows)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rows": rows}, f, indent=1, default=float)
    if args.plot:
        plot_runtime(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
