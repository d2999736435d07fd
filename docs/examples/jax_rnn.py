"""Train a JAX RNN on the adding problem, its recurrent matrix kept orthogonal by projunn (optax).

The JAX twin of ``torch_rnn.py``. The adding problem (Hochreiter & Schmidhuber),
generated inline: each input sequence has T steps of two channels, a value
drawn uniformly from [0, 1] and a marker that is 1 at two steps (one in each
half of the sequence) and 0 elsewhere; the target is the sum of the two marked
values. Always answering 1, the mean, gives a mean squared error of 1/6 ≈ 0.167
(the variance of the sum), the baseline to beat.

The model is a ReLU RNN, ``h_t = relu(W h_{t-1} + V x_t + b)`` (``jax.lax.scan``),
with a linear read-out of the last state. Its recurrent matrix ``W`` starts
orthogonal (Haar) and is trained with :func:`unitary_lowrank.optax.projunn` (a
rank-k step along RMSprop's direction, retracted onto the orthogonal group in
O(h²k)), so it stays orthogonal to rounding for the whole run; every other
parameter uses ``optax.rmsprop``. ``optax.multi_transform`` routes them, and the
whole training step is one ``jax.jit``. As in the projUNN paper, the learning
rate of the orthogonal matrix is that of the others divided by 32.

Every ``--log-every`` steps the script prints the mean training loss since the
last line, the loss on a fixed evaluation batch, and ``‖WᵀW − I‖₂`` of the
recurrent matrix.

Run::

    python docs/examples/jax_rnn.py                          # T = 50
    python docs/examples/jax_rnn.py --steps 40 --length 10 --hidden 16 --log-every 10
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import unitary_lowrank as ul
from unitary_lowrank.optax import projunn


def adding_problem(key, batch: int, length: int, dtype=jnp.float32):
    """Inputs (batch, length, 2) and targets (batch, 1) of the adding problem."""
    k_values, k_first, k_second = jax.random.split(key, 3)
    values = jax.random.uniform(k_values, (batch, length), dtype=dtype)
    half = length // 2
    first = jax.random.randint(k_first, (batch,), 0, half)
    second = jax.random.randint(k_second, (batch,), half, length)
    steps = jnp.arange(length)
    marks = ((steps == first[:, None]) | (steps == second[:, None])).astype(dtype)
    target = jnp.sum(values * marks, axis=1, keepdims=True)
    return jnp.stack([values, marks], axis=-1), target


def init_params(key, hidden: int, dtype) -> dict:
    """Orthogonal (Haar) recurrent matrix, uniform input and read-out weights, zero biases."""
    k_w, k_v, k_r = jax.random.split(key, 3)
    bound = 1.0 / math.sqrt(hidden)
    return {
        "W": ul.random_unitary(hidden, dtype=dtype, rng=k_w),
        "V": jax.random.uniform(k_v, (hidden, 2), dtype, -bound, bound),
        "b": jnp.zeros(hidden, dtype),
        "readout_w": jax.random.uniform(k_r, (1, hidden), dtype, -bound, bound),
        "readout_b": jnp.zeros(1, dtype),
    }


def predict(params: dict, x):
    """The read-out of the RNN's last state, (batch, 1), for inputs x (batch, length, 2)."""

    def cell(h, x_t):
        h = jax.nn.relu(h @ params["W"].T + x_t @ params["V"].T + params["b"])
        return h, None

    h0 = jnp.zeros((x.shape[0], params["W"].shape[0]), x.dtype)
    h, _ = jax.lax.scan(cell, h0, jnp.swapaxes(x, 0, 1))
    return h @ params["readout_w"].T + params["readout_b"]


def mse(params: dict, x, y):
    """Mean squared error of the predictions."""
    return jnp.mean((predict(params, x) - y) ** 2)


def main(argv: list[str] | None = None) -> dict:
    """Train and print the log; returns the eval losses and the final unitarity error."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps")
    parser.add_argument("--length", type=int, default=50, help="sequence length T")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size h")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="RMSprop's learning rate; the orthogonal matrix uses lr/32")
    parser.add_argument("--rank", type=int, default=1, help="rank of the projunn step")
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
    if args.rank > args.hidden:
        parser.error("--rank must be <= --hidden")

    x64 = bool(jax.config.jax_enable_x64)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)  # restored below
    try:
        return _train(args)
    finally:
        jax.config.update("jax_enable_x64", x64)


def _train(args: argparse.Namespace) -> dict:
    dtype = getattr(jnp, args.dtype)
    key = jax.random.key(args.seed)
    key, k_init, k_eval = jax.random.split(key, 3)
    params = init_params(k_init, args.hidden, dtype)
    labels = {name: "unitary" if name == "W" else "other" for name in params}
    opt = optax.multi_transform(
        {"unitary": projunn(args.lr / 32, rank=args.rank, method=args.method, key=args.seed),
         "other": optax.rmsprop(args.lr)},
        labels,
    )
    state = opt.init(params)
    x_eval, y_eval = adding_problem(k_eval, 500, args.length, dtype)

    @jax.jit
    def train_step(params, state, key):
        x, y = adding_problem(key, args.batch, args.length, dtype)
        loss, grads = jax.value_and_grad(mse)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    evaluate = jax.jit(lambda params: mse(params, x_eval, y_eval))

    def unitarity() -> float:
        return float(ul.unitarity_error(np.asarray(params["W"])))

    print(f"adding problem T={args.length}, hidden {args.hidden}, {args.dtype}: recurrent "
          f"matrix by projunn (method {args.method!r}, rank {args.rank}, lr {args.lr / 32:.3g}), "
          f"the rest by RMSprop (lr {args.lr:.3g}); baseline loss 0.167")
    eval_losses = [float(evaluate(params))]
    print(f"step {0:5d}  eval loss {eval_losses[0]:.4f}  ‖WᵀW−I‖₂ {unitarity():.2e}")
    start, running = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        key, k_batch = jax.random.split(key)
        params, state, loss = train_step(params, state, k_batch)
        running.append(loss)
        if step % args.log_every == 0 or step == args.steps:
            eval_losses.append(float(evaluate(params)))
            train = float(jnp.mean(jnp.stack(running)))
            print(f"step {step:5d}  train loss {train:.4f}  "
                  f"eval loss {eval_losses[-1]:.4f}  ‖WᵀW−I‖₂ {unitarity():.2e}  "
                  f"({time.perf_counter() - start:.1f} s)")
            running = []
    return {"eval_losses": eval_losses, "unitarity_error": unitarity(),
            "steps": args.steps, "hidden": args.hidden, "dtype": args.dtype}


if __name__ == "__main__":
    main()
