"""unitary_lowrank.torch.ProjUNN: a torch.optim.Optimizer over ul.step.

The optimizer's update is checked bit for bit against ``ul.step`` on the same
direction with the same generator, so everything ``ul.step`` guarantees
(accuracy, unitarity) carries over; the rest checks what the wrapper adds:
groups, schedulers, state_dict, wide/Stiefel/batched/complex weights, refusals
and failure atomicity.
"""

from __future__ import annotations

import copy
import io
import math
import re
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import unitary_lowrank as ul  # noqa: E402
from unitary_lowrank.testing import (  # noqa: E402
    compare_tol,
    eps_of,
    rounded_unitarity_bound,
    unitarity_bound,
)
from unitary_lowrank.torch import ProjUNN  # noqa: E402

DTYPES = {"float32": torch.float32, "float64": torch.float64,
          "complex64": torch.complex64, "complex128": torch.complex128}


def _name(dtype) -> str:
    return str(dtype).rsplit(".", 1)[-1]


def orthonormal(shape, dtype=torch.float64, seed=0):
    """A Haar weight of shape (..., n, p): orthonormal columns, or rows when p > n."""
    *batch, n, p = shape
    tall = ul.random_unitary(max(n, p), min(n, p), dtype=_name(dtype), batch_shape=tuple(batch),
                             rng=seed, xp=torch)
    return (tall if p <= n else tall.mT).contiguous()


def gaussian(shape, dtype, gen):
    if dtype.is_complex:
        return torch.complex(torch.randn(shape, dtype=torch.float64, generator=gen),
                             torch.randn(shape, dtype=torch.float64, generator=gen)).to(dtype)
    return torch.randn(shape, dtype=torch.float64, generator=gen).to(dtype)


def error(W: torch.Tensor) -> float:
    """‖WᴴW − I‖₂ of a tall weight or ‖WWᴴ − I‖₂ of a wide one (largest over the batch)."""
    W = W.detach()
    return float(ul.unitarity_error(W.mH if W.shape[-1] > W.shape[-2] else W).max())


