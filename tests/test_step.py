"""Tests of the training step: sketch the gradient, then retract.

When rank(G) <= rank the sketch is exact, so ``step`` must equal the dense
reference retraction of ``−lr·G`` (SVD polar factor, scipy's expm, a dense
Cayley solve) computed in double precision on the host.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import unitary_lowrank as ul
from unitary_lowrank.methods import METHODS
from unitary_lowrank.testing import (
    assert_close,
    assert_same_kind,
    assert_unitary,
    compare_tol,
    to_numpy,
)
from unitary_lowrank.testing.reference import reference_step
from unitary_lowrank.testing.strategies import dtypes, seeds


def _wide(dtype: str) -> str:
    return "complex128" if dtype.startswith("complex") else "float64"


def _h(x):
    return np.conj(np.swapaxes(x, -1, -2))


def gaussian(shape, dtype, rng):
    Z = rng.standard_normal(shape)
    if dtype.startswith("complex"):
        Z = Z + 1j * rng.standard_normal(shape)
    return Z.astype(dtype)


def lowrank_gradient(n, p, rank, dtype, rng, batch=()):
    """Dense G of exact rank `rank` with unit spectral norm, and factors X, Y with G = X Yᴴ."""
    X = gaussian((*batch, n, rank), _wide(dtype), rng)
    Y = gaussian((p, rank), _wide(dtype), rng)
    G = X @ _h(Y)
    c = np.sqrt(np.max(np.linalg.norm(G, 2, axis=(-2, -1))))
    X, Y = X / c, Y / c
    return (X @ _h(Y)).astype(dtype), X.astype(dtype), Y.astype(dtype)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("factored", [False, True])
def test_step_matches_reference_step(backend, dtype, method, factored):
    rng = np.random.default_rng(1)
    n, k, lr = 10, 2, 0.05
    U = ul.random_unitary(n, dtype=dtype, batch_shape=(2,), rng=rng)
    G, X, Y = lowrank_gradient(n, n, k, dtype, rng, (2,))
    Ub = backend.asarray(U)
    arg = (backend.asarray(X), backend.asarray(Y)) if factored else backend.asarray(G)
    U1 = ul.step(Ub, arg, lr, rank=k, method=method, rng=0)
    assert_same_kind(U1, Ub)
    assert_unitary(U1)
    ref = reference_step(U, -lr * G.astype(_wide(dtype)), method)
    # G is rounded to dtype, so the reference sees the same matrix; c·n·eps of the unit entries
    assert np.max(np.abs(to_numpy(U1) - ref)) <= compare_tol(n, dtype)


@pytest.mark.parametrize("sampler", ["randomized", "lsi", "column"])
def test_step_is_retract_of_the_sketch(sampler, dtype):
    """step(U, G, lr) == retract(U, −lr·A, B) with the factors lowrank gives for the same seed."""
    rng = np.random.default_rng(2)
    n, k, lr = 12, 3, 0.1
    U = ul.random_unitary(n, dtype=dtype, rng=rng)
    G = gaussian((n, n), dtype, rng) / n
    for method in METHODS:
        A, B = ul.lowrank(G, k, sampler=sampler, rng=7)
        ref = ul.retract(U, -lr * A, B, method)
        U1 = ul.step(U, G, lr, rank=k, method=method, sampler=sampler, rng=7)
        assert np.max(np.abs(U1 - ref)) <= compare_tol(n, dtype)


def test_default_rank_one_follows_the_top_singular_pair():
    rng = np.random.default_rng(3)
    n = 16
    U = ul.random_unitary(n, dtype="complex128", rng=rng)
    s = np.concatenate([[1.0], 1e-9 * np.ones(n - 1)])  # rank 1 up to 1e-9
    Qa = ul.random_unitary(n, dtype="complex128", rng=rng)
    Qb = ul.random_unitary(n, dtype="complex128", rng=rng)
    G = (Qa * s) @ _h(Qb)
    G1 = np.outer(Qa[:, 0], Qb[:, 0].conj())
    U1 = ul.step(U, G, 0.1, rng=0)  # rank=1, method="exp" by default
    ref = reference_step(U, -0.1 * G1, "exp")
    assert np.max(np.abs(U1 - ref)) <= 0.1 * 1e-9 * n + compare_tol(n, "complex128")


def test_stiefel_polar_step(dtype):
    rng = np.random.default_rng(4)
    n, p, k, lr = 12, 5, 2, 0.2
    U = ul.random_unitary(n, p, dtype=dtype, rng=rng)
    G, X, Y = lowrank_gradient(n, p, k, dtype, rng)
    for arg in (G, (X, Y)):
        U1 = ul.step(U, arg, lr, rank=k, method="polar", rng=0)
        assert U1.shape == (n, p) and U1.dtype == U.dtype
        assert_unitary(U1)
        ref = reference_step(U, -lr * G.astype(_wide(dtype)), "polar")
        assert np.max(np.abs(U1 - ref)) <= compare_tol(n, dtype)


def test_tol_and_return_info():
    rng = np.random.default_rng(5)
    n = 24
    U = ul.random_unitary(n, dtype="float64", batch_shape=(3,), rng=rng)
    Qa = ul.random_unitary(n, dtype="float64", batch_shape=(3,), rng=rng)
    G = (Qa * 0.5 ** np.arange(n)) @ np.swapaxes(Qa, -1, -2)  # σ_i = 2^-i
    U1, info = ul.step(U, G, 0.01, tol=1e-3, return_info=True, rng=0)
    # optimal relative errors 2^-k·√(1/(1 − 1/4))/‖…‖: rank 10 is the first below 1e-3
    best = np.sqrt(np.cumsum((0.25 ** np.arange(n))[::-1])[::-1] / np.sum(0.25 ** np.arange(n)))
    kstar = int(np.argmax(best[1:] <= 1e-3)) + 1
    assert info.rank == kstar and info.A.shape == (3, n, kstar)
    assert np.all(info.error <= 1e-3)
    ref = ul.retract(U, -0.01 * info.A, info.B, "exp")
    assert np.max(np.abs(U1 - ref)) <= compare_tol(n, "float64")
    # rank is the minimum with tol, max_rank the cap
    _, info = ul.step(U, G, 0.01, rank=12, tol=1e-3, return_info=True, rng=0)
    assert info.rank == 12
    _, info = ul.step(U, G, 0.01, tol=1e-3, max_rank=4, return_info=True, rng=0)
    assert info.rank == 4 and np.all(info.error > 1e-3)


def test_out_and_zero_lr(dtype):
    rng = np.random.default_rng(6)
    U = ul.random_unitary(8, dtype=dtype, rng=rng)
    G = gaussian((8, 8), dtype, rng)
    expected = ul.step(U, G, 0.1, rank=2, rng=0)
    buf = U.copy()
    res = ul.step(buf, G, 0.1, rank=2, rng=0, out=buf)
    assert res is buf and np.array_equal(buf, expected)
    assert np.max(np.abs(ul.step(U, G, 0.0, rng=0) - U)) <= compare_tol(8, dtype)


def test_array_api_strict_device1(dtype):
    xps = pytest.importorskip("array_api_strict")
    dev = xps.Device("device1")
    rng = np.random.default_rng(7)
    U = xps.asarray(ul.random_unitary(9, dtype=dtype, rng=rng), device=dev)
    X = xps.asarray(gaussian((9, 20), dtype, rng), device=dev)
    U1, info = ul.step(U, (X, X), 1e-3, tol=0.5, return_info=True, rng=0)
    assert U1.device == dev and info.error.device == dev
    assert_unitary(U1)


def test_bad_input():
    rng = np.random.default_rng(8)
    U = ul.random_unitary(6, dtype="float64", rng=rng)
    G = gaussian((6, 6), "float64", rng)
    msg = r"G must be an \(\.\.\., n, p\) gradient.*\(6, 6\).*\(6, 5\)"
    with pytest.raises(ValueError, match=msg):
        ul.step(U, G[:, :5], 0.1)
    with pytest.raises(ValueError, match=r"X \(6, 2\) and Y \(5, 2\)"):
        ul.step(U, (G[:, :2], G[:5, :2]), 0.1)
    with pytest.raises(TypeError, match="lr must be a real number"):
        ul.step(U, G, 0.1j)
    with pytest.raises(TypeError, match="lr must be a real number"):
        ul.step(U, G, "0.1")
    with pytest.raises(ValueError, match="lr must be finite"):
        ul.step(U, G, float("inf"))
    with pytest.raises(ValueError, match="method must be"):
        ul.step(U, G, 0.1, method="qr")
    with pytest.raises(ValueError, match="rank must satisfy"):
        ul.step(U, G, 0.1, rank=0)
    with pytest.raises(ValueError, match="rank must satisfy"):
        ul.step(U, G, 0.1, rank=7)
    with pytest.raises(ValueError, match="needs a square U"):
        ul.step(U[:, :4], G[:, :4], 0.1, method="exp")
    bad = G.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="G contains NaN or infinity"):
        ul.step(U, bad, 0.1)
    with pytest.raises(TypeError, match="dtype"):
        ul.step(U, G.astype(np.int64), 0.1)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        ul.step(U[0], G, 0.1)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="one array library"):
        ul.step(U, torch.asarray(G), 0.1)


@given(
    n=st.integers(1, 12),
    data=st.data(),
    dtype_=dtypes(),
    seed=seeds(),
    method=st.sampled_from(METHODS),
    factored=st.booleans(),
    lr=st.floats(1e-6, 1.0),
)
def test_hypothesis_exact_rank_step(n, data, dtype_, seed, method, factored, lr):
    """rank(G) <= rank: the step is the dense retraction of −lr·G, for any size, dtype, method."""
    k = data.draw(st.integers(1, n), label="rank")
    rho = data.draw(st.integers(1, k), label="rank of G")
    rng = np.random.default_rng(seed)
    U = ul.random_unitary(n, dtype=dtype_, rng=rng)
    G, X, Y = lowrank_gradient(n, n, rho, dtype_, rng)
    U1 = ul.step(U, (X, Y) if factored else G, lr, rank=k, method=method, rng=rng)
    assert U1.dtype == U.dtype and U1.shape == U.shape
    assert_unitary(U1)
    ref = reference_step(U, -lr * G.astype(_wide(dtype_)), method)
    assert np.max(np.abs(U1 - ref)) <= compare_tol(n, dtype_)


@pytest.mark.parametrize("make", ["numpy", "torch", "jax"])
def test_lr_as_a_0d_array_is_its_value(make):
    rng = np.random.default_rng(8)
    U = ul.random_unitary(12, dtype="float64", rng=rng)
    G = rng.standard_normal((12, 12))
    if make == "numpy":
        lr = np.array(0.05)
    elif make == "torch":
        torch = pytest.importorskip("torch")
        lr = torch.tensor(0.05, dtype=torch.float64)
    else:
        jax = pytest.importorskip("jax")
        lr = jax.numpy.asarray(0.05, dtype=jax.numpy.float32)  # float32: 0.05 rounded
        expected = ul.step(U, G, float(lr), rng=0)
        np.testing.assert_array_equal(ul.step(U, G, lr, rng=0), expected)
        return
    np.testing.assert_array_equal(ul.step(U, G, lr, rng=0), ul.step(U, G, 0.05, rng=0))


def test_lr_traced_under_jit(jax_x64):
    jax = jax_x64
    jnp = jax.numpy
    U = ul.random_unitary(10, dtype=jnp.float64, rng=jax.random.key(0))
    G = jnp.asarray(np.random.default_rng(9).standard_normal((10, 10)))
    f = jax.jit(lambda lr: ul.step(U, G, lr, sampler="lsi", rng=jax.random.key(1)))
    eager = ul.step(U, G, 0.02, sampler="lsi", rng=jax.random.key(1))
    assert_close(f(jnp.asarray(0.02)), eager, compare_tol(10, "float64"))


@pytest.mark.parametrize("bad, error", [(np.array([0.1, 0.2]), ValueError),
                                        (np.array(1 + 1j), TypeError),
                                        (np.array(np.nan), ValueError)])
def test_lr_arrays_that_are_not_a_real_number(bad, error):
    U = ul.random_unitary(4, dtype="float64", rng=0)
    with pytest.raises(error, match="lr must be"):
        ul.step(U, np.ones((4, 4)), bad)


# ---------------------------------------------------------------- rank="full"
@pytest.mark.parametrize("method", METHODS)
def test_full_rank_step_matches_the_dense_reference(backend, dtype, method):
    rng = np.random.default_rng(7)
    n, lr = 12, 0.05
    U = ul.random_unitary(n, dtype=dtype, batch_shape=(2,), rng=rng)
    G = gaussian((2, n, n), dtype, rng)
    U1 = ul.step(backend.asarray(U), backend.asarray(G), lr, rank="full", method=method)
    assert_same_kind(U1, backend.asarray(U))
    assert_unitary(U1)
    ref = reference_step(U, -lr * G.astype(_wide(dtype)), method)
    assert np.max(np.abs(to_numpy(U1) - ref)) <= compare_tol(n, dtype)


@pytest.mark.parametrize("method", METHODS)
def test_full_rank_equals_the_rank_n_factored_step(method):
    rng = np.random.default_rng(8)
    n, lr = 9, 0.1
    U = ul.random_unitary(n, dtype="complex128", rng=rng)
    G = gaussian((n, n), "complex128", rng)
    full = ul.step(U, G, lr, rank="full", method=method)
    factored = ul.retract(U, -lr * G, np.eye(n), method=method)
    assert np.max(np.abs(full - factored)) <= compare_tol(n, "complex128")


def test_full_rank_factored_gradient_and_stiefel_polar():
    rng = np.random.default_rng(9)
    n, p, r = 10, 4, 3
    U = ul.random_unitary(n, p, dtype="float64", rng=rng)
    X, Y = rng.standard_normal((n, r)), rng.standard_normal((p, r))
    U1 = ul.step(U, (X, Y), 0.1, rank="full", method="polar")
    assert U1.shape == (n, p)
    assert_unitary(U1)
    ref = reference_step(U, -0.1 * X @ Y.T, "polar")
    assert np.max(np.abs(U1 - ref)) <= compare_tol(n, "float64")


@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_full_rank_steps_do_not_accumulate_rounding(dtype):
    # 200 steps: each ends with a Newton–Schulz correction, so the distance from the group
    # stays at the rounding of one step instead of growing like √steps.
    rng = np.random.default_rng(10)
    n = 48
    U = ul.random_unitary(n, dtype=dtype, rng=rng)
    for _ in range(200):
        U = ul.step(U, gaussian((n, n), dtype, rng), 0.05, rank="full", method="exp")
    assert_unitary(U)


def test_full_rank_out_and_errors():
    rng = np.random.default_rng(11)
    U = ul.random_unitary(6, dtype="float64", rng=rng)
    G = rng.standard_normal((6, 6))
    out = np.empty_like(U)
    assert ul.step(U, G, 0.1, rank="full", out=out) is out
    np.testing.assert_array_equal(out, ul.step(U, G, 0.1, rank="full"))
    with pytest.raises(ValueError, match="rank must be a positive int or 'full'"):
        ul.step(U, G, 0.1, rank="all")
    with pytest.raises(ValueError, match="tol does not apply to rank='full'"):
        ul.step(U, G, 0.1, rank="full", tol=0.1)
    with pytest.raises(ValueError, match="return_info does not apply"):
        ul.step(U, G, 0.1, rank="full", return_info=True)
    with pytest.raises(ValueError, match="needs a square U"):
        ul.step(U[:, :3], G[:, :3], 0.1, rank="full", method="exp")
    with pytest.raises(ValueError, match=r"U is not unitary .*‖UᴴU − I‖₂"):
        ul.step(2 * U, G, 0.1, rank="full")
    with pytest.raises(ValueError, match="G contains NaN or infinity"):
        ul.step(U, np.full((6, 6), np.nan), 0.1, rank="full")
    with pytest.raises(ValueError, match="the step -lr\\*G is too large"):
        ul.step(U, np.full((6, 6), 1e300), 1e10, rank="full")
    with pytest.raises(ValueError, match="matching U's last two axes"):
        ul.step(U, G[:5], 0.1, rank="full")
