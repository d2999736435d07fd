"""Train a PyTorch RNN on the adding problem, its recurrent matrix kept orthogonal by ProjUNN.

The adding problem (Hochreiter & Schmidhuber), generated inline: each input
sequence has T steps of two channels, a value drawn uniformly from [0, 1] and
a marker that is 1 at two steps (one in each half of the sequence) and 0
elsewhere; the target is the sum of the two marked values. Always answering
1, the mean, gives a mean squared error of 1/6 ≈ 0.167 (the variance of the
sum), the baseline to beat.

The model is a stock ``torch.nn.RNN`` (ReLU) with a linear read-out. Its
recurrent matrix ``weight_hh_l0`` is initialised orthogonal and trained with
:class:`unitary_lowrank.torch.ProjUNN` (a rank-k step along RMSprop's direction,
retracted onto the orthogonal group in O(h²k)), so it stays orthogonal to
rounding for the whole run; every other parameter uses ``torch.optim.RMSprop``.
As in the projUNN paper, the learning rate of the orthogonal matrix is that of
the others divided by 32.

Every ``--log-every`` steps the script prints the mean training loss since the
last line, the loss on a fixed evaluation batch, and ``‖WᵀW − I‖₂`` of the
recurrent matrix.

Run::

    python docs/examples/torch_rnn.py                          # T = 50, about a minute
    python docs/examples/torch_rnn.py --steps 40 --length 10 --hidden 16 --log-every 10
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import unitary_lowrank as ul
from unitary_lowrank.torch import ProjUNN


def adding_problem(batch: int, length: int, gen: torch.Generator, dtype=torch.float32):
    """Inputs (batch, length, 2) and targets (batch, 1) of the adding problem."""
    values = torch.rand(batch, length, generator=gen, dtype=torch.float64)
    half = length // 2
    first = torch.randint(0, half, (batch,), generator=gen)
    second = torch.randint(half, length, (batch,), generator=gen)
    marks = torch.zeros(batch, length, dtype=torch.float64)
    rows = torch.arange(batch)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    target = (values * marks).sum(dim=1, keepdim=True)
    return torch.stack([values, marks], dim=-1).to(dtype), target.to(dtype)


class AddingRNN(torch.nn.Module):
    """``nn.RNN`` (ReLU, orthogonal recurrent matrix) and a linear read-out of the last state."""

    def __init__(self, hidden: int, dtype: torch.dtype, gen: torch.Generator):
        super().__init__()
        self.rnn = torch.nn.RNN(2, hidden, nonlinearity="relu", batch_first=True, dtype=dtype)
        self.readout = torch.nn.Linear(hidden, 1, dtype=dtype)
        bound = 1.0 / math.sqrt(hidden)
        with torch.no_grad():  # initialised from `gen` only: the global RNG is left alone
            torch.nn.init.orthogonal_(self.rnn.weight_hh_l0, generator=gen)
            self.rnn.weight_ih_l0.uniform_(-bound, bound, generator=gen)
            self.rnn.bias_ih_l0.zero_()
            self.rnn.bias_hh_l0.zero_()
            self.readout.weight.uniform_(-bound, bound, generator=gen)
            self.readout.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.rnn(x)
        return self.readout(states[:, -1])


def main(argv: list[str] | None = None) -> dict:
    """Train and print the log; returns the eval losses and the final unitarity error."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps")
    parser.add_argument("--length", type=int, default=50, help="sequence length T")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size h")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="RMSprop's learning rate; the orthogonal matrix uses lr/32")
    parser.add_argument("--rank", type=int, default=1, help="rank of the ProjUNN step")
    parser.add_argument("--method", choices=("exp", "polar", "cayley"), default="exp")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("steps", "length", "hidden", "batch", "rank", "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.length < 2:
        parser.error("--length must be >= 2 (one marker in each half)")

    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(args.seed)
    model = AddingRNN(args.hidden, dtype, gen)
    W = model.rnn.weight_hh_l0
    others = [p for p in model.parameters() if p is not W]
    unitary = ProjUNN([W], lr=args.lr / 32, rank=args.rank, method=args.method,
                      generator=args.seed)
    ordinary = torch.optim.RMSprop(others, lr=args.lr)
    x_eval, y_eval = adding_problem(500, args.length, gen, dtype)

    def evaluate() -> float:
        with torch.no_grad():
            return torch.nn.functional.mse_loss(model(x_eval), y_eval).item()

    def unitarity() -> float:
        return float(ul.unitarity_error(W.detach()))

    print(f"adding problem T={args.length}, hidden {args.hidden}, {args.dtype}: recurrent "
          f"matrix by ProjUNN (method {args.method!r}, rank {args.rank}, lr {args.lr / 32:.3g}), "
          f"the rest by RMSprop (lr {args.lr:.3g}); baseline loss 0.167")
    eval_losses = [evaluate()]
    print(f"step {0:5d}  eval loss {eval_losses[0]:.4f}  ‖WᵀW−I‖₂ {unitarity():.2e}")
    start, running = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        x, y = adding_problem(args.batch, args.length, gen, dtype)
        unitary.zero_grad()
        ordinary.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        unitary.step()
        ordinary.step()
        running.append(loss.item())
        if step % args.log_every == 0 or step == args.steps:
            eval_losses.append(evaluate())
            print(f"step {step:5d}  train loss {sum(running) / len(running):.4f}  "
                  f"eval loss {eval_losses[-1]:.4f}  ‖WᵀW−I‖₂ {unitarity():.2e}  "
                  f"({time.perf_counter() - start:.1f} s)")
            running = []
    return {"eval_losses": eval_losses, "unitarity_error": unitarity(),
            "steps": args.steps, "hidden": args.hidden, "dtype": args.dtype}


if __name__ == "__main__":
    main()