def first_generator(seed: int, index: int = 0) -> np.random.Generator:
    """The documented generator of the `index`-th parameter of ProjUNN(generator=seed)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(index,))))


def saved_generator(state: dict) -> np.random.Generator:
    s, inc, has, u = state["rng_state"]
    bits = np.random.PCG64()
    bits.state = {"bit_generator": "PCG64", "state": {"state": s, "inc": inc},
                  "has_uint32": has, "uinteger": u}
    return np.random.Generator(bits)


def expected_step(W, G, lr, gen, *, direction="rmsprop", square_avg=None, rank=1, method="exp",
                  sampler="lsi", alpha=0.99, eps=1e-8, adam=None, t=1):
    """ul.step on the direction the optimizer should use; wide weights through Wᴴ.

    `adam`: the previous ``(exp_avg, exp_avg_sq)`` for ``direction="adam"`` (then the
    returned running mean is that pair), `t` the number of the step.
    """
    if direction == "rmsprop":
        D, v = ul.rmsprop_direction(G, square_avg, alpha=alpha, eps=eps)
    elif direction == "adam":
        D, m, sq = ul.adam_direction(G, *(adam or (None, None)), t, eps=eps)
        v = (m, sq)
    else:
        D, v = G, None
    wide = W.shape[-1] > W.shape[-2]
    new = ul.step(W.mH if wide else W, D.mH if wide else D, lr, rank=rank, method=method,
                  sampler=sampler, rng=gen)
    return (new.mH if wide else new), v


CASES = [  # shape, dtype, method
    ((6, 6), torch.float64, "exp"),
    ((6, 6), torch.complex128, "cayley"),
    ((6, 6), torch.float32, "polar"),
    ((3, 5, 5), torch.complex64, "exp"),  # batch
    ((9, 4), torch.float64, "polar"),  # Stiefel, tall
    ((4, 9), torch.complex128, "polar"),  # wide: orthonormal rows
    ((2, 3, 7), torch.float32, "polar"),  # batch of wide
]


@pytest.mark.parametrize("direction", ["rmsprop", "gradient", "adam"])
@pytest.mark.parametrize(("shape", "dtype", "method"), CASES)
def test_step_is_ul_step_bit_for_bit(shape, dtype, method, direction):
    gen = torch.Generator().manual_seed(1)
    W0 = orthonormal(shape, dtype, seed=2)
    p = torch.nn.Parameter(W0.clone())
    opt = ProjUNN([p], lr=0.01, rank=2, method=method, direction=direction, generator=7)
    rng = first_generator(7)
    W, v = W0, None
    for t in range(3):
        G = gaussian(shape, dtype, gen)
        p.grad = G.clone()
        opt.step()
        W, v = expected_step(W, G, 0.01, rng, direction=direction, square_avg=v, rank=2,
                             method=method, adam=v, t=t + 1)
        assert torch.equal(p.detach(), W), t
        state = opt.state[p]
        assert state["step"] == t + 1
        if direction == "adam":
            assert torch.equal(state["exp_avg"], v[0]) and torch.equal(state["exp_avg_sq"], v[1])
            assert "square_avg" not in state
        elif direction == "rmsprop":
            assert torch.equal(state["square_avg"], v)
            assert state["square_avg"].dtype == torch.empty(0, dtype=dtype).real.dtype
        else:
            assert "square_avg" not in state
        # the saved state is the generator's own
        assert saved_generator(state).bit_generator.state == rng.bit_generator.state
    assert p.dtype == dtype and p.shape == shape and p.device == W0.device
    assert error(p) <= unitarity_bound(max(shape[-2:]), _name(dtype)) * math.sqrt(3)


def test_groups_have_their_own_hyperparameters_and_generators():
    gen = torch.Generator().manual_seed(0)
    a = torch.nn.Parameter(orthonormal((8, 8), seed=1))
    b = torch.nn.Parameter(orthonormal((8, 8), seed=2))
    c = torch.nn.Parameter(orthonormal((10, 3), seed=3))
    opt = ProjUNN([{"params": [a, b]},
                   {"params": [c], "lr": 0.3, "rank": 3, "method": "polar",
                    "sampler": "randomized", "direction": "gradient"}],
                  lr=0.02, method="cayley", rank=2, direction="rmsprop", generator=11)
    olds = [x.detach().clone() for x in (a, b, c)]
    grads = [gaussian(tuple(x.shape), torch.float64, gen) for x in (a, b, c)]
    for x, G in zip((a, b, c), grads, strict=True):
        x.grad = G
    opt.step()
    want_a, _ = expected_step(olds[0], grads[0], 0.02, first_generator(11, 0), rank=2,
                              method="cayley")
    want_b, _ = expected_step(olds[1], grads[1], 0.02, first_generator(11, 1), rank=2,
                              method="cayley")
    want_c, _ = expected_step(olds[2], grads[2], 0.3, first_generator(11, 2), rank=3,
                              method="polar", sampler="randomized", direction="gradient")
    assert torch.equal(a.detach(), want_a)
    assert torch.equal(b.detach(), want_b)
    assert torch.equal(c.detach(), want_c)


def test_grad_none_is_skipped_and_draws_nothing():
    a = torch.nn.Parameter(orthonormal((5, 5), seed=1))
    b = torch.nn.Parameter(orthonormal((5, 5), seed=2))
    b0 = b.detach().clone()
    opt = ProjUNN([a, b], lr=0.1, rank=1, direction="rmsprop", generator=3)
    G = gaussian((5, 5), torch.float64, torch.Generator().manual_seed(0))
    a.grad = G.clone()
    opt.step()
    assert torch.equal(b.detach(), b0) and b not in opt.state
    # b's first step later uses b's own generator, untouched by a's steps
    b.grad = G.clone()
    a.grad = None
    a1 = a.detach().clone()
    opt.step()
    want, _ = expected_step(b0, G, 0.1, first_generator(3, 1))
    assert torch.equal(b.detach(), want) and torch.equal(a.detach(), a1)
    assert opt.step() is None  # no gradient at all: nothing to do


def test_closure_returns_its_loss_and_its_gradient_is_used():
    gen = torch.Generator().manual_seed(0)
    W = torch.nn.Parameter(orthonormal((6, 6), seed=4))
    W0 = W.detach().clone()
    x = gaussian((3, 6), torch.float64, gen)
    opt = ProjUNN([W], lr=0.05, rank=1, direction="rmsprop", generator=5)
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = (x @ W).square().sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert calls == [True]
    assert torch.equal(loss, (x @ W0).square().sum())
    want, _ = expected_step(W0, 2 * x.T @ (x @ W0), 0.05, first_generator(5))
    assert torch.equal(W.detach(), want)


def test_steplr_scheduler_sets_the_lr_of_each_step():
    gen = torch.Generator().manual_seed(0)
    W = torch.nn.Parameter(orthonormal((6, 6), seed=1))
    W_ref = W.detach().clone()
    opt = ProjUNN([W], lr=0.1, rank=1, direction="gradient", generator=2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    rng = first_generator(2)
    lrs = []
    for _ in range(5):
        G = gaussian((6, 6), torch.float64, gen)
        W.grad = G.clone()
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        W_ref, _ = expected_step(W_ref, G, lrs[-1], rng, direction="gradient")
        assert torch.equal(W.detach(), W_ref)
    assert lrs == [0.1, 0.1, 0.05, 0.05, 0.025]


class _Model(torch.nn.Module):
    """A square real, a wide complex and a tall weight; the tall one only used late."""

    def __init__(self):
        super().__init__()
        self.square = torch.nn.Parameter(orthonormal((6, 6), torch.float64, seed=1))
        self.wide = torch.nn.Parameter(orthonormal((3, 5), torch.complex128, seed=2))
        self.tall = torch.nn.Parameter(orthonormal((5, 2), torch.float64, seed=3))

    def loss(self, x, t):
        y = self.wide @ (self.square[:5, :5].to(torch.complex128) @ x)
        out = (y.abs() ** 2).sum()
        if t >= 3:  # no gradient (None) for `tall` before the resume point
            out = out + (self.tall.T @ x.real[:5]).square().sum()
        return out


def _train(model, opt, steps, start):
    gen = torch.Generator().manual_seed(42)
    xs = [gaussian((5, 4), torch.complex128, gen) for _ in range(6)]
    for t in range(start, start + steps):
        opt.zero_grad()
        model.loss(xs[t], t).backward()
        opt.step()


def _optimizer(model, generator):
    return ProjUNN([{"params": [model.square], "method": "exp", "rank": 2},
                    {"params": [model.wide, model.tall], "method": "polar"}],
                   lr=0.05, rank=1, direction="rmsprop", generator=generator)


def test_state_dict_round_trip_is_bit_identical():
    full = _Model()
    opt = _optimizer(full, 9)
    _train(full, opt, 6, 0)

    first = _Model()
    opt1 = _optimizer(first, 9)
    _train(first, opt1, 3, 0)
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "optim": opt1.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf)  # weights_only: the state holds tensors, ints and tuples only

    resumed = _Model()
    resumed.load_state_dict(saved["model"])
    opt2 = _optimizer(resumed, None)  # other entropy: the saved one must win
    opt2.load_state_dict(saved["optim"])
    assert resumed.tall not in opt2.state  # never stepped before the save
    _train(resumed, opt2, 3, 3)
    for name in ("square", "wide", "tall"):
        assert torch.equal(getattr(resumed, name), getattr(full, name)), name
    assert opt2.state[resumed.wide]["square_avg"].dtype == torch.float64


def test_rewinding_and_copying_the_optimizer_repeat_the_same_steps():
    gen = torch.Generator().manual_seed(0)
    W = torch.nn.Parameter(orthonormal((6, 6), seed=1))
    opt = ProjUNN([W], lr=0.05, rank=2, generator=4)
    grads = [gaussian((6, 6), torch.float64, gen) for _ in range(5)]
    for G in grads[:3]:
        W.grad = G.clone()
        opt.step()
    saved, W3 = copy.deepcopy(opt.state_dict()), W.detach().clone()
    # a deep copy of weight and optimizer together: its pickled state carries the root
    # entropy and the generators' states
    twin_W, twin = copy.deepcopy((W, opt))
    after = []
    for G in grads[3:]:
        W.grad = G.clone()
        opt.step()
        after.append(W.detach().clone())
    with torch.no_grad():  # rewind to step 3
        W.copy_(W3)
    opt.load_state_dict(saved)
    for G, want in zip(grads[3:], after, strict=True):
        W.grad = G.clone()
        opt.step()
        assert torch.equal(W.detach(), want)
        twin_W.grad = G.clone()
        twin.step()
        assert torch.equal(twin_W.detach(), want)
    assert twin.state_dict()["projunn_entropy"] == 4


def test_torch_generator_seeds_reproducibly():
    def run(gen):
        W = torch.nn.Parameter(orthonormal((6, 6), seed=0))
        opt = ProjUNN([W], lr=0.1, generator=gen)
        W.grad = gaussian((6, 6), torch.float64, torch.Generator().manual_seed(1))
        opt.step()
        return W.detach()

    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(run(g1), run(g2))
    assert torch.equal(g1.get_state(), g2.get_state())
    assert not torch.equal(g1.get_state(), torch.Generator().manual_seed(3).get_state())


LONG = [  # shape, dtype, method, rank: many random steps, still unitary
    ((8, 8), torch.complex64, "exp", 1),
    ((8, 8), torch.complex128, "cayley", 2),
    ((4, 6, 6), torch.float32, "cayley", 1),
    ((12, 5), torch.float64, "polar", 2),
    ((5, 12), torch.complex64, "polar", 1),
    ((2, 4, 9), torch.float64, "polar", 3),
]


@pytest.mark.parametrize(("shape", "dtype", "method", "rank"), LONG)
def test_stays_unitary_after_many_steps(shape, dtype, method, rank):
    steps = 300
    gen = torch.Generator().manual_seed(0)
    W = torch.nn.Parameter(orthonormal(shape, dtype, seed=5))
    opt = ProjUNN([W], lr=0.01, rank=rank, method=method, generator=6)
    for _ in range(steps):
        W.grad = gaussian(shape, dtype, gen)
        opt.step()
    # each step is backward stable (unitarity_bound); the rounding errors add up
    # like a random walk (docs/theory.md, drift): √steps of them
    n = max(shape[-2:])
    assert error(W) <= unitarity_bound(n, _name(dtype)) * math.sqrt(steps)
    assert W.dtype == dtype and W.shape == shape


def _loss_decreases(dtype, direction, method):
    gen = torch.Generator().manual_seed(0)
    n = 6
    W0 = orthonormal((n, n), dtype, seed=1)
    # a reachable target: W0 times the exponential of a skew-Hermitian matrix
    S = gaussian((n, n), dtype, gen)
    target = W0 @ torch.linalg.matrix_exp((S - S.mH) / 4)
    W = torch.nn.Parameter(W0.clone())
    lr = 0.02 if direction == "rmsprop" else 0.1  # RMSprop's entries are about ±1
    opt = ProjUNN([W], lr=lr, rank=2, method=method, direction=direction, generator=2)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = ((W - target).abs() ** 2).sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("direction", ["rmsprop", "gradient"])
@pytest.mark.parametrize(("dtype", "method"), [(torch.complex128, "exp"),
                                               (torch.complex64, "cayley"),
                                               (torch.float64, "polar"),
                                               (torch.float32, "exp")])
def test_loss_decreases(dtype, method, direction):
    """The .grad torch gives a complex weight is the ascent direction: −lr·G descends."""
    losses = _loss_decreases(dtype, direction, method)
    assert losses[-1] < 0.1 * losses[0], losses[::10]


def test_wrongly_conjugated_gradient_would_not_descend():
    """Control for test_loss_decreases: stepping along conj(G) does not descend on U(n)."""
    gen = torch.Generator().manual_seed(0)
    W0 = orthonormal((6, 6), torch.complex128, seed=1)
    S = gaussian((6, 6), torch.complex128, gen)
    target = W0 @ torch.linalg.matrix_exp((S - S.mH) / 4)
    W = torch.nn.Parameter(W0.clone())
    opt = ProjUNN([W], lr=0.1, rank=2, direction="gradient", generator=2)
    first = ((W0 - target).abs() ** 2).sum().item()
    for _ in range(60):
        opt.zero_grad()
        ((W - target).abs() ** 2).sum().backward()
        W.grad = W.grad.conj()
        opt.step()
    assert ((W - target).abs() ** 2).sum().item() > 0.1 * first


@pytest.mark.parametrize(("shape", "kind"), [((5, 5), "columns"), ((7, 3), "columns"),
                                             ((3, 7), "rows"), ((2, 4, 4), "columns")])
def test_non_unitary_weight_is_refused_at_its_first_step(shape, kind):
    gen = torch.Generator().manual_seed(0)
    ok = torch.nn.Parameter(orthonormal((4, 4), seed=0))
    bad = torch.nn.Parameter(torch.randn(shape, dtype=torch.float64, generator=gen))
    bad0 = bad.detach().clone()
    opt = ProjUNN([ok, bad], lr=0.1, method="polar", generator=0)
    ok0 = ok.detach().clone()
    ok.grad = torch.ones_like(ok)
    bad.grad = torch.ones_like(bad)
    with pytest.raises(ValueError, match=rf"parameter 1 of param group 0 \(shape "
                                         rf"{re_shape(shape)}.*orthonormal {kind}.*orthogonal_"):
        opt.step()
    assert torch.equal(bad.detach(), bad0) and torch.equal(ok.detach(), ok0)
    assert len(opt.state) == 0


def re_shape(shape):
    return re.escape(str(tuple(shape)))


def test_named_parameters_are_named_in_errors():
    lin = torch.nn.Linear(4, 4, bias=False, dtype=torch.float64)  # default init: not orthogonal
    opt = ProjUNN(lin.named_parameters(), generator=0)
    lin.weight.grad = torch.ones_like(lin.weight)
    with pytest.raises(ValueError, match="parameter 0 \\('weight'\\) of param group 0"):
        opt.step()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("direction", ["rmsprop", "gradient", "adam"])
def test_non_finite_gradient_raises_and_changes_nothing(bad, direction):
    gen = torch.Generator().manual_seed(0)
    a = torch.nn.Parameter(orthonormal((6, 6), seed=1))
    b = torch.nn.Parameter(orthonormal((6, 4), seed=2))
    opt = ProjUNN([a, b], lr=0.05, method="polar", direction=direction, generator=3)
    for x in (a, b):
        x.grad = gaussian(tuple(x.shape), torch.float64, gen)
    opt.step()
    before = {id(x): x.detach().clone() for x in (a, b)}
    states = {id(x): {k: (v.clone() if torch.is_tensor(v) else v)
                      for k, v in opt.state[x].items()} for x in (a, b)}
    a.grad = gaussian((6, 6), torch.float64, gen)  # a is fine: still not updated
    b.grad = gaussian((6, 4), torch.float64, gen)
    b.grad[2, 1] = bad
    with pytest.raises(ValueError, match=r"parameter 1 of param group 0 .*nothing was changed"
                                         r".*NaN or infinity"):
        opt.step()
    for x in (a, b):
        assert torch.equal(x.detach(), before[id(x)])
        assert opt.state[x].keys() == states[id(x)].keys()
        for k, v in states[id(x)].items():
            assert (torch.equal(opt.state[x][k], v) if torch.is_tensor(v)
                    else opt.state[x][k] == v), k
    # the caller may skip the batch and go on: the next step is the one it would have been
    twin_a = torch.nn.Parameter(before[id(a)].clone())
    twin_b = torch.nn.Parameter(before[id(b)].clone())
    twin = ProjUNN([twin_a, twin_b], lr=0.05, method="polar", direction=direction, generator=0)
    twin.load_state_dict(opt.state_dict())
    for x, y in ((a, twin_a), (b, twin_b)):
        x.grad = gaussian(tuple(x.shape), torch.float64, gen)
        y.grad = x.grad.clone()
    opt.step()
    twin.step()
    assert torch.equal(a.detach(), twin_a.detach()) and torch.equal(b.detach(), twin_b.detach())
    assert error(b) <= unitarity_bound(6, "float64") * math.sqrt(2)


def test_non_finite_weight_raises():
    W = torch.nn.Parameter(orthonormal((5, 5), seed=1))
    opt = ProjUNN([W], generator=0)
    W.grad = torch.ones_like(W)
    opt.step()
    with torch.no_grad():
        W[0, 0] = float("nan")
    state = dict(opt.state[W])
    with pytest.raises(ValueError, match="parameter 0 of param group 0.*NaN or infinity"):
        opt.step()
    assert bool(torch.isnan(W[0, 0])) and opt.state[W] == state


def test_repair_every_repairs_a_drifted_weight():
    W = torch.nn.Parameter(orthonormal((8, 8), seed=1))
    # rank 1: a full-rank step ends with a Newton–Schulz correction, repairing drift itself
    opt = ProjUNN([W], lr=1e-3, rank=1, repair_every=2, generator=0)
    G = gaussian((8, 8), torch.float64, torch.Generator().manual_seed(0))
    W.grad = G
    opt.step()  # step 1: no check
    assert opt.state[W].get("repairs", 0) == 0
    with torch.no_grad():  # drift well above the guard's 32·eps, below retract's sqrt(eps)
        W.add_(1e-10 * gaussian((8, 8), torch.float64, torch.Generator().manual_seed(1)))
    drifted = error(W)
    assert drifted > 32 * eps_of("float64")
    opt.step()  # step 2: checked and repaired
    assert opt.state[W]["repairs"] == 1
    assert error(W) <= rounded_unitarity_bound(8, "float64")
    opt.step()  # step 3: not a check
    assert opt.state[W]["repairs"] == 1


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"lr": -1.0}, ValueError, "lr must be finite and >= 0"),
    ({"lr": float("nan")}, ValueError, "lr must be"),
    ({"lr": "0.1"}, TypeError, "lr must be a real number"),
    ({"method": "qr"}, ValueError, "method must be one of"),
    ({"rank": 0}, ValueError, "rank must be >= 1"),
    ({"rank": 1.0}, TypeError, "rank must be an int"),
    ({"rank": True}, TypeError, "rank must be an int"),
    ({"sampler": "svd"}, ValueError, "sampler must be one of"),
    ({"direction": "adamw"}, ValueError, "direction must be one of"),
    ({"rank": "half"}, ValueError, "rank must be an int >= 1, 'full' or 'auto'"),
    ({"betas": (0.9, 1.0)}, ValueError, r"betas\[1\] must be in \[0, 1\)"),
    ({"betas": 0.9}, TypeError, "betas must be a pair"),
    ({"momentum": -0.1}, ValueError, r"momentum must be in \[0, 1\)"),
    ({"momentum": 0.9, "direction": "adam"}, ValueError, "carries its own momentum"),
    ({"maximize": 1}, TypeError, "maximize must be a bool"),
    ({"check_unitary": None}, TypeError, "check_unitary must be a bool"),
    ({"alpha": 1.0}, ValueError, r"alpha must be in \[0, 1\)"),
    ({"alpha": None}, TypeError, "alpha must be a real number"),
    ({"eps": 0.0}, ValueError, "eps must be finite and > 0"),
    ({"eps": float("inf")}, ValueError, "eps must be finite and > 0"),
    ({"repair_every": 0}, ValueError, "repair_every must be >= 1"),
    ({"repair_every": 2.5}, TypeError, "repair_every must be None or an int"),
    ({"generator": -1}, ValueError, "generator must be a non-negative int seed"),
    ({"generator": 1.5}, TypeError, "generator must be None, an int seed or a torch.Generator"),
    ({"generator": np.random.default_rng(0)}, TypeError, "generator must be None"),
])
def test_bad_hyperparameters_are_named(kwargs, exc, match):
    W = torch.nn.Parameter(orthonormal((4, 4)))
    with pytest.raises(exc, match=match):
        ProjUNN([W], **kwargs)


def test_bad_groups_and_weights_are_named():
    sq = torch.nn.Parameter(orthonormal((4, 4)))
    tall = torch.nn.Parameter(orthonormal((6, 3)))
    with pytest.raises(ValueError, match=r"rank must be >= 1 \(param group 1\)"):
        ProjUNN([{"params": [sq]}, {"params": [tall], "rank": 0, "method": "polar"}])
    with pytest.raises(ValueError, match=r"parameter 0 of param group 0 \(shape \(6, 3\).*"
                                         "method='exp' needs square weights.*'polar'"):
        ProjUNN([tall])
    with pytest.raises(ValueError, match="parameter 0 of param group 1.*method='cayley'"):
        ProjUNN([{"params": [sq]}, {"params": [tall.T.detach().clone().requires_grad_()]}],
                method="cayley")
    with pytest.raises(ValueError, match=r"rank must be <= min\(n, p\) = 3, got 4"):
        ProjUNN([tall], method="polar", rank=4)
    with pytest.raises(ValueError, match="matrix or a batch of matrices"):
        ProjUNN([torch.nn.Parameter(torch.ones(4, dtype=torch.float64))])
    with pytest.raises(TypeError, match="float32, float64, complex64 or complex128.*float16"):
        ProjUNN([torch.nn.Parameter(torch.eye(4, dtype=torch.float16))])
    opt = ProjUNN([sq])
    with pytest.raises(ValueError, match=r"method must be one of .* \(param group 1\)"):
        opt.add_param_group({"params": [tall], "method": "svd"})
    assert len(opt.param_groups) == 1
    with pytest.raises(ValueError, match="method='exp' needs square"):
        opt.add_param_group({"params": [tall]})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [tall], "method": "polar"})
    # values written into a group later are checked at the step
    opt.param_groups[0]["lr"] = float("inf")
    sq.grad = torch.ones_like(sq)
    with pytest.raises(ValueError, match=r"lr must be finite and >= 0 \(param group 0\)"):
        opt.step()
    opt.param_groups[0]["lr"] = 0.1
    opt.param_groups[0]["rank"] = 5
    with pytest.raises(ValueError, match=r"rank must be <= min\(n, p\) = 4"):
        opt.step()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_cuda_weights_stay_on_the_device(dtype):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for torch")
    dev = torch.device("cuda")
    gen = torch.Generator().manual_seed(0)
    W0 = orthonormal((16, 16), dtype, seed=1).to(dev)
    W = torch.nn.Parameter(W0.clone())
    opt = ProjUNN([W], lr=0.01, rank=2, generator=4)
    rng = first_generator(4)
    ref, v = W0, None
    for _ in range(5):
        G = gaussian((16, 16), dtype, gen).to(dev)
        W.grad = G.clone()
        opt.step()
        ref, v = expected_step(ref, G, 0.01, rng, square_avg=v, rank=2)
    assert W.device.type == "cuda" and W.dtype == dtype
    assert opt.state[W]["square_avg"].device.type == "cuda"
    assert torch.equal(W.detach(), ref)
    assert error(W) <= unitarity_bound(16, _name(dtype)) * math.sqrt(5)



# ------------------------------------------------- Adam, momentum, maximize, full rank
def _dense_reference(W0, grads, lr, *, direction, momentum=0.0, maximize=False,
                     betas=(0.9, 0.999), alpha=0.99, eps=1e-8):
    """The optimizer's rule written out in NumPy/SciPy: W ← W expm(skew(Wᴴ(−lr·D)))."""
    from scipy.linalg import expm

    W = W0.numpy().astype(np.complex128 if W0.is_complex() else np.float64)
    m = v = buf = None
    for t, g in enumerate(grads, start=1):
        g = -g.numpy() if maximize else g.numpy()
        sq = np.abs(g) ** 2
        if direction == "adam":
            m = (1 - betas[0]) * g if m is None else betas[0] * m + (1 - betas[0]) * g
            v = (1 - betas[1]) * sq if v is None else betas[1] * v + (1 - betas[1]) * sq
            D = (m / (1 - betas[0] ** t)) / (np.sqrt(v / (1 - betas[1] ** t)) + eps)
        elif direction == "rmsprop":
            v = (1 - alpha) * sq if v is None else alpha * v + (1 - alpha) * sq
            D = g / (np.sqrt(v) + eps)
        else:
            D = g
        if momentum:
            buf = D if buf is None else momentum * buf + D
            D = buf
        S = W.conj().T @ (-lr * D)
        W = W @ expm((S - S.conj().T) / 2)
    return W


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize(("direction", "momentum", "maximize"), [
    ("adam", 0.0, False), ("adam", 0.0, True), ("rmsprop", 0.9, False),
    ("gradient", 0.5, True)])
