"""Tests of range_finder and lowrank: dense and factored input, samplers, tol=, backends.

Matrices are built on the host with a known spectrum (Haar singular vectors),
and every result is compared with numpy.linalg.svd of the matrix actually
passed in, computed in double precision. Tolerances come from the dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import unitary_lowrank as ul
from unitary_lowrank.testing import (
    DTYPE_NAMES,
    assert_same_kind,
    compare_tol,
    eps_of,
    to_numpy,
    unitarity_bound,
)
from unitary_lowrank.testing.strategies import dtypes, seeds

SAMPLERS = ("randomized", "lsi", "column")


def _wide(dtype: str) -> str:
    return "complex128" if dtype.startswith("complex") else "float64"


def _h(x: np.ndarray) -> np.ndarray:
    return np.conj(np.swapaxes(x, -1, -2))


def spectral_matrix(m, n, s, dtype, rng, batch=()):
    """NumPy G (batch, m, n) = Qa diag(s) Qbᴴ with Haar Qa, Qb; singular values exactly s."""
    rho = len(s)
    Qa = ul.random_unitary(m, rho, dtype=_wide(dtype), batch_shape=batch, rng=rng)
    Qb = ul.random_unitary(n, rho, dtype=_wide(dtype), batch_shape=batch, rng=rng)
    return ((Qa * np.asarray(s)) @ _h(Qb)).astype(dtype)


def gaussian(shape, dtype, rng):
    Z = rng.standard_normal(shape)
    if dtype.startswith("complex"):
        Z = Z + 1j * rng.standard_normal(shape)
    return Z.astype(dtype)


def svd_errors(G):
    """Optimal rank-k Frobenius errors ‖G − G_k‖_F for k = 0 … min(m, n), from numpy.linalg.svd."""
    s = np.linalg.svd(G.astype(_wide(str(G.dtype))), compute_uv=False)
    tail = np.cumsum((s**2)[..., ::-1], axis=-1)[..., ::-1]
    return np.sqrt(np.concatenate([tail, np.zeros((*s.shape[:-1], 1))], axis=-1))


def product(A, B):
    a, b = to_numpy(A), to_numpy(B)
    return a.astype(_wide(str(a.dtype))) @ _h(b.astype(_wide(str(b.dtype))))


def spec_norm(G):
    return np.linalg.norm(G.astype(_wide(str(G.dtype))), 2, axis=(-2, -1))


# ----------------------------------------------------------------------------------------
# 1. exact when rank(G) <= rank, all dtypes, batched and not, dense and factored
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [(), (2,)], ids=["unbatched", "batched"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_exact_dense(backend, dtype, sampler, batch):
    rng = np.random.default_rng(11)
    m, n, k = 13, 9, 3
    G = spectral_matrix(m, n, [2.0, 0.7, 0.2], dtype, rng, batch)  # rank 3 = k
    A, B = ul.lowrank(backend.asarray(G), k, sampler=sampler, rng=5)
    assert A.shape == (*batch, m, k) and B.shape == (*batch, n, k)
    assert_same_kind(A, backend.asarray(G))
    assert_same_kind(B, backend.asarray(G))
    err = spec_norm(product(A, B) - G)
    tol = compare_tol(max(m, n), dtype) * spec_norm(G)
    assert np.all(err <= tol), (err, tol)


@pytest.mark.parametrize("batch", [(), (2,)], ids=["unbatched", "batched"])
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("r", [2, 20], ids=["r<=rank", "r>rank+oversample"])
def test_exact_factored(backend, dtype, sampler, batch, r):
    rng = np.random.default_rng(12)
    m, n, k = 30, 25, 2
    # X (batch, m, r) and Y (n, r) with rank(X Yᴴ) = 2 even when r = 20.
    X = gaussian((*batch, m, 2), dtype, rng) @ gaussian((2, r), dtype, rng)
    Y = gaussian((n, 2), dtype, rng) @ gaussian((2, r), dtype, rng)
    scale = np.max(np.abs(X)) * np.max(np.abs(Y))
    X, Y = (X / np.sqrt(scale)).astype(dtype), (Y / np.sqrt(scale)).astype(dtype)
    A, B = ul.lowrank((backend.asarray(X), backend.asarray(Y)), k, sampler=sampler, rng=1)
    assert A.shape == (*batch, m, k) and B.shape == (*batch, n, k)
    assert_same_kind(A, backend.asarray(X))
    G = X.astype(_wide(dtype)) @ _h(Y.astype(_wide(dtype)))
    err = spec_norm(product(A, B) - G)
    # the factors carry relative rounding eps·‖X‖‖Y‖, which is ~ ‖G‖ here (X, Y generic)
    tol = compare_tol(max(m, n), dtype) * np.linalg.norm(X, 2, axis=(-2, -1)) * np.linalg.norm(Y, 2)
    assert np.all(err <= tol), (err, tol)


@pytest.mark.parametrize("dtype_", DTYPE_NAMES)
def test_factored_r_below_rank_pads_with_zeros(dtype_):
    rng = np.random.default_rng(3)
    X, Y = gaussian((10, 2), dtype_, rng), gaussian((8, 2), dtype_, rng)
    info = ul.lowrank((X, Y), 5, return_info=True)
    assert info.A.shape == (10, 5) and info.B.shape == (8, 5) and info.rank == 5
    assert np.all(info.A[:, 2:] == 0) and np.all(info.B[:, 2:] == 0)
    # the non-zero columns are the exact truncated SVD: singular values from numpy
    s_ref = np.linalg.svd(X.astype(_wide(dtype_)) @ _h(Y.astype(_wide(dtype_))), compute_uv=False)
    s = np.linalg.norm(info.A[:, :2].astype(_wide(dtype_)), axis=0)
    assert np.allclose(s, s_ref[:2], rtol=compare_tol(10, dtype_), atol=0)
    assert float(info.error) <= np.sqrt(compare_tol(10, dtype_))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_zero_gradient(sampler, dtype):
    G = np.zeros((2, 7, 5), dtype)
    info = ul.lowrank(G, 2, sampler=sampler, rng=0, return_info=True)
    assert np.all(np.isfinite(info.A)) and np.all(info.A == 0)
    assert np.all(info.error == 0)
    A, B = ul.lowrank((np.zeros((7, 3), dtype), np.zeros((5, 3), dtype)), 2, sampler=sampler)
    assert np.all(A == 0) and np.all(np.isfinite(B))


# ----------------------------------------------------------------------------------------
# 2. near-optimal with the defaults on decaying spectra, real and complex
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["geometric", "harmonic"])
@pytest.mark.parametrize("dtype_", ["float64", "complex128", "float32", "complex64"])
@pytest.mark.parametrize("k", [1, 4, 10])
def test_near_optimal_defaults(kind, dtype_, k):
    rng = np.random.default_rng(k)
    m, n = 70, 60
    i = np.arange(1, n + 1)
    s = 0.8 ** (i - 1) if kind == "geometric" else 1.0 / i
    G = spectral_matrix(m, n, s, dtype_, rng, (2,))
    A, B = ul.lowrank(G, k, rng=rng)
    err = np.linalg.norm(product(A, B) - G, axis=(-2, -1))
    best = svd_errors(G)[..., k]
    # docs/theory.md: "within a few percent of the optimal rank-k error" (5 %)
    assert np.all(err <= 1.05 * best), err / best
    # and the factored form of the same matrix is as good
    X = G
    Y = np.broadcast_to(np.eye(n, dtype=dtype_), (2, n, n))
    Af, Bf = ul.lowrank((X, Y), k, rng=rng)
    err_f = np.linalg.norm(product(Af, Bf) - G, axis=(-2, -1))
    assert np.all(err_f <= 1.05 * best), err_f / best


@st.composite
def spectra(draw):
    m = draw(st.integers(2, 40))
    n = draw(st.integers(2, 40))
    p = min(m, n)
    k = draw(st.integers(1, p))
    kind = draw(st.sampled_from(["geometric", "power", "lowrank"]))
    i = np.arange(1, p + 1)
    if kind == "geometric":
        s = draw(st.floats(0.3, 0.95)) ** (i - 1)
    elif kind == "power":
        s = i ** -draw(st.floats(0.5, 3.0))
    else:  # rank(G) <= k: the sketch must be exact
        s = np.where(i <= draw(st.integers(1, k)), 1.0 / i, 0.0)
    scale = 10 ** draw(st.floats(-6, 6))
    return m, n, k, kind, scale * s


@given(case=spectra(), dtype_=dtypes(), seed=seeds(), factored=st.booleans())
def test_hypothesis_quality(case, dtype_, seed, factored):
    m, n, k, kind, s = case
    rng = np.random.default_rng(seed)
    G = spectral_matrix(m, n, s, dtype_, rng)
    arg = (G, np.eye(n, dtype=dtype_)) if factored else G
    info = ul.lowrank(arg, k, rng=rng, return_info=True)
    assert info.A.dtype == G.dtype and info.A.shape == (m, k) and info.B.shape == (n, k)
    E = product(info.A, info.B) - G
    err = np.linalg.norm(E)
    best = svd_errors(G)[k]
    norm = np.linalg.norm(G.astype(_wide(dtype_)))
    # rounding of the whole computation: relative c·n·eps of ‖G‖
    rounding = compare_tol(max(m, n), dtype_) * norm
    assert err <= 1.05 * best + rounding, (err, best, rounding)
    if kind == "lowrank":
        assert np.linalg.norm(E, 2) <= compare_tol(max(m, n), dtype_) * s[0]
    # the error estimate is the true relative error, to rounding (it is formed without
    # cancellation, from the residual of the projection and the discarded singular values)
    est = float(info.error) * norm
    assert abs(est - err) <= rounding


# ----------------------------------------------------------------------------------------
# 4. complex input against numpy.linalg.svd
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype_", ["complex128", "complex64"])
@pytest.mark.parametrize("factored", [False, True])
def test_complex_matches_numpy_svd(dtype_, factored):
    rng = np.random.default_rng(7)
    m, n, k = 40, 30, 3
    s = np.concatenate([[3.0, 2.0, 1.0], 1e-3 * 0.5 ** np.arange(n - 3)])  # gap after k
    G = spectral_matrix(m, n, s, dtype_, rng)
    if factored:
        X, Y = G @ gaussian((n, n), dtype_, rng), gaussian((n, n), dtype_, rng)
        Y = np.linalg.inv(Y.astype("complex128")).conj().T.astype(dtype_)  # X Yᴴ = G
        G = (X.astype("complex128") @ _h(Y.astype("complex128")))
        arg = (X, Y)
    else:
        arg = G
    A, B = ul.lowrank(arg, k, rng=0)
    W, sv, Vh = np.linalg.svd(G.astype("complex128"))
    Gk = (W[:, :k] * sv[:k]) @ Vh[:k]
    # ‖ABᴴ − G_k‖ is the tail σ_{k+1} leaking through the sketch: at most σ_{k+1}
    # plus rounding (power iterations make the subspace error (σ_{k+1}/σ_k)^5 ≈ 1e-15)
    tol = sv[k] + compare_tol(max(m, n), dtype_) * sv[0] * (10 if factored else 1)
    assert np.linalg.norm(product(A, B) - Gk, 2) <= tol
    # B spans the top right singular subspace (conjugation errors would rotate it away)
    Bn = to_numpy(B).astype("complex128")
    V = Vh[:k].conj().T
    assert np.linalg.norm(Bn @ _h(Bn) - V @ _h(V), 2) <= 2 * tol / sv[k - 1]
    # and the singular values of A are numpy's
    sA = np.linalg.norm(to_numpy(A).astype("complex128"), axis=0)
    assert np.allclose(sA, sv[:k], rtol=0, atol=tol)  # no hidden default rtol


@pytest.mark.parametrize("dtype_", ["complex128", "float64"])
def test_test_matrix_is_the_documented_gaussian(dtype_):
    """n_iter=0: Q spans G Ω with Ω = (z₁ + i z₂)/√2 drawn from the seed (real: z₁)."""
    rng = np.random.default_rng(0)
    G = gaussian((12, 9), dtype_, rng)
    Q = ul.range_finder(G, 4, n_iter=0, rng=123)
    gen = np.random.default_rng(123)
    Om = gen.standard_normal((9, 4))
    if dtype_.startswith("complex"):
        Om = (Om + 1j * gen.standard_normal((9, 4))) / np.sqrt(2)
    Qr = np.linalg.qr(G @ Om)[0]
    tol = compare_tol(12, dtype_, condition=np.linalg.cond(G @ Om))
    assert np.linalg.norm(Q @ _h(Q) - Qr @ _h(Qr), 2) <= tol


# ----------------------------------------------------------------------------------------
# range_finder
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("factored", [False, True])
def test_range_finder(backend, dtype, factored):
    rng = np.random.default_rng(4)
    m, n, size = 14, 10, 4
    G = spectral_matrix(m, n, [1.0, 0.5, 0.25], dtype, rng, (2,))
    Gb = backend.asarray(G)
    arg = (Gb, backend.asarray(np.eye(n, dtype=dtype))) if factored else Gb
    Q = ul.range_finder(arg, size, rng=9)
    assert Q.shape == (2, m, size)
    assert_same_kind(Q, backend.asarray(G))
    Qn = to_numpy(Q).astype(_wide(dtype))
    err = np.linalg.norm(_h(Qn) @ Qn - np.eye(size), 2, axis=(-2, -1))
    assert np.all(err <= unitarity_bound(m, dtype))
    resid = spec_norm(Qn @ (_h(Qn) @ G) - G)
    assert np.all(resid <= compare_tol(m, dtype))


def test_range_finder_same_seed_every_backend(backend, dtype):
    rng = np.random.default_rng(5)
    G = gaussian((2, 11, 8), dtype, rng)
    ref = ul.range_finder(G, 3, rng=42)
    Q = to_numpy(ul.range_finder(backend.asarray(G), 3, rng=42))
    P, Pr = Q @ _h(Q), ref @ _h(ref)  # QR sign/phase conventions differ: compare projectors
    # the range of a rank-3 sketch of a generic G is only as well determined as G Ω's conditioning
    assert np.max(np.abs(P - Pr)) <= compare_tol(11, dtype, condition=1e3)


@given(
    m=st.integers(1, 24),
    n=st.integers(1, 24),
    data=st.data(),
    dtype_=dtypes(),
    seed=seeds(),
    factored=st.booleans(),
)
def test_hypothesis_range_finder(m, n, data, dtype_, seed, factored):
    """Orthonormal Q whose span holds the range of G when rank(G) <= size (r < size included)."""
    size = data.draw(st.integers(1, min(m, n)), label="size")
    rho = data.draw(st.integers(0, size), label="rank of G")
    n_iter = data.draw(st.integers(0, 3), label="n_iter")
    rng = np.random.default_rng(seed)
    X = gaussian((m, rho), dtype_, rng)
    Y = gaussian((n, rho), dtype_, rng)
    G = (X.astype(_wide(dtype_)) @ _h(Y.astype(_wide(dtype_)))).astype(dtype_)
    Q = ul.range_finder((X, Y) if factored else G, size, n_iter=n_iter, rng=rng)
    assert Q.shape == (m, size) and Q.dtype == G.dtype
    Qn = Q.astype(_wide(dtype_))
    assert np.linalg.norm(_h(Qn) @ Qn - np.eye(size), 2) <= unitarity_bound(m, dtype_)
    scale = np.linalg.norm(X.astype(_wide(dtype_)), 2) * np.linalg.norm(Y.astype(_wide(dtype_)), 2)
    resid = np.linalg.norm(Qn @ (_h(Qn) @ G) - G, 2) if m and n else 0.0
    assert resid <= compare_tol(max(m, n), dtype_) * scale * (1 + n_iter)


# ----------------------------------------------------------------------------------------
# 5. backends behave like numpy (same seed, same factors up to QR conventions)
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("factored", [False, True])
def test_backends_agree_with_numpy(backend, dtype, sampler, factored):
    rng = np.random.default_rng(8)
    m, n, k = 12, 10, 2
    s = [1.0, 0.6, 0.01, 0.001]
    G = spectral_matrix(m, n, s, dtype, rng, (3,))
    if factored:
        args = (G, np.eye(n, dtype=dtype)[:, :])
        barg = (backend.asarray(G), backend.asarray(np.eye(n, dtype=dtype)))
    else:
        args, barg = G, backend.asarray(G)
    A0, B0 = ul.lowrank(args, k, sampler=sampler, rng=3)
    A, B = ul.lowrank(barg, k, sampler=sampler, rng=3)
    assert_same_kind(A, backend.asarray(G))
    assert_same_kind(B, backend.asarray(G))
    if sampler != "lsi":  # tol= mode: same rank and error as on numpy
        ref = ul.lowrank(args, tol=0.05, sampler=sampler, rng=3, return_info=True)
        info = ul.lowrank(barg, tol=0.05, sampler=sampler, rng=3, return_info=True)
        assert info.rank == ref.rank and info.A.shape[-1] == ref.rank
        assert_same_kind(info.error, backend.asarray(G), backend.xp.float32 if dtype in (
            "float32", "complex64") else backend.xp.float64)
        assert np.max(np.abs(to_numpy(info.error) - ref.error)) <= compare_tol(m, dtype)
    # A Bᴴ does not depend on the sign/phase conventions of QR and SVD
    # a rank-2 truncation moves by ‖ΔG‖·(1 + 2σ₁/(σ₂ − σ₃)) (Wedin: its singular
    # subspace turns by ‖ΔG‖/gap), ‖ΔG‖ the rounding of the computation
    tol = compare_tol(m, dtype, condition=1 + 2 * s[0] / (s[1] - s[2]))
    assert np.max(np.abs(product(A, B) - product(A0, B0))) <= tol


def test_array_api_strict_device1_never_leaves_device(dtype):
    xps = pytest.importorskip("array_api_strict")
    dev = xps.Device("device1")
    rng = np.random.default_rng(2)
    G = xps.asarray(gaussian((2, 9, 7), dtype, rng), device=dev)
    for sampler in SAMPLERS:
        info = ul.lowrank(G, 2, sampler=sampler, rng=0, return_info=True)
        assert info.A.device == dev and info.B.device == dev and info.error.device == dev
    info = ul.lowrank((G, G), tol=0.3, rng=0, return_info=True)
    assert info.A.device == dev and info.error.device == dev
    assert ul.range_finder(G, 3, rng=0).device == dev


# ----------------------------------------------------------------------------------------
# samplers: LSI, column sampling, shared test matrices
# ----------------------------------------------------------------------------------------


def test_lsi_is_the_papers_sketch(dtype):
    rng = np.random.default_rng(9)
    G = gaussian((15, 12), dtype, rng)
    k = 3
    A, B = ul.lowrank(G, k, sampler="lsi", rng=77)
    gen = np.random.default_rng(77)
    Om = gen.standard_normal((15, k))
    if dtype.startswith("complex"):
        Om = (Om + 1j * gen.standard_normal((15, k))) / np.sqrt(2)
    V = np.linalg.qr(_h(G.astype(_wide(dtype))) @ Om)[0]
    Bw = B.astype(_wide(dtype))
    tol = compare_tol(15, dtype, condition=np.linalg.cond(_h(G) @ Om))
    assert np.linalg.norm(Bw @ _h(Bw) - V @ _h(V), 2) <= tol  # B = orth(Gᴴ Ω): size exactly k
    assert np.max(np.abs(A - G.astype(_wide(dtype)) @ Bw)) <= compare_tol(15, dtype) * spec_norm(G)


@pytest.mark.parametrize("sampler", ["randomized", "lsi"])
def test_shared_test_matrix(sampler):
    rng = np.random.default_rng(10)
    G = np.broadcast_to(gaussian((9, 8), "complex128", rng), (3, 9, 8)).copy()
    A, B = ul.lowrank(G, 2, sampler=sampler, shared=True, rng=0)
    P = product(A, B)
    assert np.max(np.abs(P - P[0])) <= compare_tol(9, "complex128")
    # without sharing, the three draws differ (LSI is far from optimal, so visibly)
    A, B = ul.lowrank(G, 2, sampler="lsi", rng=0)
    P = product(A, B)
    assert np.max(np.abs(P - P[0])) > 1e3 * compare_tol(9, "complex128")


def test_column_sampling_probabilities_are_squared_norms():
    """One column drawn (rank 1, oversample 0): it is column j with probability ∝ ‖g_j‖²."""
    G = np.diag([1.0, 2.0, 3.0])
    trials = 600
    counts = np.zeros(3)
    for seed in range(trials):
        A, B = ul.lowrank(G, 1, sampler="column", oversample=0, rng=seed)
        counts[int(np.argmax(np.abs(B[:, 0])))] += 1
    p = np.array([1.0, 4.0, 9.0]) / 14.0
    sd = np.sqrt(p * (1 - p) / trials)
    # 5 standard deviations; the official code's norm weights (1/6, 2/6, 3/6) are ~5–9 sd away
    assert np.all(np.abs(counts / trials - p) <= 5 * sd), counts / trials


def test_column_sampling_keeps_the_largest_directions(dtype):
    """Column sampling keeps the k *largest* directions of its c = k + oversample columns."""
    rng = np.random.default_rng(13)
    s = np.array([3.0, 2.0, 1.0, 0.5])
    G = spectral_matrix(20, 4, s, _wide(dtype), rng)
    G = (G / np.linalg.norm(G, axis=0)).astype(dtype)  # equal column norms: 42 draws of 4
    # columns miss one with probability 4·(3/4)^42 < 1e-4, and this seed draws them all
    A, B = ul.lowrank(G, 2, sampler="column", oversample=40, rng=1)
    err = np.linalg.norm(product(A, B) - G)
    # keeping the 2 smallest directions instead would give svd_errors(G)[0]-level errors
    assert err <= svd_errors(G)[2] + compare_tol(20, dtype) * 2.0


def test_column_sampling_factored_matches_dense(dtype):
    rng = np.random.default_rng(14)
    X, Y = gaussian((16, 12), dtype, rng), gaussian((10, 12), dtype, rng)
    G = (X.astype(_wide(dtype)) @ _h(Y.astype(_wide(dtype)))).astype(dtype)
    for seed in range(3):
        P1 = product(*ul.lowrank(G, 2, sampler="column", oversample=2, rng=seed))
        P2 = product(*ul.lowrank((X, Y), 2, sampler="column", oversample=2, rng=seed))
        scale = np.linalg.norm(X, 2) * np.linalg.norm(Y, 2)
        assert np.max(np.abs(P1 - P2)) <= compare_tol(16, dtype, condition=1e2) * scale


# ----------------------------------------------------------------------------------------
# tol= mode
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["randomized", "column"])
@pytest.mark.parametrize("factored", [False, True])
def test_tol_chooses_the_smallest_rank(sampler, factored, dtype):
    rng = np.random.default_rng(15)
    m, n = 40, 32
    s = 0.8 ** np.arange(n)
    G = spectral_matrix(m, n, s, dtype, rng, (2,))
    best = svd_errors(G) / np.linalg.norm(G.astype(_wide(dtype)), axis=(-2, -1))[..., None]
    for kstar in (3, 9):
        # tol between the optimal errors at kstar−1 and kstar of every matrix in the batch
        tol = float(np.sqrt(np.max(best[:, kstar]) * np.min(best[:, kstar - 1])))
        arg = (G, np.eye(n, dtype=dtype)) if factored else G
        info = ul.lowrank(arg, tol=tol, sampler=sampler, rng=0, return_info=True)
        if sampler == "randomized":
            assert info.rank == kstar
        else:  # column sampling is within a few % of optimal only: never below the optimum
            assert kstar <= info.rank <= kstar + 4
        assert info.A.shape == (2, m, info.rank) and info.error.shape == (2,)
        true = np.linalg.norm(product(info.A, info.B) - G, axis=(-2, -1))
        true = true / np.linalg.norm(G.astype(_wide(dtype)), axis=(-2, -1))
        assert np.all(to_numpy(info.error) <= tol)
        assert np.all(np.abs(to_numpy(info.error) - true) <= compare_tol(m, dtype))


def test_tol_grows_the_sketch_and_respects_max_rank():
    rng = np.random.default_rng(16)
    n = 80
    G = spectral_matrix(n, n, 1.0 / np.arange(1, n + 1), "float64", rng)
    best = svd_errors(G) / np.linalg.norm(G)
    info = ul.lowrank(G, tol=0.1, rng=0, return_info=True)  # needs more than the first sketch
    kstar = int(np.argmax(best <= 0.1))
    assert info.rank >= kstar > 11 and float(info.error) <= 0.1
    assert info.rank <= kstar + 2
    capped = ul.lowrank(G, tol=1e-3, max_rank=5, rng=0, return_info=True)
    assert capped.rank == 5 and float(capped.error) > 1e-3  # the miss is visible
    low = ul.lowrank(G, 7, tol=0.9, rng=0, return_info=True)  # rank is the minimum
    assert low.rank == 7


def test_tol_numerical_rank_of_factored_input():
    rng = np.random.default_rng(17)
    X, Y = gaussian((3, 50, 4), "complex128", rng), gaussian((40, 4), "complex128", rng)
    # a tol at the rounding level (100·n·eps, compare_tol): lowrank documents its error
    # as "accurate to rounding (about n·eps)", so the exact rank meets it
    tol = compare_tol(50, "complex128")
    info = ul.lowrank((X, Y), tol=tol, rng=0, return_info=True)
    assert info.rank == 4 and np.all(info.error <= tol)  # exact path: no √eps floor
    A, B = ul.lowrank((X, Y), tol=tol, rng=0)
    assert A.shape == (3, 50, 4)


def test_return_info_fixed_rank():
    rng = np.random.default_rng(18)
    G = spectral_matrix(20, 20, 0.5 ** np.arange(20), "float64", rng)
    info = ul.lowrank(G, 3, rng=0, return_info=True)
    assert isinstance(info, ul.LowRank) and info.rank == 3
    true = np.linalg.norm(G - info.A @ info.B.T) / np.linalg.norm(G)
    assert abs(float(info.error) - true) <= compare_tol(20, "float64")
    for arg in (G, (G, np.eye(20))):
        lsi = ul.lowrank(arg, 3, sampler="lsi", rng=0, return_info=True)
        true = np.linalg.norm(G - lsi.A @ lsi.B.T) / np.linalg.norm(G)
        assert abs(float(lsi.error) - true) <= compare_tol(20, "float64")


@pytest.mark.parametrize("factored", [False, True])
def test_tol_finds_the_exact_rank_with_a_tiny_tol(dtype, factored):
    """The estimate has no √eps floor: a tol near eps still finds rank(G), not min(m, n)."""
    rng = np.random.default_rng(21)
    m, n = 40, 30
    G = spectral_matrix(m, n, [1.0, 0.3, 0.1, 0.03], dtype, rng, (2,))
    arg = (G, np.eye(n, dtype=dtype)) if factored else G  # r = 30: the sketch path
    tol = compare_tol(max(m, n), dtype)
    info = ul.lowrank(arg, tol=tol, rng=0, return_info=True)
    assert info.rank == 4 and np.all(to_numpy(info.error) <= tol)


# ----------------------------------------------------------------------------------------
# 5. bad input
# ----------------------------------------------------------------------------------------


def test_bad_input():
    rng = np.random.default_rng(19)
    G = gaussian((6, 5), "float64", rng)
    X, Y = gaussian((6, 2), "float64", rng), gaussian((5, 2), "float64", rng)
    with pytest.raises(ValueError, match=r"rank must satisfy 1 <= rank <= 5.*got 0"):
        ul.lowrank(G, 0)
    with pytest.raises(ValueError, match=r"rank must satisfy .*got 6"):
        ul.lowrank(G, 6)
    with pytest.raises(ValueError, match=r"rank must satisfy .*got 6"):
        ul.lowrank((X, Y), 6)
    with pytest.raises(TypeError, match="rank must be an integer"):
        ul.lowrank(G, 2.5)
    with pytest.raises(ValueError, match="same number of columns r.*\\(6, 2\\).*\\(5, 3\\)"):
        ul.lowrank((X, gaussian((5, 3), "float64", rng)), 1)
    with pytest.raises(ValueError, match="pair \\(X, Y\\).*3 items"):
        ul.lowrank((X, Y, Y), 1)
    with pytest.raises(ValueError, match="batch axes"):
        ul.lowrank((np.stack([X] * 2), np.stack([Y] * 3)), 1)
    bad = G.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="G contains NaN or infinity"):
        ul.lowrank(bad, 1)
    Yi = Y.copy()
    Yi[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"G\[1\] \(Y\) contains NaN or infinity"):
        ul.lowrank((X, Yi), 1)
    with pytest.raises(TypeError, match="dtype float32, float64, complex64 or complex128.*int64"):
        ul.lowrank(np.ones((4, 4), dtype=np.int64), 1)
    with pytest.raises(TypeError, match="X.*dtype"):
        ul.range_finder((np.ones((4, 2), dtype=np.int32), Y[:4]), 1)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        ul.lowrank(np.ones(4), 1)
    with pytest.raises(ValueError, match="sampler must be"):
        ul.lowrank(G, 1, sampler="svd")
    with pytest.raises(ValueError, match="rank .* or a tol"):
        ul.lowrank(G)
    with pytest.raises(ValueError, match="tol must be a positive finite number"):
        ul.lowrank(G, tol=0.0)
    with pytest.raises(ValueError, match="tol must be a positive finite number"):
        ul.lowrank(G, tol=float("nan"))
    with pytest.raises(ValueError, match="tol= needs sampler"):
        ul.lowrank(G, tol=0.1, sampler="lsi")
    with pytest.raises(ValueError, match="max_rank only applies"):
        ul.lowrank(G, 2, max_rank=3)
    with pytest.raises(ValueError, match="max_rank must satisfy 3 <= max_rank"):
        ul.lowrank(G, 3, tol=0.1, max_rank=2)
    with pytest.raises(ValueError, match="oversample must be at least 0"):
        ul.lowrank(G, 1, oversample=-1)
    with pytest.raises(ValueError, match="size must satisfy 1 <= size <= 5"):
        ul.range_finder(G, 6)
    with pytest.raises(TypeError, match="rng must be"):
        ul.lowrank(G, 1, rng="seed")
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="must come from one array library"):
        ul.lowrank((X, torch.asarray(Y)), 1)
    with pytest.raises(TypeError, match="must be an array of an Array-API library"):
        ul.lowrank([[1.0, 2.0], [3.0, 4.0]], 1)


def test_float32_stays_float32_and_cores_are_double():
    """float32 exactness at c·eps: the small SVD runs in double, so no √eps loss."""
    rng = np.random.default_rng(20)
    G = spectral_matrix(30, 20, [1.0, 1e-2, 1e-4], "float32", rng)
    A, B = ul.lowrank(G, 3, rng=0)
    assert A.dtype == np.float32 and B.dtype == np.float32
    assert spec_norm(product(A, B) - G) <= compare_tol(30, "float32") * 1.0
    assert eps_of(A.dtype) == eps_of("float32")
