"""The one-call path of small square updates (``_engines/small.py``) and of ``step``.

Under ``engine="auto"`` a 2-D square NumPy U (or a CPU torch tensor without
autograd) with n < 512 and k <= 4 is updated by one compiled call, and ``step``
sketches a small dense G by one compiled call. Here every such path is compared
with the portable body (``engine="array_api"``) and with the dense oracle
:func:`unitary_lowrank.testing.reference.reference_retract`, on degenerate steps
and on bad input, which the fast path hands to the general path to report.
"""

from __future__ import annotations

import numpy as np
import pytest

import unitary_lowrank as ul
from unitary_lowrank import _engines, _tunables
from unitary_lowrank.methods import METHODS
from unitary_lowrank.testing import assert_close, assert_unitary, compare_tol, lowrank_factors
from unitary_lowrank.testing.reference import reference_retract

pytestmark = pytest.mark.skipif(_engines.load_small() is None,
                                reason="numba (or scipy) missing or disabled")

DTYPES = ("float32", "float64", "complex64", "complex128")
SIZES = (1, 2, 3, 8, 64, 130)


def _double(x):
    return np.asarray(x).astype(np.complex128 if np.iscomplexobj(x) else np.float64)


def _tol(U, A, B, method, dtype, factor=100.0):
    """c·n·eps, times 1/σ_min(U + ABᴴ) for the polar factor (its condition number)."""
    n = U.shape[-1]
    if method != "polar":
        return compare_tol(n, dtype, factor)
    M = _double(U) + _double(A) @ _double(B).conj().T
    return compare_tol(n, dtype, factor, condition=1.0 / np.linalg.svd(M, compute_uv=False)[-1])


def _case(n, k, dtype, seed, norm=0.3):
    rng = np.random.default_rng(seed)
    U = ul.random_unitary(n, dtype=dtype, rng=rng)
    A, B = lowrank_factors(n, n, k, dtype, rng, norm=norm)
    return U, A, B


@pytest.fixture
def calls(monkeypatch):
    """Count the calls of the one-call kernel (and let them run)."""
    small = _engines.load_small()
    seen = []
    real = small.update

    def spy(*args):
        status = real(*args)
        seen.append(status)
        return status

    monkeypatch.setattr(small, "update", spy)
    return seen


# ---------------------------------------------------------------- which calls take it

def test_small_square_numpy_takes_the_kernel(calls):
    U, A, B = _case(16, 1, "float32", 0)
    ul.project(U, A, B)
    ul.transport(U, A, B, out=U.copy())
    ul.retract(U, A, B, method="cayley", xp=np)
    assert calls == [0, 0, 0]


@pytest.mark.parametrize("why", ["batch", "stiefel", "engine", "rank", "large", "wide",
                                 "mixed", "fortran", "overlap"])
def test_other_calls_take_the_general_path(why, calls):
    n, k = {"large": (512, 1), "wide": (130, 4), "rank": (12, 5)}.get(why, (12, 1))
    U, A, B = _case(n, k, "float64", 1)
    kwargs = {}
    if why == "batch":
        U = np.stack([U, U])
    elif why == "stiefel":
        U = U[:, :5].copy()
        B = B[:5]
    elif why == "engine":
        kwargs["engine"] = "array_api"
    elif why == "mixed":
        A = A.astype(np.float32)
    elif why == "fortran":
        U = np.asfortranarray(U)
    elif why == "overlap":
        buf = np.zeros(n * n + 1)
        buf[:-1] = U.ravel()
        U = buf[:-1].reshape(n, n)
        kwargs["out"] = buf[1:].reshape(n, n)
    X = ul.project(U, A, B, **kwargs)
    assert calls == []
    assert_unitary(X)