def test_full_rank_rules_match_a_dense_reference(dtype, direction, momentum, maximize):
    gen = torch.Generator().manual_seed(3)
    W0 = orthonormal((7, 7), dtype, seed=4)
    grads = [gaussian((7, 7), dtype, gen) for _ in range(4)]
    p = torch.nn.Parameter(W0.clone())
    opt = ProjUNN([p], lr=0.05, rank="full", direction=direction, momentum=momentum,
                  maximize=maximize)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    want = _dense_reference(W0, grads, 0.05, direction=direction, momentum=momentum,
                            maximize=maximize)
    assert np.max(np.abs(p.detach().numpy() - want)) <= compare_tol(7, _name(dtype)) * 4
    assert error(p) <= unitarity_bound(7, _name(dtype))
    if momentum:
        assert opt.state[p]["momentum_buffer"].dtype == dtype


def test_maximize_is_descent_on_the_negated_gradient():
    gen = torch.Generator().manual_seed(5)
    a = torch.nn.Parameter(orthonormal((6, 6), seed=6))
    b = torch.nn.Parameter(a.detach().clone())
    up = ProjUNN([a], lr=0.05, rank=2, direction="adam", maximize=True, generator=1)
    down = ProjUNN([b], lr=0.05, rank=2, direction="adam", generator=1)
    for _ in range(3):
        g = gaussian((6, 6), torch.float64, gen)
        a.grad, b.grad = g.clone(), -g
        up.step()
        down.step()
    assert torch.equal(a.detach(), b.detach())


