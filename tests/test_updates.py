"""project / transport / retract against dense references, on NumPy.

The dense oracle is :func:`unitary_lowrank.testing.reference.reference_retract`,
computed in double precision from the (possibly single precision) inputs: the
SVD polar factor of ``U + ABᴴ``, ``U @ scipy.linalg.expm(Ω)`` and
``U @ solve(I − Ω/2, I + Ω/2)`` with ``Ω = skew(Uᴴ A Bᴴ)``.
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
    assert_unitary,
    compare_tol,
    eps_of,
    lowrank_factors,
    unitarity_bound,
)
from unitary_lowrank.testing.reference import reference_retract
from unitary_lowrank.testing.strategies import update_cases


def _double(x):
    return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)


def oracle_tol(U, A, B, method, dtype, factor=100.0):
    """c·n·eps, scaled by 1/σ_min(U + ABᴴ) for the polar factor (its condition number)."""
    n = U.shape[-2]
    if method == "polar":
        M = _double(U) + _double(A) @ np.swapaxes(_double(B), -1, -2).conj()
        smin = np.min(np.linalg.svd(M, compute_uv=False)[..., -1])
        return compare_tol(n, dtype, factor, condition=1.0 / smin)
    return compare_tol(n, dtype, factor)


def _case(n, p, k, dtype, norm, seed, batch=()):
    rng = np.random.default_rng(seed)
    U = ul.random_unitary(n, p, dtype=dtype, batch_shape=batch, rng=rng)
    AB = [lowrank_factors(n, p, k, dtype, rng, norm=norm) for _ in range(int(np.prod(batch)))]
    A = np.stack([a for a, _ in AB]).reshape(*batch, n, k)
    B = np.stack([b for _, b in AB]).reshape(*batch, p, k)
    return U, A, B


SIZES = [(1, 1), (2, 1), (3, 2), (5, 4), (8, 8), (17, 3), (64, 1), (64, 8), (200, 2), (300, 5)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("n", "k"), SIZES)
@pytest.mark.parametrize("norm", [1e-3, 0.5, 3.0])
def test_square_matches_dense(method, n, k, norm, dtype):
    U, A, B = _case(n, n, k, dtype, norm, seed=n * 100 + k)
    X = ul.retract(U, A, B, method=method)
    assert X.dtype == U.dtype and X.shape == U.shape
    assert_close(X, reference_retract(U, A, B, method), oracle_tol(U, A, B, method, dtype))
    assert_unitary(X)


@pytest.mark.parametrize(("n", "p", "k"), [(2, 1, 1), (5, 3, 4), (10, 4, 2), (40, 39, 3),
                                           (120, 30, 8), (250, 100, 1)])
@pytest.mark.parametrize("norm", [1e-3, 0.5, 3.0])
def test_stiefel_matches_dense(n, p, k, norm, dtype):
    U, A, B = _case(n, p, k, dtype, norm, seed=n + p + k)
    X = ul.project(U, A, B)
    assert X.shape == (n, p)
    assert_close(X, reference_retract(U, A, B, "polar"), oracle_tol(U, A, B, "polar", dtype))
    assert_unitary(X)


@pytest.mark.parametrize("method", METHODS)
def test_batched_matches_dense_and_loop(method, dtype):
    U, A, B = _case(12, 12, 3, dtype, 0.3, seed=7, batch=(2, 3))
    X = ul.retract(U, A, B, method=method)
    assert X.shape == (2, 3, 12, 12)
    assert_close(X, reference_retract(U, A, B, method), oracle_tol(U, A, B, method, dtype))
    loop = np.stack([ul.retract(U[i, j], A[i, j], B[i, j], method=method)
                     for i in range(2) for j in range(3)]).reshape(X.shape)
    # batched and looped (other kernels may run): both within the oracle tolerance
    assert_close(X, loop, compare_tol(12, dtype))


def test_batch_axes_broadcast(dtype):
    """One U against a batch of steps, and a batch of U against one step."""
    U, A, B = _case(6, 6, 2, dtype, 0.2, seed=3, batch=(4,))
    X = ul.project(U[0], A, B)
    assert X.shape == (4, 6, 6)
    Ub = np.broadcast_to(U[0], U.shape)
    assert_close(X, reference_retract(Ub, A, B, "polar"), oracle_tol(Ub, A, B, "polar", dtype))
    Y = ul.transport(U, A[0], B[0])
    assert_close(Y[2], ul.transport(U[2], A[0], B[0]), compare_tol(6, dtype))


def test_stiefel_batched(dtype):
    U, A, B = _case(9, 4, 2, dtype, 0.4, seed=11, batch=(3,))
    X = ul.project(U, A, B)
    assert_close(X, reference_retract(U, A, B, "polar"), oracle_tol(U, A, B, "polar", dtype))
    assert_unitary(X)


@pytest.mark.parametrize("method", METHODS)
def test_zero_step_is_identity(method, dtype):
    U, _, B = _case(7, 7, 2, dtype, 0.1, seed=5)
    X = ul.retract(U, np.zeros((7, 2), dtype), B, method=method)
    assert_close(X, U, compare_tol(7, dtype))  # U is the dense reference of a zero step


def test_empty_rank_returns_copy(dtype):
    U = ul.random_unitary(4, dtype=dtype, rng=0)
    X = ul.project(U, np.zeros((4, 0), dtype), np.zeros((4, 0), dtype))
    assert X is not U and np.array_equal(X, U)


@pytest.mark.parametrize("method", METHODS)
def test_inputs_not_modified(method, dtype):
    U, A, B = _case(10, 10, 2, dtype, 0.3, seed=1)
    copies = [x.copy() for x in (U, A, B)]
    for x in (U, A, B):
        x.flags.writeable = False  # a write would raise
    ul.retract(U, A, B, method=method)
    for x, c in zip((U, A, B), copies, strict=True):
        assert np.array_equal(x, c)


def test_out_writes_in_place(dtype):
    U, A, B = _case(10, 10, 2, dtype, 0.3, seed=2)
    expected = ul.transport(U, A, B)
    W = U.copy()
    res = ul.transport(W, A, B, out=W)
    assert res is W
    assert_close(W, expected, 0.0)


def test_out_untouched_on_error(dtype):
    U, A, B = _case(6, 6, 1, dtype, 0.3, seed=2)
    W = U.copy()
    A[0, 0] = np.nan
    with pytest.raises(ValueError, match="A contains NaN"):
        ul.project(W, A, B, out=W)
    assert np.array_equal(W, U)


def test_overflowing_step_raises_before_out_is_written():
    U = ul.random_unitary(5, dtype="float64", rng=0)
    A = np.full((5, 1), 1e200)
    B = np.full((5, 1), 1e200)
    W = U.copy()
    with pytest.raises(ValueError, match="overflow"):
        ul.transport(W, A, B, out=W)
    assert np.array_equal(W, U)
    # the polar core is scale invariant, so the same step projects fine
    assert_unitary(ul.project(U, A, B))


# ---------------------------------------------------------------- degenerate cases

def _singular(n, dtype, seed):
    """Return U, a, b with k = 1 and bᴴ Uᴴ a = −1: U + abᴴ is singular."""
    rng = np.random.default_rng(seed)
    U = ul.random_unitary(n, dtype=dtype, rng=rng)
    b = lowrank_factors(n, n, 1, dtype, rng, norm=1.0)[1]
    a = -(_double(U) @ b).astype(dtype)
    return U, a, b


@pytest.mark.parametrize("n", [1, 2, 5, 40])
def test_singular_sum_gives_unitary(n, dtype):
    U, a, b = _singular(n, dtype, seed=n)
    M = _double(U) + _double(a) @ _double(b).conj().T
    # really singular: ‖M b‖ is the rounding of a = −U b (a double-precision product,
    # then a cast to dtype with relative error eps/2, ‖a‖ = ‖b‖ = 1)
    assert np.linalg.svd(M, compute_uv=False)[-1] <= eps_of(dtype) + compare_tol(n, "float64")
    for method in METHODS:
        X = ul.retract(U, a, b, method=method)
        assert np.all(np.isfinite(X))
        assert_unitary(X)


@pytest.mark.parametrize("case", ["normal", "repeated", "n<2k", "zeroB"])
def test_rank_deficient_steps(case, dtype):
    rng = np.random.default_rng(4)
    n, k = (3, 4) if case == "n<2k" else (12, 3)
    U = ul.random_unitary(n, dtype=dtype, rng=rng)
    A, B = lowrank_factors(n, n, k, dtype, rng, norm=0.4)
    if case == "normal":  # A Bᴴ = U (B Bᴴ): normal to the manifold, [B, UᴴA] rank k
        A = (_double(U) @ B).astype(dtype)
    elif case == "repeated":
        A, B = np.repeat(A[:, :1], k, axis=1), np.repeat(B[:, :1], k, axis=1)
    elif case == "zeroB":
        B = np.zeros_like(B)
    for method in METHODS:
        X = ul.retract(U, A, B, method=method)
        assert_unitary(X)
        assert_close(X, reference_retract(U, A, B, method),
                     oracle_tol(U, A, B, method, dtype))
    if case == "normal":  # the tangent part is zero: exp and Cayley do not move
        assert_close(ul.transport(U, A, B), U, compare_tol(n, dtype))


def test_stiefel_singular_gives_orthonormal_columns(dtype):
    rng = np.random.default_rng(9)
    U = ul.random_unitary(10, 4, dtype=dtype, rng=rng)
    b = lowrank_factors(4, 4, 2, dtype, rng, norm=1.0)[1]
    a = -(_double(U) @ b).astype(dtype)  # M b_i = 0 for both columns
    X = ul.project(U, a, b)
    assert np.all(np.isfinite(X))
    assert_unitary(X)


# ---------------------------------------------------------------- chained updates

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("dtype_", "limit"), [("float64", 1e-12), ("float32", 3e-5),
                                               ("complex128", 1e-12), ("complex64", 3e-5)])
def test_chained_rank1_updates_stay_unitary(method, dtype_, limit):
    """1 500 rank-1 steps of norm 0.05 at n = 100.

    The limits are the ones the library documents for exactly this run (README,
    "Accuracy and robustness"; docs/theory.md, "Accuracy"): below 1e-12 in
    float64/complex128 and 3e-5 in float32/complex64.
    """
    rng = np.random.default_rng(0)
    n = 100
    U = ul.random_unitary(n, dtype=dtype_, rng=rng)
    steps = rng.standard_normal((1500, 2, n))
    if dtype_.startswith("complex"):
        steps = steps + 1j * rng.standard_normal((1500, 2, n))
    steps = steps / np.linalg.norm(steps, axis=-1, keepdims=True)
    for a, b in steps:
        U = ul.retract(U, (0.05 * a[:, None]).astype(dtype_), b[:, None].astype(dtype_),
                       method=method, out=U)
    assert float(ul.unitarity_error(U)) < limit


# ---------------------------------------------------------------- properties (hypothesis)

@given(update_cases(square=None))
def test_property_project_unitary(case):
    X = ul.project(case.U, case.A, case.B)
    assert X.dtype == case.U.dtype
    assert_unitary(X)


@given(update_cases(), st.sampled_from(["exp", "cayley"]))
def test_property_tangent_updates_unitary(case, method):
    assert_unitary(ul.retract(case.U, case.A, case.B, method=method))


@given(update_cases(square=None, kinds=("generic", "lowrank", "repeated", "large")),
       st.sampled_from(METHODS))
def test_property_matches_dense_oracle(case, method):
    if case.U.shape[0] != case.U.shape[1]:
        method = "polar"
    X = ul.retract(case.U, case.A, case.B, method=method)
    tol = oracle_tol(case.U, case.A, case.B, method, case.dtype)
    assert_close(X, reference_retract(case.U, case.A, case.B, method), tol)


@given(update_cases(square=None, kinds=("generic", "large", "lowrank")), st.integers(0, 2**32 - 1))
def test_property_unitary_change_of_basis(case, seed):
    """f(V U W, V A, Wᴴ B) = V f(U, A, B) W for unitary V, W (all three methods)."""
    n, p = case.U.shape
    rng = np.random.default_rng(seed)
    V = _double(ul.random_unitary(n, dtype=case.dtype, rng=rng))
    W = _double(ul.random_unitary(p, dtype=case.dtype, rng=rng))
    methods = METHODS if n == p else ("polar",)
    cast = case.dtype

    def moved(x):
        return x.astype(cast)

    U2 = moved(V @ case.U @ W)
    A2 = moved(V @ case.A)
    B2 = moved(W.conj().T @ case.B)
    for method in methods:
        left = ul.retract(U2, A2, B2, method=method)
        right = V @ ul.retract(case.U, case.A, case.B, method=method) @ W
        tol = oracle_tol(case.U, case.A, case.B, method, case.dtype, factor=300.0)
        assert_close(left, right, tol)


@given(update_cases(kinds=("generic",), min_norm=1e-4, max_norm=0.05))
def test_property_polar_and_exp_agree_to_second_order(case):
    """D and T differ by O(‖step‖²) (docs/theory.md, "Accuracy")."""
    D = ul.project(case.U, case.A, case.B)
    T = ul.transport(case.U, case.A, case.B)
    n = case.U.shape[0]
    bound = 2 * case.norm**2 + compare_tol(n, case.dtype, 100)
    assert_close(D, T, bound)


@given(update_cases(square=None, kinds=("generic", "large")))
def test_property_correction_has_rank_at_most_2k(case):
    """X − U lies in the span of ≤ 2k (Stiefel: 3k) directions."""
    X = ul.project(case.U, case.A, case.B)
    k = case.A.shape[1]
    n, p = case.U.shape
    s = np.linalg.svd(_double(X) - _double(case.U), compute_uv=False)
    limit = min(n, p, (2 if n == p else 3) * k)
    assert np.all(s[limit:] <= unitarity_bound(n, case.dtype))


@given(update_cases(square=None, kinds=("generic",), max_norm=0.5))
def test_property_project_is_nearest(case):
    """No farther from M than U itself or a few random unitaries (optimality sanity)."""
    X = _double(ul.project(case.U, case.A, case.B))
    M = _double(case.U) + _double(case.A) @ _double(case.B).conj().T
    dist = np.linalg.norm(X - M)
    n, p = case.U.shape
    tol = compare_tol(n, case.dtype, 100)
    assert dist <= np.linalg.norm(_double(case.U) - M) + tol
    for seed in range(3):
        R = ul.random_unitary(n, p, dtype="complex128", rng=seed)
        assert dist <= np.linalg.norm(R - M) + tol