# ---------------------------------------------------------------- agreement

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_matches_portable_body_and_dense_oracle(method, dtype, n, k, calls):
    U, A, B = _case(n, k, dtype, 10 * n + k)
    X = ul.retract(U, A, B, method=method)
    # k >= 2 takes the kernel only up to n·k = SMALL_MAX_WORK (n = 130, k = 3 goes on;
    # larger products take the general path)
    assert calls == ([0] if k == 1 or n * k <= _tunables.SMALL_MAX_WORK else [])
    assert X.dtype == U.dtype and X.shape == U.shape and type(X) is np.ndarray
    assert_unitary(X)
    tol = _tol(U, A, B, method, dtype)
    assert_close(X, ul.retract(U, A, B, method=method, engine="array_api"), tol)
    assert_close(X, reference_retract(U, A, B, method), tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_in_place_and_disjoint(dtype):
    U, A, B = _case(40, 2, dtype, 3)
    expected = ul.transport(U, A, B)
    W = U.copy()
    assert ul.transport(W, A, B, out=W) is W
    assert_close(W, expected, 0.0)
    out = np.empty_like(U)
    assert ul.transport(U, A, B, out=out) is out
    assert_close(out, expected, 0.0)


def test_ndarray_subclass_keeps_its_type():
    class Tagged(np.ndarray):
        pass

    U, A, B = _case(6, 1, "float64", 4)
    X = ul.project(U.view(Tagged), A, B)
    assert type(X) is Tagged
    assert_close(X, ul.project(U, A, B), 0.0)


# ---------------------------------------------------------------- degenerate steps

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("zero", ["A", "B", "both"])
def test_zero_step_is_identity(method, dtype, zero, calls):
    U, A, B = _case(9, 2, dtype, 5)
    if zero in ("A", "both"):
        A = np.zeros_like(A)
    if zero in ("B", "both"):
        B = np.zeros_like(B)
    X = ul.retract(U, A, B, method=method)
    assert calls == [0]
    assert_close(X, U, compare_tol(9, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 8, 64])
def test_step_normal_to_the_manifold(dtype, n, calls):
    """A = U B c: the skew part is zero, so exp and Cayley do not move; polar is exact."""
    U, _, B = _case(n, 1, dtype, 6)
    A = (_double(U) @ _double(B) * 0.7).astype(dtype)
    for method in METHODS:
        X = ul.retract(U, A, B, method=method)
        assert_unitary(X)
        assert_close(X, reference_retract(U, A, B, method), _tol(U, A, B, method, dtype))
    assert_close(ul.transport(U, A, B), U, compare_tol(n, dtype))
    assert_close(ul.retract(U, A, B, method="cayley"), U, compare_tol(n, dtype))
    assert calls == [0] * 5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 8, 64, 130])
def test_singular_sum_gives_unitary(dtype, n, calls):
    """bᴴ Uᴴ a = −1: U + a bᴴ is singular; the polar factor is one of many, unitary."""
    rng = np.random.default_rng(n)
    U = ul.random_unitary(n, dtype=dtype, rng=rng)
    b = lowrank_factors(n, n, 1, dtype, rng, norm=1.0)[1]
    a = -(_double(U) @ _double(b)).astype(dtype)
    for method in METHODS:
        X = ul.retract(U, a, b, method=method)
        assert np.all(np.isfinite(X))
        assert_unitary(X)
        if method != "polar":  # exp and Cayley are unique
            assert_close(X, reference_retract(U, a, b, method), compare_tol(n, dtype))
    assert calls == [0, 0, 0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_repeated_columns_and_n_below_2k(dtype, calls):
    U, A, B = _case(12, 3, dtype, 7)
    A, B = np.repeat(A[:, :1], 3, axis=1), np.repeat(B[:, :1], 3, axis=1)
    U3, A3, B3 = _case(3, 4, dtype, 8)
    for (u, a, b) in ((U, A, B), (U3, A3, B3)):
        for method in METHODS:
            X = ul.retract(u, a, b, method=method)
            assert_unitary(X)
            assert_close(X, reference_retract(u, a, b, method), _tol(u, a, b, method, dtype))
    assert calls == [0] * 6


@pytest.mark.parametrize("method", ["exp", "cayley"])
def test_huge_real_step_stays_orthogonal(method):
    U, A, B = _case(10, 2, "float64", 9, norm=1e12)
    X = ul.retract(U, A, B, method=method)
    assert_unitary(X)
    # angles of ~1e12 radians carry an absolute error of ~1e12·eps ≈ 1e-4 on any path
    assert_close(X, ul.retract(U, A, B, method=method, engine="array_api"), 1e-3)


# ---------------------------------------------------------------- bad input

def _errors(call):
    try:
        call()
    except (TypeError, ValueError) as exc:
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", ["nan_A", "inf_B", "nan_U", "nan_U_checked", "not_unitary",
                                 "zero_U"])