def test_rank_auto_is_full_for_small_weights_and_low_rank_for_large(monkeypatch):
    import unitary_lowrank.torch as ult

    seen = []
    real = ul.step
    monkeypatch.setattr(ul, "step", lambda *a, **k: seen.append(k["rank"]) or real(*a, **k))
    small = torch.nn.Parameter(orthonormal((8, 8), seed=1))
    large = torch.nn.Parameter(orthonormal((ult.AUTO_FULL_MAX + 1, 3), seed=2))
    opt = ProjUNN([small, large], rank="auto", method="polar", generator=0)
    small.grad, large.grad = torch.ones(8, 8, dtype=torch.float64), torch.ones_like(large)
    opt.step()
    assert seen == ["full", ult.AUTO_RANK]


def test_momentum_state_round_trips_bit_identically():
    gen = torch.Generator().manual_seed(8)
    grads = [gaussian((5, 5), torch.complex128, gen) for _ in range(6)]

    def run(opt, p, gs):
        for g in gs:
            p.grad = g.clone()
            opt.step()

    for kw in ({"direction": "adam"}, {"direction": "rmsprop", "momentum": 0.9}):
        full = torch.nn.Parameter(orthonormal((5, 5), torch.complex128, seed=9))
        run(ProjUNN([full], lr=0.05, rank=2, generator=4, **kw), full, grads)
        half = torch.nn.Parameter(orthonormal((5, 5), torch.complex128, seed=9))
        opt = ProjUNN([half], lr=0.05, rank=2, generator=4, **kw)
        run(opt, half, grads[:3])
        buf = io.BytesIO()
        torch.save(opt.state_dict(), buf)
        buf.seek(0)
        again = ProjUNN([half], lr=0.05, rank=2, **kw)
        again.load_state_dict(torch.load(buf))
        run(again, half, grads[3:])
        assert torch.equal(half.detach(), full.detach()), kw


