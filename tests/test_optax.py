"""unitary_lowrank.optax.projunn: an optax GradientTransformation that keeps weights unitary.

Runs under JAX's default configuration (x64 off, single precision) unless a test
asks for the ``jax_x64`` fixture, which turns x64 on for that test only.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jnp = jax.numpy

import unitary_lowrank as ul  # noqa: E402
from unitary_lowrank.optax import ProjUNNState  # noqa: E402
from unitary_lowrank.optax import projunn as projunn_defaults  # noqa: E402
from unitary_lowrank.testing import compare_tol, eps_of, unitarity_bound  # noqa: E402

#: Most tests here check the mechanics on the paper's rule (RMSprop's direction, rank 1 unless
#: given); the defaults (Adam's direction, rank "auto") have tests of their own below.
projunn = functools.partial(projunn_defaults, direction="rmsprop", rank=1)


def _unitarity(W) -> float:
    """Largest ‖WᴴW − I‖₂ of a (batch of) matrices, computed on the host."""
    return float(np.max(ul.unitarity_error(np.asarray(W))))


def _drift_bound(n: int, dtype, steps: int) -> float:
    """Bound on ‖WᴴW − I‖₂ after `steps` updates applied by optax.apply_updates.

    One rounded start plus `steps` backward-stable steps and sums, adding up like a
    random walk (docs/theory.md, drift).
    """
    return unitarity_bound(n, dtype) * math.sqrt(steps + 1)


def _distance_loss(target):
    """``‖W − T‖_F²``: real for complex W too; its minimum over the group is at W = T."""

    def loss(params):
        d = params["W"] - target
        return jnp.sum(jnp.real(d * jnp.conj(d)))

    return loss


def _train(opt, params, loss, steps, *, jit=True):
    state = opt.init(params)

    def one(params, state):
        grads = jax.grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    one = jax.jit(one) if jit else one
    losses = [float(loss(params))]
    for _ in range(steps):
        params, state = one(params, state)
        losses.append(float(loss(params)))
    return params, state, losses


def _haar(n, dtype, seed, p=None, batch=()):
    return ul.random_unitary(n, p, dtype=dtype, batch_shape=batch, rng=jax.random.key(seed))


def _near(U, seed, scale=1.0):
    """``U expm(S)`` for a random skew-Hermitian S of size `scale`.

    A target the steps can reach (an orthogonal U's own connected component).
    """
    n = U.shape[-1]
    M = jax.random.normal(jax.random.key(seed), (*U.shape[:-2], n, n), dtype=U.dtype)
    S = scale * (M - jnp.conj(jnp.swapaxes(M, -1, -2))) / (2 * math.sqrt(n))
    return U @ jax.scipy.linalg.expm(S)


@pytest.mark.parametrize("dtype", ["float32", "complex64"])
@pytest.mark.parametrize("method", ["exp", "polar", "cayley"])
def test_loss_decreases_under_jit_with_x64_off(dtype, method):
    """JAX's default configuration: float32/complex64 weights, the loss falls, W stays unitary."""
    n, steps = 8, 40
    jdt = getattr(jnp, dtype)
    params = {"W": _haar(n, jdt, 0)}
    target = _near(params["W"], 1)
    opt = projunn(0.02, method=method, rank=2)
    params, _, losses = _train(opt, params, _distance_loss(target), steps)
    assert params["W"].dtype == jdt
    assert losses[-1] < 0.5 * losses[0]
    assert _unitarity(params["W"]) <= _drift_bound(n, dtype, steps)


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("direction", ["gradient", "rmsprop"])
def test_loss_decreases_in_double_precision(dtype, direction, jax_x64):
    n, steps = 10, 40
    jdt = getattr(jnp, dtype)
    params = {"W": _haar(n, jdt, 2)}
    target = _near(params["W"], 3)
    lr = 0.05 if direction == "gradient" else 0.02
    opt = projunn(lr, rank=3, direction=direction, sampler="randomized")
    params, _, losses = _train(opt, params, _distance_loss(target), steps)
    assert params["W"].dtype == jdt
    assert losses[-1] < 0.5 * losses[0]
    assert _unitarity(params["W"]) <= _drift_bound(n, dtype, steps)


def test_complex_gradient_is_conjugated(jax_x64):
    """jax.grad returns the conjugate of the ascent direction; the step must descend anyway.

    At full rank with the plain gradient and a small step, the loss falls at every step,
    by about lr·‖grad_R‖² (first order): a step along JAX's raw gradient would not.
    """
    n = 6
    params = {"W": _haar(n, jnp.complex128, 4)}
    loss = _distance_loss(_near(params["W"], 5))
    lr = 1e-3
    opt = projunn(lr, rank=n, direction="gradient", sampler="randomized")
    state = opt.init(params)
    g = jax.grad(loss)(params)
    updates, state = jax.jit(opt.update)(g, state, params)
    new = optax.apply_updates(params, updates)
    W, G = params["W"], jnp.conj(g["W"])  # G: the Euclidean ascent direction
    S = W.conj().T @ G
    riem = W @ (S - S.conj().T) / 2  # the Riemannian gradient (skew part) of the group
    predicted = lr * float(jnp.sum(jnp.abs(riem) ** 2))
    decrease = float(loss(params) - loss(new))
    assert decrease > 0
    assert decrease == pytest.approx(predicted, rel=10 * lr * n)
    # the raw (unconjugated) gradient is not a descent direction of this loss
    wrong = ul.retract(W, -lr * g["W"], jnp.eye(n, dtype=jnp.complex128), "exp")
    assert float(loss({"W": wrong})) > float(loss(params)) - 0.5 * predicted


def test_one_step_is_unitary_after_apply_updates(jax_x64):
    """The sum U + (U_new − U) of apply_updates rounds once more: still within the bound."""
    for dtype in ("float64", "complex128", "float32", "complex64"):
        jdt = getattr(jnp, dtype)
        n = 16
        U = _haar(n, jnp.complex128 if "complex" in dtype else jnp.float64, 0)
        U = ul.reunitarize(U) if dtype.endswith("128") or dtype == "float64" else U
        U = U.astype(jdt)
        G = _haar(n, jdt, 1)
        opt = projunn(0.1, rank=2)
        updates, _ = jax.jit(opt.update)({"W": G}, opt.init({"W": U}), {"W": U})
        W = optax.apply_updates({"W": U}, updates)["W"]
        assert W.dtype == jdt
        assert _unitarity(W) <= _unitarity(U) + unitarity_bound(n, dtype)


def test_chain_and_schedule_under_jit():
    n, steps = 8, 30
    params = {"W": _haar(n, jnp.float32, 10)}
    target = _near(params["W"], 11)
    schedule = optax.exponential_decay(0.03, transition_steps=10, decay_rate=0.5)
    opt = optax.chain(optax.clip_by_global_norm(10.0), projunn(schedule, rank=2))
    params, state, losses = _train(opt, params, _distance_loss(target), steps)
    assert losses[-1] < 0.5 * losses[0]
    assert _unitarity(params["W"]) <= _drift_bound(n, "float32", steps)
    assert int(state[1].count) == steps


def test_schedule_reads_the_count_of_the_state():
    """A schedule of the count: zero at step 0 (no move), the constant afterwards, traced."""
    n = 6
    U = _haar(n, jnp.float32, 0)
    G = {"W": _haar(n, jnp.float32, 1)}
    lr = 0.1
    sched = projunn(lambda count: jnp.where(count < 1, 0.0, lr), rank=1)
    const = projunn(lr, rank=1)
    params = {"W": U}
    s_sched, s_const = sched.init(params), const.init(params)
    upd, upd_const = jax.jit(sched.update), jax.jit(const.update)
    u0, s_sched = upd(G, s_sched, params)
    assert float(jnp.max(jnp.abs(u0["W"]))) == 0.0
    _, s_const = upd_const(G, s_const, params)  # the same key and running mean
    u1, s_sched = upd(G, s_sched, params)
    v1, s_const = upd_const(G, s_const, params)
    tol = compare_tol(n, "float32")
    assert float(jnp.max(jnp.abs(u1["W"] - v1["W"]))) <= tol
    assert int(s_sched.count) == 2


def test_multi_transform_routes_the_other_parameters():
    n = 6
    params = {"W": _haar(n, jnp.float32, 0), "V": jnp.ones((n, 3)), "b": jnp.zeros(n)}
    labels = {"W": "unitary", "V": "other", "b": "other"}
    grads = {"W": _haar(n, jnp.float32, 1), "V": jnp.full((n, 3), 0.5), "b": jnp.arange(n) * 1.0}
    opt = optax.multi_transform({"unitary": projunn(0.05, rank=2, key=7),
                                 "other": optax.adam(1e-2)}, labels)
    state = opt.init(params)
    updates, state = jax.jit(opt.update)(grads, state, params)
    new = optax.apply_updates(params, updates)
    # the unitary part is exactly projunn on W alone
    alone = projunn(0.05, rank=2, key=7)
    u_w, _ = jax.jit(alone.update)({"W": grads["W"]}, alone.init({"W": params["W"]}),
                                   {"W": params["W"]})
    assert float(jnp.max(jnp.abs(updates["W"] - u_w["W"]))) <= compare_tol(n, "float32")
    assert _unitarity(new["W"]) <= _unitarity(params["W"]) + unitarity_bound(n, "float32")
    # the rest is Adam's
    adam = optax.adam(1e-2)
    rest = {"V": params["V"], "b": params["b"]}
    u_rest, _ = jax.jit(adam.update)({"V": grads["V"], "b": grads["b"]}, adam.init(rest), rest)
    for name in ("V", "b"):
        assert float(jnp.max(jnp.abs(updates[name] - u_rest[name]))) <= eps_of("float32")


def test_multi_transform_training_with_a_dense_layer():
    """A small least-squares fit y ≈ W x + b, W orthogonal by projunn, b by Adam, under jit."""
    n, steps = 6, 60
    key = jax.random.key(0)
    params = {"W": _haar(n, jnp.float32, 20), "b": jnp.zeros(n)}
    W_true = _near(params["W"], 21)
    b_true = jnp.linspace(-1.0, 1.0, n)
    x = jax.random.normal(key, (64, n))
    y = x @ W_true.T + b_true
    labels = {"W": "unitary", "b": "other"}
    opt = optax.multi_transform({"unitary": projunn(0.01, rank=2),
                                 "other": optax.adam(0.05)}, labels)

    def loss(p):
        return jnp.mean((x @ p["W"].T + p["b"] - y) ** 2)

    params, _, losses = _train(opt, params, loss, steps)
    assert losses[-1] < 0.25 * losses[0]
    assert _unitarity(params["W"]) <= _drift_bound(n, "float32", steps)


def test_state_carries_and_splits_the_key():
    """Two updates from the same gradient draw different sketches; the same state repeats."""
    n = 8
    params = {"W": _haar(n, jnp.float32, 0)}
    grads = {"W": jax.random.normal(jax.random.key(9), (n, n))}  # full rank: the sketch matters
    opt = projunn(0.1, rank=1, direction="gradient")
    state0 = opt.init(params)
    assert isinstance(state0, ProjUNNState) and state0.square_avg is None
    upd = jax.jit(opt.update)
    u1, state1 = upd(grads, state0, params)
    u2, state2 = upd(grads, state1, params)
    again, _ = upd(grads, state0, params)
    tol = compare_tol(n, "float32")
    assert float(jnp.max(jnp.abs(u1["W"] - again["W"]))) <= tol  # deterministic
    assert float(jnp.max(jnp.abs(u1["W"] - u2["W"]))) > 100 * tol  # a new sketch
    keys = [jax.random.key_data(s.key) for s in (state0, state1, state2)]
    assert not bool(jnp.array_equal(keys[0], keys[1]))
    assert not bool(jnp.array_equal(keys[1], keys[2]))
    # an int seed is the key of jax.random.key(seed)
    same = projunn(0.1, rank=1, direction="gradient", key=jax.random.key(0))
    u_same, _ = jax.jit(same.update)(grads, same.init(params), params)
    assert float(jnp.max(jnp.abs(u_same["W"] - u1["W"]))) <= tol


def test_leaves_draw_different_sketches():
    n = 8
    U = _haar(n, jnp.float32, 0)
    G = jax.random.normal(jax.random.key(9), (n, n))
    params, grads = {"a": U, "b": U}, {"a": G, "b": G}
    opt = projunn(0.1, rank=1, direction="gradient")
    updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    assert float(jnp.max(jnp.abs(updates["a"] - updates["b"]))) > 100 * compare_tol(n, "float32")


@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_batched_leaves(dtype):
    n, steps = 6, 30
    jdt = getattr(jnp, dtype)
    params = {"W": _haar(n, jdt, 0, batch=(3,))}
    target = _near(params["W"], 1)
    opt = projunn(0.02, rank=2)
    params, state, losses = _train(opt, params, _distance_loss(target), steps)
    assert params["W"].shape == (3, n, n)
    assert state.square_avg["W"].shape == (3, n, n)
    assert state.square_avg["W"].dtype == jnp.float32
    assert losses[-1] < 0.5 * losses[0]
    assert _unitarity(params["W"]) <= _drift_bound(n, dtype, steps)


def test_stiefel_leaves_with_polar():
    n, p, steps = 10, 4, 30
    target = _haar(n, jnp.float32, 1, p=p, batch=(2,))
    params = {"W": _haar(n, jnp.float32, 0, p=p, batch=(2,))}
    opt = projunn(0.02, method="polar", rank=2)
    params, _, losses = _train(opt, params, _distance_loss(target), steps)
    assert params["W"].shape == (2, n, p)
    assert losses[-1] < 0.5 * losses[0]
    assert _unitarity(params["W"]) <= _drift_bound(n, "float32", steps)


def test_without_jit():
    """Concrete arrays take the library's value checks (finite, unitary along the step)."""
    n = 6
    params = {"W": _haar(n, jnp.float32, 0)}
    target = _near(params["W"], 1)
    params, _, losses = _train(projunn(0.02, rank=2), params, _distance_loss(target), 2,
                               jit=False)
    assert losses[-1] < losses[0]
    opt = projunn(0.02)
    bad = {"W": 2.0 * params["W"]}
    with pytest.raises(ValueError, match="not unitary"):
        opt.update({"W": params["W"]}, opt.init(bad), bad)


def test_update_needs_params():
    opt = projunn(0.1)
    params = {"W": _haar(4, jnp.float32, 0)}
    state = opt.init(params)
    with pytest.raises(ValueError, match="params"):
        opt.update(params, state)
    with pytest.raises(ValueError, match="params"):
        opt.update(params, state, None)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"method": "qr"}, ValueError, "method"),
    ({"sampler": "gauss"}, ValueError, "sampler"),
    ({"direction": "sgd"}, ValueError, "direction"),
    ({"rank": "half"}, ValueError, "rank must be an int >= 1, 'full' or 'auto', got 'half'"),
    ({"b1": 1.0}, ValueError, r"b1 must be in \[0, 1\), got 1.0"),
    ({"b2": -0.1}, ValueError, "b2"),
    ({"b1": "0.9"}, TypeError, "b1"),
    ({"momentum": 1.0}, ValueError, "momentum"),
    ({"momentum": jnp.asarray(1.5)}, ValueError, "momentum"),
    ({"direction": "adam", "momentum": 0.9}, ValueError,
     r"momentum does not apply to direction='adam' \(its momentum is b1\)"),
    ({"rank": 0}, ValueError, "rank"),
    ({"rank": 1.5}, TypeError, "rank"),
    ({"decay": 1.0}, ValueError, "decay"),
    ({"eps": 0.0}, ValueError, "eps"),
    ({"eps": "small"}, TypeError, "eps"),
    ({"key": -1}, ValueError, "key"),
    ({"key": "seed"}, TypeError, "key"),
    ({"check_unitary": 1}, TypeError, "check_unitary"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        projunn(0.1, **kwargs)


def test_bad_learning_rate():
    with pytest.raises(TypeError, match="learning_rate"):
        projunn("0.1")
    with pytest.raises(TypeError, match="learning_rate"):
        projunn(jnp.ones(2))
    with pytest.raises(ValueError, match="learning_rate"):
        projunn(float("nan"))


@pytest.mark.parametrize("lr", [-0.1, -1e-30, jnp.asarray(-0.1), np.float32(-1.0)])
def test_negative_learning_rate_is_refused(lr):
    """As torch.optim refuses it: a negative step size ascends the loss."""
    with pytest.raises(ValueError, match=r"learning_rate must be finite and >= 0, got -"):
        projunn(lr)
    projunn(0.0)  # zero is a valid (frozen) step size


def test_non_unitary_leaf_is_refused_at_init():
    """2·U trained for 20 jitted steps without an error and stayed off the group."""
    U = _haar(6, jnp.float32, 0)
    params = {"layer": {"W": 2.0 * U}}
    with pytest.raises(ValueError, match=r"\['layer'\]\['W'\] is not unitary .* = 3 > sqrt"):
        projunn(0.01).init(params)
    with pytest.raises(ValueError, match=r"\['W'\] is not unitary"):  # the exact norm is used
        projunn(0.01, method="polar").init({"W": U.at[0, 0].add(0.01)})
    big = _haar(600, jnp.float32, 1, p=520)  # beyond 512 columns: the probe estimate
    projunn(0.01, method="polar").init({"W": big})
    with pytest.raises(ValueError, match="not unitary"):
        projunn(0.01, method="polar").init({"W": 1.5 * big})
    projunn(0.01, check_unitary=False).init(params)  # skipped on request
    jax.jit(projunn(0.01).init)(params)  # and for traced leaves (no value to read)
    projunn(0.01).init({"W": U})


def test_wide_leaf_is_refused_at_init_naming_its_path():
    """A 4×8 leaf passed init with method='polar', then failed in update without its path."""
    W = jnp.swapaxes(_haar(8, jnp.float32, 0, p=4), -1, -2)
    opt = projunn(0.01, method="polar")
    with pytest.raises(ValueError, match=r"wide shape \(4, 8\) at \['enc'\]\['W'\]"):
        opt.init({"enc": {"W": W}})
    # update names the leaf too (params given to update that init never saw)
    tall = {"enc": {"W": _haar(8, jnp.float32, 0, p=4)}}
    state = opt.init(tall)
    with pytest.raises(ValueError, match=r"wide shape \(4, 8\) at \['enc'\]\['W'\]"):
        opt.update({"enc": {"W": W}}, state, {"enc": {"W": W}})
    with pytest.raises(ValueError, match=r"gradient at \['enc'\]\['W'\] must have .* "
                                         r"\(8, 4\), got \(4, 8\)"):
        opt.update({"enc": {"W": W}}, state, tall)


def test_value_errors_of_an_eager_update_name_the_leaf():
    U = _haar(6, jnp.float32, 0)
    params = {"a": U, "b": 2.0 * U}
    opt = projunn(0.01, check_unitary=False)
    with pytest.raises(ValueError, match=r"projunn: at \['b'\]: U is not unitary"):
        opt.update({"a": U, "b": U}, opt.init(params), params)


def test_complex_gradient_of_a_real_leaf_is_refused():
    """Its imaginary part was silently dropped."""
    U = _haar(6, jnp.float32, 0)
    opt = projunn(0.01, direction="gradient")
    state = opt.init({"W": U})
    g = {"W": (1.0 + 1.0j) * jnp.ones((6, 6), jnp.complex64)}
    for update in (opt.update, jax.jit(opt.update)):
        with pytest.raises(TypeError, match=r"gradient at \['W'\] is complex \(complex64\) "
                                            r"but the parameter is real \(float32\)"):
            update(g, state, {"W": U})


def test_large_int_seeds():
    """key=2**70 raised OverflowError; with x64 off, key=2**32 was the key of seed 0."""
    params = {"W": _haar(4, jnp.float32, 0)}

    def key_of(seed):
        return np.asarray(jax.random.key_data(projunn(0.1, key=seed).init(params).key))

    for seed in (0, 1, 2**31, 2**32 - 1):  # below 2**32: jax.random.key(seed), as before
        assert np.array_equal(key_of(seed), jax.random.key_data(jax.random.key(seed)))
    seeds = [0, 1, 2**32, 2**32 + 1, 2**63, 2**64, 2**64 + 1, 2**70, 2**200]
    keys = {tuple(key_of(seed).tolist()) for seed in seeds}
    assert len(keys) == len(seeds)  # no two seeds share a key
    assert np.array_equal(key_of(2**70), key_of(2**70))  # and a seed is reproducible


def test_bad_leaves_at_init():
    with pytest.raises(ValueError, match="square"):
        projunn(0.1).init({"W": jnp.zeros((4, 3))})
    with pytest.raises(ValueError, match="matrices"):
        projunn(0.1).init({"b": jnp.zeros(4)})
    with pytest.raises(ValueError, match="rank"):
        projunn(0.1, method="polar", rank=4).init({"W": jnp.zeros((5, 3))})
    with pytest.raises(TypeError, match="floating"):
        projunn(0.1).init({"W": jnp.zeros((3, 3), dtype=jnp.int32)})


def test_inject_hyperparams_learning_rate():
    """optax.inject_hyperparams passes a (traced) 0-d array as the learning rate."""
    n = 6
    opt = optax.inject_hyperparams(projunn, static_args=("rank", "decay", "eps", "key"))(
        learning_rate=0.05, rank=2)
    params = {"W": _haar(n, jnp.float32, 0)}
    grads = {"W": _haar(n, jnp.float32, 1)}
    state = opt.init(params)
    upd = jax.jit(opt.update)
    updates, state = upd(grads, state, params)
    assert _unitarity(optax.apply_updates(params, updates)["W"]) <= (
        _unitarity(params["W"]) + unitarity_bound(n, "float32"))
    state.hyperparams["learning_rate"] = jnp.asarray(0.0)
    updates, state = upd(grads, state, params)
    assert float(jnp.max(jnp.abs(updates["W"]))) == 0.0


@pytest.mark.parametrize("sampler", ["randomized", "column"])
def test_other_samplers_with_x64_off(sampler):
    """The library's double-precision cores run in single precision without x64, silently."""
    n, steps = 8, 20
    params = {"W": _haar(n, jnp.complex64, 0)}
    target = _near(params["W"], 1)
    opt = projunn(0.02, rank=2, sampler=sampler)
    params, _, losses = _train(opt, params, _distance_loss(target), steps)
    assert losses[-1] < losses[0]
    assert _unitarity(params["W"]) <= _drift_bound(n, "complex64", steps)


# ------------------------------------------------ directions, momentum, rank="full"

#: The direction rules checked against the dense reference: (direction, momentum).
_RULES = [("gradient", 0.0), ("gradient", 0.9), ("rmsprop", 0.0), ("rmsprop", 0.5),
          ("adam", 0.0)]


def _reference_run(U, grad, steps, *, lr, direction, momentum, method, decay=0.99, b1=0.9,
                   b2=0.999, eps=1e-8):
    """`steps` updates of projUNN's rule written out in NumPy, with a dense retraction.

    Textbook forms, independent of the library: RMSprop ``G / (√v + ε)``, Adam
    ``m̂ / (√v̂ + ε)`` with the bias corrections of step t, heavy ball ``b = μb + D``;
    then ``U expm(Ω)`` (SciPy), the Cayley solve or the SVD polar factor of ``U − lr·D``,
    with ``Ω = (UᴴS − SᴴU)/2`` and ``S = −lr·D``. `grad` gives JAX's gradient at W.
    """
    from scipy.linalg import expm

    W = np.array(U)
    sq_avg = exp_avg = exp_avg_sq = buf = 0.0
    for t in range(1, steps + 1):
        g = np.asarray(grad(W))
        G = np.conj(g) if np.iscomplexobj(W) else g
        if direction == "rmsprop":
            sq_avg = decay * sq_avg + (1 - decay) * np.abs(G) ** 2
            D = G / (np.sqrt(sq_avg) + eps)
        elif direction == "adam":
            exp_avg = b1 * exp_avg + (1 - b1) * G
            exp_avg_sq = b2 * exp_avg_sq + (1 - b2) * np.abs(G) ** 2
            D = (exp_avg / (1 - b1**t)) / (np.sqrt(exp_avg_sq / (1 - b2**t)) + eps)
        else:
            D = G
        if momentum:
            buf = momentum * buf + D
            D = buf
        S = -lr * D
        if method == "polar":
            X, _, Vh = np.linalg.svd(W + S, full_matrices=False)
            W = X @ Vh
            continue
        M = W.conj().T @ S
        Om = (M - M.conj().T) / 2
        eye = np.eye(W.shape[-1])
        W = W @ (expm(Om) if method == "exp" else np.linalg.solve(eye - Om / 2, eye + Om / 2))
    return W


def _rule_case(dtype, seed, p=None):
    """A Haar start, the gradient of a loss that changes along the run, and that loss."""
    jdt = getattr(jnp, dtype)
    U = _haar(8, jdt, seed, p=p)
    target = _haar(8, jdt, seed + 1, p=p)
    weights = jnp.asarray(np.linspace(0.5, 2.0, U.size).reshape(U.shape), dtype=jdt)

    def loss(params):
        d = params["W"] - target
        return jnp.sum(jnp.real(weights * d * jnp.conj(d)) ** 2)

    def grad(W):
        return jax.grad(loss)({"W": jnp.asarray(W)})["W"]

    return U, loss, grad


def _run_jitted(opt, U, loss, steps):
    params = {"W": U}
    state = opt.init(params)

    @jax.jit
    def one(params, state):
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = one(params, state)
    return params["W"], state


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("method", ["exp", "cayley", "polar"])
@pytest.mark.parametrize(("direction", "momentum"), _RULES)
def test_full_rank_rule_matches_the_dense_reference(direction, momentum, method, dtype,
                                                    jax_x64):
    """rank="full": four jitted updates equal the rule written out with scipy's expm."""
    steps, lr = 4, 0.02
    U, loss, grad = _rule_case(dtype, 10)
    opt = projunn(lr, rank="full", method=method, direction=direction, momentum=momentum)
    W, state = _run_jitted(opt, U, loss, steps)
    ref = _reference_run(U, grad, steps, lr=lr, direction=direction, momentum=momentum,
                         method=method)
    assert_close_np(W, ref, steps * compare_tol(8, dtype))
    assert _unitarity(W) <= _drift_bound(8, dtype, steps)
    assert int(state.count) == steps


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize(("direction", "momentum"), _RULES)
def test_low_rank_rule_at_rank_n_matches_the_dense_reference(direction, momentum, dtype,
                                                             jax_x64):
    """A sketch of rank n is exact: the low-rank path then takes the same steps."""
    steps, lr = 4, 0.02
    U, loss, grad = _rule_case(dtype, 20)
    opt = projunn(lr, rank=8, sampler="randomized", direction=direction, momentum=momentum)
    W, _ = _run_jitted(opt, U, loss, steps)
    ref = _reference_run(U, grad, steps, lr=lr, direction=direction, momentum=momentum,
                         method="exp")
    assert_close_np(W, ref, steps * compare_tol(8, dtype))


def test_full_rank_stiefel_leaf_with_adam(jax_x64):
    steps, lr = 3, 0.02
    U, loss, grad = _rule_case("float64", 30, p=5)
    opt = projunn(lr, rank="full", method="polar", direction="adam")
    W, _ = _run_jitted(opt, U, loss, steps)
    ref = _reference_run(U, grad, steps, lr=lr, direction="adam", momentum=0.0,
                         method="polar")
    assert W.shape == (8, 5)
    assert_close_np(W, ref, steps * compare_tol(8, "float64"))


@pytest.mark.parametrize(("direction", "momentum", "fields"), [
    ("gradient", 0.0, ()),
    ("gradient", 0.9, ("momentum_buffer",)),
    ("rmsprop", 0.0, ("square_avg",)),
    ("rmsprop", 0.5, ("square_avg", "momentum_buffer")),
    ("adam", 0.0, ("exp_avg", "exp_avg_sq")),
])
def test_state_holds_the_running_means_of_the_rule(direction, momentum, fields):
    U = _haar(6, jnp.complex64, 0, batch=(2,))
    state = projunn(0.1, direction=direction, momentum=momentum).init({"W": U})
    real = {"square_avg", "exp_avg_sq"}
    for name in ("square_avg", "exp_avg", "exp_avg_sq", "momentum_buffer"):
        value = getattr(state, name)
        if name not in fields:
            assert value is None, name
            continue
        assert value["W"].shape == (2, 6, 6)
        assert value["W"].dtype == (jnp.float32 if name in real else jnp.complex64), name


def test_adam_and_momentum_train_under_jit_with_x64_off():
    n, steps = 8, 40
    params = {"W": _haar(n, jnp.float32, 0)}
    target = _near(params["W"], 1)
    for kwargs in ({"direction": "adam", "rank": 2}, {"direction": "adam", "rank": "full"},
                   {"direction": "rmsprop", "momentum": 0.9, "rank": 2},
                   {"direction": "gradient", "momentum": 0.9, "rank": "full",
                    "method": "cayley"}):
        opt = projunn(0.02, **kwargs)
        trained, _, losses = _train(opt, params, _distance_loss(target), steps)
        assert losses[-1] < 0.5 * losses[0], kwargs
        assert _unitarity(trained["W"]) <= _drift_bound(n, "float32", steps), kwargs


def test_inject_hyperparams_betas_and_momentum():
    """b1, b2 and momentum may be injected (traced 0-d arrays inside the update)."""
    n = 6
    params = {"W": _haar(n, jnp.float32, 0)}
    grads = {"W": _haar(n, jnp.float32, 1)}
    for kwargs in ({"direction": "adam", "b1": 0.8}, {"direction": "rmsprop",
                                                       "momentum": 0.5}):
        opt = optax.inject_hyperparams(projunn, static_args=("rank", "decay", "eps", "key"))(
            learning_rate=0.05, rank="full", **kwargs)
        state = opt.init(params)
        updates, state = jax.jit(opt.update)(grads, state, params)
        assert _unitarity(optax.apply_updates(params, updates)["W"]) <= (
            _unitarity(params["W"]) + 2 * unitarity_bound(n, "float32"))
    with pytest.raises(ValueError, match="momentum does not apply"):
        optax.inject_hyperparams(projunn, static_args=("rank", "decay", "eps", "key"))(
            learning_rate=0.05, direction="adam", momentum=0.5).init(params)


def assert_close_np(actual, desired, tol):
    diff = float(np.max(np.abs(np.asarray(actual) - np.asarray(desired))))
    assert diff <= tol, f"max difference {diff:.3e} exceeds {tol:.3e}"


def test_the_defaults_are_adam_at_full_rank_for_small_leaves_and_rank_1_above():
    import unitary_lowrank.torch as ult

    small = _haar(6, jnp.float32, 0)
    big = _haar(ult.AUTO_FULL_MAX + 2, jnp.float32, 1)
    opt = projunn_defaults(1e-3)
    state = opt.init({"a": small, "b": big})
    assert state.exp_avg["a"].shape == small.shape  # Adam's running means are kept
    G = {"a": jax.random.normal(jax.random.key(2), small.shape),
         "b": jax.random.normal(jax.random.key(3), big.shape)}
    updates, _ = jax.jit(opt.update)(G, state, {"a": small, "b": big})
    # rank "auto": a full-rank step for the small leaf, a rank-1 step for the large one
    assert int(np.linalg.matrix_rank(np.asarray(updates["a"]), tol=1e-6)) > 2
    assert int(np.linalg.matrix_rank(np.asarray(updates["b"]), tol=1e-6)) <= 2