def test_bad_values_raise_the_general_error_and_leave_out_alone(dtype, bad, calls):
    U, A, B = _case(20, 1, dtype, 11)
    kwargs = {}
    if bad == "nan_A":
        A[3, 0] = np.nan
    elif bad == "inf_B":
        B[0, 0] = np.inf
    elif bad in ("nan_U", "nan_U_checked"):
        U[4, 5] = np.nan
        kwargs["check_finite"] = bad == "nan_U_checked"
    elif bad == "not_unitary":
        U = U * np.asarray(1.01, dtype=U.dtype)
    else:
        U = np.zeros_like(U)
    before = U.copy()
    for method in METHODS:
        fast = _errors(lambda m=method: ul.retract(U, A, B, method=m, out=U, **kwargs))
        general = _errors(lambda m=method: ul.retract(U, A, B, method=m, engine="array_api",
                                                       **kwargs))
        assert fast is not None and fast == general
        np.testing.assert_array_equal(U, before)
    assert all(status != 0 for status in calls)


def test_check_unitary_false_is_honoured(calls):
    U, A, B = _case(20, 1, "float64", 12)
    U = U * 1.01
    X = ul.project(U, A, B, check_unitary=False)
    assert calls == [0]
    assert_close(X, ul.project(U, A, B, check_unitary=False, engine="array_api"), 1e-13)


def test_bad_arguments_keep_their_messages(monkeypatch):
    U, A, B = _case(8, 1, "float64", 13)
    cases = [
        lambda: ul.project(U, A[:5], B),
        lambda: ul.project(U, A, B[:, :0].repeat(2, axis=1)),
        lambda: ul.transport(U[:, :4], A, B[:4]),
        lambda: ul.project(U.astype(np.float16), A, B),
        lambda: ul.project(U, A, B, out=np.empty((8, 8), np.float32)),
        lambda: ul.project(U, A, B, out=np.empty((8, 8)).T[:4]),
        lambda: ul.project(U, A, B, xp="numpy"),
        lambda: ul.project(np.ma.masked_array(U), A, B),
    ]
    for call in cases:
        got = _errors(call)
        assert got is not None
        assert got == _without_kernel(monkeypatch, lambda c=call: _errors(c))


def _without_kernel(monkeypatch, call):
    """`call()` with the one-call kernels disabled: the general path."""
    with monkeypatch.context() as m:
        m.setattr(_engines, "load_small", lambda: None)
        return call()


# ---------------------------------------------------------------- torch

@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_cpu_matches_numpy(dtype, calls):
    torch = pytest.importorskip("torch")
    U, A, B = _case(33, 2, dtype, 14)
    Ut, At, Bt = (torch.from_numpy(x) for x in (U, A, B))
    for method in METHODS:
        X = ul.retract(Ut, At, Bt, method=method)
        assert type(X) is torch.Tensor and X.dtype == Ut.dtype
        assert_close(X, ul.retract(U, A, B, method=method), 0.0)
    W = Ut.clone()
    assert ul.transport(W, At, Bt, out=W) is W
    assert_close(W, ul.transport(U, A, B), 0.0)
    assert calls == [0] * 8


def test_torch_autograd_takes_the_general_path(calls):
    torch = pytest.importorskip("torch")
    U, A, B = _case(8, 1, "float64", 15)
    Ut = torch.from_numpy(U)
    At = torch.from_numpy(A).requires_grad_()
    X = ul.project(Ut, At, torch.from_numpy(B))
    assert calls == []
    assert X.requires_grad
    with torch.no_grad():
        Y = ul.project(Ut, At, torch.from_numpy(B))
    assert calls == [0]
    assert_close(Y, X.detach(), compare_tol(8, "float64"))


def test_torch_bad_values_raise(calls):
    torch = pytest.importorskip("torch")
    U, A, B = _case(8, 1, "float32", 16)
    A[0, 0] = np.nan
    Ut = torch.from_numpy(U)
    before = Ut.clone()
    with pytest.raises(ValueError, match="^A contains NaN or infinity"):
        ul.project(Ut, torch.from_numpy(A), torch.from_numpy(B), out=Ut)
    assert torch.equal(Ut, before)