@pytest.mark.parametrize("direction", ["rmsprop", "adam"])
def test_a_gradient_spike_is_refused_instead_of_freezing_the_weight(direction):
    # float32, entries 1e20: |G|² overflows; a running mean of inf would make every later
    # step exactly zero (torch.optim.RMSprop's fate). The step is refused, nothing changes.
    W = torch.nn.Parameter(orthonormal((6, 6), torch.float32, seed=1))
    opt = ProjUNN([W], lr=0.01, rank=2, direction=direction, generator=0)
    gen = torch.Generator().manual_seed(0)
    W.grad = torch.full((6, 6), -1e20)  # at the first step: no state is made
    with pytest.raises(ValueError, match="refused, nothing was changed"):
        opt.step()
    assert W not in opt.state
    W.grad = gaussian((6, 6), torch.float32, gen)
    opt.step()
    before = W.detach().clone()
    state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in opt.state[W].items()}
    W.grad = torch.full((6, 6), 1e20)
    with pytest.raises(ValueError, match=r"refused, nothing was changed.*square overflows "
                                         r"torch.float32 \(largest \|G\| = 1e\+20\)"):
        opt.step()
    assert torch.equal(W.detach(), before)
    for k, v in state.items():
        assert (torch.equal(opt.state[W][k], v) if torch.is_tensor(v) else opt.state[W][k] == v)
    W.grad = gaussian((6, 6), torch.float32, gen)
    opt.step()
    assert not torch.equal(W.detach(), before)  # the weight still learns
    assert all(bool(torch.isfinite(v).all()) for v in opt.state[W].values()
               if torch.is_tensor(v))


