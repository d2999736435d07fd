"""The tasks' data, the RNN's forward pass and BPTT (against finite differences), RMSprop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from array_api_compat import array_namespace

from unitary_lowrank.cli.tasks import data, rnn
from unitary_lowrank.cli.tasks.optim import RMSprop
from unitary_lowrank.testing import eps_of

npx = array_namespace(np.empty(0))


# ---------------------------------------------------------------- data


@pytest.mark.parametrize(("T", "K"), [(1, 1), (5, 3), (20, 10)])
def test_copy_batch_layout(T, K):
    x, y = data.copy_batch(7, T, rng=1, n_copy=K)
    L = T + 2 * K
    assert x.shape == y.shape == (L, 7)
    symbols = x[:K]
    assert np.all((symbols >= 1) & (symbols <= data.N_SYMBOLS))
    assert np.all(x[K : K + T - 1] == data.BLANK)
    assert np.all(x[K + T - 1] == data.MARKER)
    assert np.all(x[K + T :] == data.BLANK)
    assert np.all(y[: T + K] == data.BLANK)
    assert np.array_equal(y[T + K :], symbols)


def test_copy_batch_is_seeded_and_uses_all_symbols():
    a = data.copy_batch(64, 4, rng=3)
    b = data.copy_batch(64, 4, rng=3)
    c = data.copy_batch(64, 4, rng=4)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], c[0])
    assert set(np.unique(a[0][: data.N_COPY])) == set(range(1, data.N_SYMBOLS + 1))


def test_copy_baseline_values():
    # K·ln 8 / (T + 2K) with K = 10 (docs/tasks.md): 0.0204 at T = 1000, 0.0103 at T = 2000.
    assert round(data.copy_baseline(1000), 4) == 0.0204
    assert round(data.copy_baseline(2000), 4) == 0.0103
    assert data.copy_baseline(100) == pytest.approx(10 * math.log(8) / 120)


def test_copy_baseline_is_the_memoryless_cross_entropy():
    """Predicting blanks with certainty and a uniform guess at the recall scores the baseline."""
    T, K = 6, 3
    _, y = data.copy_batch(5, T, rng=0, n_copy=K)
    logits = np.full((T + 2 * K, 5, 9), -np.inf)
    logits[: T + K, :, 0] = 0.0
    logits[T + K :, :, 1:] = 0.0
    logits = np.where(np.isfinite(logits), logits, -1e30)
    loss, _ = rnn.cross_entropy(logits, np.eye(9)[y], xp=npx)
    assert float(loss) == pytest.approx(data.copy_baseline(T, n_copy=K), rel=1e-12)


@pytest.mark.parametrize("T", [2, 3, 11])
def test_adding_batch(T):
    x, y = data.adding_batch(200, T, rng=2)
    assert x.shape == (T, 200, 2) and y.shape == (200,)
    vals, marks = x[..., 0], x[..., 1]
    assert np.all((vals >= 0) & (vals < 1))
    half = T // 2
    assert np.all(marks[:half].sum(axis=0) == 1) and np.all(marks[half:].sum(axis=0) == 1)
    assert np.allclose(y, (vals * marks).sum(axis=0))


def test_adding_baseline_is_the_variance_of_the_sum():
    _, y = data.adding_batch(200_000, 10, rng=0)
    mse_of_one = float(np.mean((y - 1.0) ** 2))
    # standard error of the mean of (y-1)^2 is about 0.19/sqrt(200000) ~ 4e-4
    assert abs(mse_of_one - data.ADDING_BASELINE) < 3e-3


@pytest.mark.parametrize(
    ("func", "args", "match"),
    [
        (data.copy_batch, (0, 5), "batch"),
        (data.copy_batch, (3, 0), "seq_len"),
        (data.adding_batch, (3, 1), "seq_len"),
        (data.adding_batch, (-1, 5), "batch"),
    ],
)
def test_data_rejects_bad_sizes(func, args, match):
    with pytest.raises(ValueError, match=match):
        func(*args)


# ---------------------------------------------------------------- network


@pytest.mark.parametrize("n", [1, 2, 7, 8])
def test_henaff_is_orthogonal_block_rotation(n):
    W = rnn.henaff_orthogonal(n, rng=0)
    assert np.abs(W.T @ W - np.eye(n)).max() <= 10 * eps_of("float64")
    for i in range(0, n - 1, 2):
        block = W[i : i + 2, i : i + 2]
        assert block[0, 0] == block[1, 1] and block[0, 1] == -block[1, 0]
    mask = np.zeros((n, n), bool)
    for i in range(0, n - 1, 2):
        mask[i : i + 2, i : i + 2] = True
    if n % 2:
        assert W[-1, -1] == 1.0
        mask[-1, -1] = True
    assert np.all(W[~mask] == 0)


def test_henaff_angles_cover_the_circle():
    W = rnn.henaff_orthogonal(2000, rng=1)
    theta = np.arctan2(W[1::2, 0::2].diagonal(), W[0::2, 0::2].diagonal())
    assert theta.min() < -3.0 and theta.max() > 3.0 and abs(theta.mean()) < 0.2


@pytest.mark.parametrize("init", ["henaff", "haar", "identity"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_init_params(init, dtype):
    p = rnn.init_params(10, 6, 9, init=init, dtype=dtype, rng=0)
    assert p["U"].dtype == np.dtype(dtype) and p["U"].shape == (6, 6)
    assert p["W_in"].shape == (6, 10) and p["V"].shape == (9, 6)
    assert np.abs(p["U"].T @ p["U"] - np.eye(6)).max() <= 30 * eps_of(dtype)
    if init == "identity":  # the projUNN paper's adding task starts from U = I exactly
        assert np.array_equal(p["U"], np.eye(6, dtype=dtype))


@pytest.mark.parametrize(("arg", "value"), [("init", "eye"), ("nonlinearity", "tanh")])
def test_init_params_rejects_unknown_names(arg, value):
    with pytest.raises(ValueError, match=arg):
        rnn.init_params(2, 3, 1, **{arg: value})


def _loop_forward(p, inputs, nonlinearity, readout):
    """Plain per-example reference: h_t = σ(W_in x_t + U h_{t−1} + b), y = V h + c."""
    T, B, _ = inputs.shape
    n = p["U"].shape[0]
    outs = np.zeros((T, B, p["V"].shape[0]))
    last = np.zeros((B, p["V"].shape[0]))
    for j in range(B):
        h = np.zeros(n)
        for t in range(T):
            z = p["W_in"] @ inputs[t, j] + p["U"] @ h
            if nonlinearity == "relu":
                h = np.maximum(z + p["b"], 0)
            else:
                h = np.sign(z) * np.maximum(np.abs(z) + p["b"], 0)
            outs[t, j] = p["V"] @ h + p["c"]
        last[j] = outs[T - 1, j]
    return outs if readout == "all" else last


@pytest.mark.parametrize("nonlinearity", ["relu", "modrelu"])
@pytest.mark.parametrize("readout", ["all", "last"])
def test_forward_matches_the_recurrence(nonlinearity, readout):
    rng = np.random.default_rng(5)
    p = rnn.init_params(3, 5, 2, nonlinearity=nonlinearity, init="haar", dtype="float64", rng=1)
    p["b"] = p["b"] + 0.1 * rng.standard_normal(5)
    p["c"] = rng.standard_normal(2)
    inputs = rng.standard_normal((6, 4, 3))
    out, cache = rnn.forward(p, inputs, nonlinearity=nonlinearity, readout=readout, xp=npx)
    ref = _loop_forward(p, inputs, nonlinearity, readout)
    assert np.abs(out - ref).max() <= 100 * eps_of("float64")
    assert cache.H.shape == (7, 4, 5) and np.all(cache.H[0] == 0)


def _problem(task, nonlinearity, rng):
    """A tiny float64 problem: parameters, inputs, and loss(outputs) -> (loss, d_out)."""
    if task == "copy":
        x, y = data.copy_batch(3, 4, rng, n_copy=2)
        inputs, targets = np.eye(10)[x], np.eye(9)[y]
        n_in, n_out, readout = 10, 9, "all"

        def loss_fn(out):
            return rnn.cross_entropy(out, targets, xp=npx)
    elif task == "adding":
        inputs, targets = data.adding_batch(3, 6, rng)
        n_in, n_out, readout = 2, 1, "last"

        def loss_fn(out):
            return rnn.mean_squared_error(out, targets, xp=npx)
    else:  # pixels: one value per step, 10-class cross-entropy at the last step only
        inputs = rng.uniform(0, 1, size=(7, 3, 1))
        targets = np.eye(10)[rng.integers(0, 10, size=3)]
        n_in, n_out, readout = 1, 10, "last"

        def loss_fn(out):
            return rnn.cross_entropy(out, targets, xp=npx)

    p = rnn.init_params(n_in, 5, n_out, nonlinearity=nonlinearity, init="haar",
                        dtype="float64", rng=rng)
    # Move the biases off zero so that both sides of the kinks are exercised.
    p["b"] = p["b"] + 0.3 * rng.standard_normal(5)
    p["c"] = 0.1 * rng.standard_normal(n_out)
    return p, inputs, loss_fn, readout


@pytest.mark.parametrize("task", ["copy", "adding", "pixels"])
@pytest.mark.parametrize("nonlinearity", ["relu", "modrelu"])
def test_bptt_matches_finite_differences(task, nonlinearity):
    rng = np.random.default_rng(11)
    p, inputs, loss_fn, readout = _problem(task, nonlinearity, rng)

    def loss_of(q):
        out, _ = rnn.forward(q, inputs, nonlinearity=nonlinearity, readout=readout, xp=npx)
        return float(loss_fn(out)[0])

    out, cache = rnn.forward(p, inputs, nonlinearity=nonlinearity, readout=readout, xp=npx)
    _, d_out = loss_fn(out)
    grads = rnn.backward(p, cache, d_out, nonlinearity=nonlinearity, xp=npx)
    X, Y = grads["U"]
    assert X.shape == Y.shape == (5, inputs.shape[0] * inputs.shape[1])
    grads["U"] = rnn.dense_gradient(grads["U"], xp=npx)

    # Central differences: truncation error ~ h² f''' and rounding ~ eps·|f|/h. With
    # h = eps^(1/3) both are ~ eps^(2/3) ≈ 4e-11 relative to the loss's scale.
    h = eps_of("float64") ** (1 / 3)
    scale = max(1.0, abs(loss_of(p)))
    for name, value in p.items():
        num = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            q = {k: v.copy() for k, v in p.items()}
            q[name][idx] += h
            up = loss_of(q)
            q[name][idx] -= 2 * h
            num[idx] = (up - loss_of(q)) / (2 * h)
        tol = 1e3 * eps_of("float64") ** (2 / 3) * scale
        err = np.abs(num - grads[name]).max()
        assert err <= tol, f"d loss / d {name}: max error {err:.2e} > {tol:.2e}"
        assert np.abs(grads[name]).max() > 100 * tol  # a gradient that is really there


def test_cross_entropy_at_the_last_step_is_the_mean_over_the_batch():
    """Logits of shape (batch, classes): the mean of −log softmax over the batch alone."""
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 10))
    labels = rng.integers(0, 10, size=4)
    loss, d = rnn.cross_entropy(logits, np.eye(10)[labels], xp=npx)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ref = -np.mean(np.log(p[np.arange(4), labels]))
    assert abs(float(loss) - ref) <= 10 * eps_of("float64") * abs(ref)
    assert np.abs(d - (p - np.eye(10)[labels]) / 4).max() <= 10 * eps_of("float64")


def test_bptt_factors_are_sum_over_time():
    """X Yᵀ = Σ_t δ_tᵀ h_{t−1}: each column pair is one (time, example)."""
    rng = np.random.default_rng(2)
    p, inputs, loss_fn, readout = _problem("copy", "relu", rng)
    out, cache = rnn.forward(p, inputs, readout=readout, xp=npx)
    g = rnn.backward(p, cache, loss_fn(out)[1], xp=npx)
    X = g["U"][0]
    T, B = inputs.shape[:2]
    ref = sum(np.outer(X[:, t * B + j], cache.H[t, j]) for t in range(T) for j in range(B))
    assert np.abs(rnn.dense_gradient(g["U"], xp=npx) - ref).max() <= 100 * eps_of("float64")


@pytest.mark.parametrize("nonlinearity", ["relu", "modrelu"])
def test_forward_backward_on_array_api_strict(nonlinearity):
    """The network is written against the namespace: array-api-strict runs it unchanged.

    This also checks the NumPy fast path of the ReLU loops against the generic one.
    """
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(3)
    p, inputs, _, readout = _problem("adding", nonlinearity, rng)
    targets = rng.uniform(0, 2, size=inputs.shape[1])
    dev = xps.Device("device1")  # refuses any conversion to NumPy
    ps = {k: xps.asarray(v, device=dev) for k, v in p.items()}
    xs = xps.asarray(inputs, device=dev)
    out, cache = rnn.forward(ps, xs, nonlinearity=nonlinearity, readout=readout, xp=xps)
    _, d = rnn.mean_squared_error(out, xps.asarray(targets, device=dev), xp=xps)
    g = rnn.backward(ps, cache, d, nonlinearity=nonlinearity, xp=xps)
    assert g["U"][0].device == dev
    # Compare on the host with the NumPy run.
    out_np, cache_np = rnn.forward(p, inputs, nonlinearity=nonlinearity, readout=readout,
                                   xp=npx)
    _, d_np = rnn.mean_squared_error(out_np, targets, xp=npx)
    g_np = rnn.backward(p, cache_np, d_np, nonlinearity=nonlinearity, xp=npx)
    g_np["U"] = rnn.dense_gradient(g_np["U"], xp=npx)
    g["U"] = rnn.dense_gradient(g["U"], xp=xps)
    cpu = xps.Device("CPU_DEVICE")
    for name in ("W_in", "U", "b", "V", "c"):
        got = np.asarray(g[name].to_device(cpu))
        assert np.abs(got - g_np[name]).max() <= 100 * eps_of("float64") * (
            1 + np.abs(g_np[name]).max()
        )


def test_cross_entropy_gradient_sums_to_zero_over_classes():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 3, 9))
    targets = np.eye(9)[rng.integers(0, 9, size=(4, 3))]
    loss, d = rnn.cross_entropy(logits, targets, xp=npx)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert float(loss) == pytest.approx(-(targets * logp).sum() / 12, rel=1e-13)
    assert np.abs(d.sum(-1)).max() <= 10 * eps_of("float64")


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[[1e4, 0.0, -1e4]]])
    loss, d = rnn.cross_entropy(logits, np.array([[[1.0, 0.0, 0.0]]]), xp=npx)
    assert float(loss) == 0.0 and np.all(np.isfinite(d))


# ---------------------------------------------------------------- RMSprop


def test_rmsprop_matches_the_recurrence():
    opt = RMSprop(0.01, alpha=0.9, eps=1e-8, xp=npx)
    rng = np.random.default_rng(0)
    p = {"w": rng.standard_normal(4)}
    w, v = p["w"].copy(), np.zeros(4)
    for _ in range(5):
        g = rng.standard_normal(4)
        p = opt.step(p, {"w": g})
        v = 0.9 * v + 0.1 * g * g
        w = w - 0.01 * g / (np.sqrt(v) + 1e-8)
    assert np.abs(p["w"] - w).max() <= 10 * eps_of("float64")


def test_rmsprop_uses_squared_modulus_for_complex():
    opt = RMSprop(0.1, xp=npx)
    p = opt.step({"z": np.array([0.0j])}, {"z": np.array([1j])})
    # v = (1 - 0.99)|i|² = 0.01 > 0, so the step is -0.1 · i / 0.1 = -i (squaring g gives -0.01).
    assert abs(p["z"][0] - (-1j)) <= 1e-6


def test_rmsprop_updates_only_given_parameters():
    opt = RMSprop(0.1, xp=npx)
    p = {"a": np.ones(2), "b": np.ones(2)}
    q = opt.step(p, {"a": np.ones(2)})
    assert q["b"] is p["b"] and np.all(q["a"] < 1) and np.all(p["a"] == 1)


@pytest.mark.parametrize(("kw", "match"),
                         [({"lr": 0.0}, "lr"), ({"lr": 0.1, "alpha": 1.0}, "alpha")])
def test_rmsprop_rejects_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        RMSprop(xp=npx, **kw)