# ---------------------------------------------------------------- step

def _general_step(U, G, lr, method, sampler, seed):
    """``step`` as the general path computes it: the sketch, then the portable update."""
    A, B = ul.lowrank(G, 1, sampler=sampler, rng=seed)
    return ul.retract(U, A * (-lr), B, method=method, engine="array_api")


@pytest.mark.parametrize("sampler", ["randomized", "lsi"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 8, 64, 130])
def test_step_matches_sketch_then_retract(sampler, method, dtype, n, calls):
    rng = np.random.default_rng(n)
    U = ul.random_unitary(n, dtype=dtype, rng=rng)
    G = lowrank_factors(n, n, min(n, 3), dtype, rng, norm=1.0)
    G = (G[0] @ G[1].conj().T).astype(dtype)
    X = ul.step(U, G, 0.1, method=method, sampler=sampler, rng=5)
    assert calls == [0]
    assert_unitary(X)
    expected = _general_step(U, G, 0.1, method, sampler, 5)
    # the sketch is in G's precision: its rounding (relative to ‖G‖) moves the step
    assert_close(X, expected, compare_tol(n, dtype, 1000.0))


def test_step_consumes_the_generator_like_lowrank():
    U = ul.random_unitary(16, dtype="float64", rng=0)
    G = np.random.default_rng(1).standard_normal((16, 16))
    gen_fast, gen_ref = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(3):
        X = ul.step(U, G, 0.01, rng=gen_fast)
        A, B = ul.lowrank(G, 1, rng=gen_ref)
        assert_close(X, ul.retract(U, -0.01 * A, B, method="exp"), 1e-12)
    assert gen_fast.bit_generator.state == gen_ref.bit_generator.state


@pytest.mark.parametrize("bad", ["nan_G", "huge_lr", "huge_core", "tiny_G", "rank_bool",
                                 "not_unitary"])
def test_step_bad_or_special_input(bad, calls, monkeypatch):
    """Errors and results of ``step`` are those of the general path; `out` stays untouched."""
    U = ul.random_unitary(8, dtype="float32", rng=0)
    G = np.random.default_rng(2).standard_normal((8, 8)).astype(np.float32)
    lr, kwargs = 0.1, {}
    if bad == "nan_G":
        G[1, 1] = np.nan
    elif bad == "huge_lr":  # the scaled factor overflows float32
        lr = 1e39
    elif bad == "huge_core":  # the factor fits, Uᴴ A in the core does not
        h2 = np.array([[1.0, 1.0], [1.0, -1.0]])
        U = (np.kron(np.kron(h2, h2), h2) / np.sqrt(8.0)).astype(np.float32)
        G, lr = np.full((8, 8), 1e10, np.float32), 1e28
    elif bad == "tiny_G":  # outside the safe range: the general path scales G first
        U = ul.random_unitary(8, dtype="float64", rng=0)
        G, lr = G.astype(np.float64) * 2.0 ** -600, 2.0 ** 599
    elif bad == "rank_bool":
        kwargs["rank"] = True
    else:
        U = U * np.float32(1.01)
    before = U.copy()

    def call():
        W = U.copy()
        try:
            return ul.step(W, G, lr, rng=0, out=W, **kwargs)
        except (TypeError, ValueError) as exc:
            np.testing.assert_array_equal(W, before)
            return type(exc), str(exc), exc.__cause__ is not None

    got = call()
    expected = _without_kernel(monkeypatch, call)
    if isinstance(expected, tuple):
        assert got == expected
    else:
        assert_close(got, expected, 1e-12)
    if bad == "nan_G":
        assert calls == []


def test_step_torch_matches_numpy():
    torch = pytest.importorskip("torch")
    U = ul.random_unitary(24, dtype="float32", rng=0)
    G = np.random.default_rng(3).standard_normal((24, 24)).astype(np.float32)
    X = ul.step(torch.from_numpy(U), torch.from_numpy(G), 0.05, rng=1)
    assert type(X) is torch.Tensor
    assert_close(X, ul.step(U, G, 0.05, rng=1), 0.0)