def test_check_unitary_false_skips_the_first_step_check(monkeypatch):
    import unitary_lowrank.torch as ult

    calls = []
    monkeypatch.setattr(ult, "_check_unitary", lambda *a: calls.append(a))
    for flag, want in ((False, 0), (True, 1)):
        W = torch.nn.Parameter(orthonormal((5, 5), seed=2))
        opt = ProjUNN([W], check_unitary=flag, generator=0)
        W.grad = torch.ones(5, 5, dtype=torch.float64)
        opt.step()
        assert len(calls) == want


# ------------------------------------------------------------ resuming, Ctrl-C
def test_a_complex128_state_resumes_into_complex64_weights():
    gen = torch.Generator().manual_seed(1)
    W = torch.nn.Parameter(orthonormal((5, 5), torch.complex128, seed=1))
    opt = ProjUNN([W], lr=0.01, rank=2, direction="adam", generator=0)
    W.grad = gaussian((5, 5), torch.complex128, gen)
    opt.step()
    W32 = torch.nn.Parameter(W.detach().to(torch.complex64))
    opt32 = ProjUNN([W32], lr=0.01, rank=2, direction="adam")
    opt32.load_state_dict(opt.state_dict())
    st = opt32.state[W32]
    assert st["exp_avg"].dtype == torch.complex64 and st["exp_avg_sq"].dtype == torch.float32
    W32.grad = gaussian((5, 5), torch.complex64, gen)
    opt32.step()
    assert error(W32) <= unitarity_bound(5, "complex64") * 2


def test_foreign_and_damaged_states_are_named():
    V = torch.nn.Parameter(orthonormal((4, 4), seed=1))
    rms = torch.optim.RMSprop([V], lr=0.01)
    V.grad = torch.ones(4, 4, dtype=torch.float64)
    rms.step()
    W = torch.nn.Parameter(orthonormal((4, 4), seed=1))
    W.grad = torch.ones(4, 4, dtype=torch.float64)
    opt = ProjUNN([W], generator=0)
    with pytest.raises(ValueError, match="not the state of a ProjUNN optimizer"):
        opt.load_state_dict(rms.state_dict())
    opt.step()
    good = opt.state_dict()
    bad = copy.deepcopy(good)
    bad["state"][0]["rng_state"] = bad["state"][0]["rng_state"][:2]
    with pytest.raises(ValueError, match=r"ProjUNN.load_state_dict: parameter 0 .*rng_state"):
        ProjUNN([W]).load_state_dict(bad)
    bad = copy.deepcopy(good)
    bad["state"][0]["square_avg"] = torch.ones(3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"'square_avg' has shape \(3, 3\), the weight \(4, 4\)"):
        ProjUNN([W]).load_state_dict(bad)
    # a state saved before betas, momentum, maximize and check_unitary existed still loads
    old = copy.deepcopy(good)
    for key in ("betas", "momentum", "maximize", "check_unitary"):
        del old["param_groups"][0][key]
    again = ProjUNN([W])
    again.load_state_dict(old)
    assert again.param_groups[0]["momentum"] == 0.0


def test_ctrl_c_during_the_write_loop_leaves_all_weights_new():
    # A SIGINT raised while the first weight is written is held until the last is.
    import signal

    ws = [torch.nn.Parameter(orthonormal((5, 5), seed=s)) for s in range(3)]
    opt = ProjUNN(ws, lr=0.05, rank=2, generator=0)
    gen = torch.Generator().manual_seed(2)
    for w in ws:
        w.grad = gaussian((5, 5), torch.float64, gen)
    before = [w.detach().clone() for w in ws]
    real_copy = torch.Tensor.copy_
    fired = []

    def copy_and_interrupt(self, src, *a, **k):
        if not fired:
            fired.append(True)
            signal.raise_signal(signal.SIGINT)
        return real_copy(self, src, *a, **k)

    torch.Tensor.copy_ = copy_and_interrupt
    try:
        with pytest.raises(KeyboardInterrupt):
            opt.step()
    finally:
        torch.Tensor.copy_ = real_copy
    assert fired
    assert all(not torch.equal(w.detach(), b) for w, b in zip(ws, before, strict=True))
    assert all(opt.state[w]["step"] == 1 for w in ws)


# ------------------------------------------- whole models, seeds, refusals, compile
def test_one_optimizer_trains_a_whole_model_through_param_groups():
    from unitary_lowrank.torch import OrthogonalRNN, param_groups

    torch.manual_seed(0)
    model = OrthogonalRNN(2, 8, output_size=3, nonlinearity="relu", dtype=torch.float64)
    opt = ProjUNN(param_groups(model), lr=1e-2)
    free = [p for g in opt.param_groups if not g["constrained"] for p in g["params"]]
    x, y = torch.randn(16, 7, 2, dtype=torch.float64), torch.randint(0, 3, (16,))
    before = [p.detach().clone() for p in free]
    losses = []
    for _ in range(30):
        opt.zero_grad()
        out, _ = model(x)
        loss = torch.nn.functional.cross_entropy(out[:, -1], y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert error(model.weight_hh) <= unitarity_bound(8, "float64")
    assert all(not torch.equal(p.detach(), b) for p, b in zip(free, before, strict=True))


def test_unconstrained_group_follows_the_same_rule_as_torch_adam():
    gen = torch.Generator().manual_seed(3)
    b = torch.nn.Parameter(torch.randn(5, dtype=torch.float64, generator=gen))
    twin = torch.nn.Parameter(b.detach().clone())
    opt = ProjUNN([{"params": [b], "constrained": False, "weight_decay": 0.1}], lr=0.01,
                  betas=(0.8, 0.99))
    ref = torch.optim.AdamW([twin], lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)
    for _ in range(4):
        g = torch.randn(5, dtype=torch.float64, generator=gen)
        b.grad, twin.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    assert torch.allclose(b.detach(), twin.detach(), rtol=0, atol=20 * eps_of("float64"))


def test_torch_manual_seed_makes_a_run_reproducible():
    def run():
        torch.manual_seed(0)
        W = torch.nn.Parameter(orthonormal((40, 40), seed=1))  # rank "auto" -> full: rank 2
        opt = ProjUNN([W], lr=0.05, rank=2)
        gen = torch.Generator().manual_seed(5)
        for _ in range(5):
            W.grad = gaussian((40, 40), torch.float64, gen)
            opt.step()
        return W.detach()

    assert torch.equal(run(), run())


def test_refusals_say_what_to_do():
    conv = torch.nn.Conv2d(8, 8, 3, bias=False)
    torch.nn.init.orthogonal_(conv.weight)
    conv.weight.grad = torch.ones_like(conv.weight)
    with pytest.raises(ValueError, match="read as a batch of 8×8 3×3 matrices.*OrthogonalConv2d"):
        ProjUNN([conv.weight]).step()
    Z = torch.nn.Parameter(2 * orthonormal((4, 4), torch.complex128, seed=1))
    Z.grad = torch.ones_like(Z)
    with pytest.raises(ValueError, match=r"unitary_lowrank.torch.unitary_\(weight\) \(torch.nn.init"
                                         r".orthogonal_ refuses complex"):
        ProjUNN([Z]).step()
    bias = torch.nn.Parameter(torch.zeros(4))
    with pytest.raises(ValueError, match="constrained\": False.*param_groups"):
        ProjUNN([bias])
    with pytest.raises(ValueError, match="weight_decay applies to unconstrained groups only"):
        ProjUNN([torch.nn.Parameter(orthonormal((4, 4)))], weight_decay=0.01)


def test_torch_compile_of_the_model_and_of_a_whole_step():
    from unitary_lowrank.torch import OrthogonalRNN, param_groups

    torch.manual_seed(0)
    model = OrthogonalRNN(1, 8, output_size=4, nonlinearity="relu")
    opt = ProjUNN(param_groups(model), lr=1e-3)
    x, y = torch.randn(4, 6, 1), torch.randint(0, 4, (4,))
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager")
    losses = []
    for _ in range(3):  # filterwarnings=error: any warning fails the test
        opt.zero_grad()
        out, _ = compiled(x)
        loss = torch.nn.functional.cross_entropy(out[:, -1], y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]

    @torch.compile(backend="eager")
    def train_step(x, y):  # ProjUNN.step inside: one graph break (torch.compiler.disable)
        opt.zero_grad()
        out, _ = model(x)
        loss = torch.nn.functional.cross_entropy(out[:, -1], y)
        loss.backward()
        opt.step()
        return loss

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(3):
            train_step(x, y)
    ours = [w for w in seen if "unitary_lowrank" in str(w.filename)
            or "recompile" in str(w.message)]
    assert not ours, [str(w.message) for w in ours]
    assert error(model.weight_hh) <= unitarity_bound(8, "float32") * 4
