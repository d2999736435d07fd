"""Bad input raises ValueError or TypeError whose message names the argument and what it got."""

from __future__ import annotations

import re

import numpy as np
import pytest

import unitary_lowrank as ul
from unitary_lowrank.testing import unitarity_bound

U = ul.random_unitary(4, dtype="float64", rng=0)
A = np.ones((4, 1))
B = np.ones((4, 1))
FUNCS = [ul.project, ul.transport, lambda U, A, B, **kw: ul.retract(U, A, B, "cayley", **kw)]


@pytest.mark.parametrize("f", FUNCS)
@pytest.mark.parametrize(
    ("args", "exc", "pattern"),
    [
        ((np.ones(4), A, B), ValueError, r"U must have at least 2 dimensions .* got shape \(4,\)"),
        ((U, np.ones(4), B), ValueError, r"A must have at least 2 dimensions .* got shape \(4,\)"),
        ((U, A, np.ones(4)), ValueError, r"B must have at least 2 dimensions .* got shape \(4,\)"),
        ((U, np.ones((5, 1)), B), ValueError, r"A must have shape \(\.\.\., n, k\) with n = 4 .*"
                                              r"\(5, 1\)"),
        ((U, A, np.ones((3, 1))), ValueError, r"B must have shape .* got \(3, 1\)"),
        ((U, np.ones((4, 2)), B), ValueError, r"same number of columns k, got A \(4, 2\) and "
                                              r"B \(4, 1\)"),
        ((np.broadcast_to(U, (2, 4, 4)), np.ones((3, 4, 1)), B), ValueError, "do not broadcast"),
        ((U.astype(int), A, B), TypeError, "U must have dtype float32, float64, complex64 or "
                                           "complex128, got int64"),
        ((U, A.astype(bool), B), TypeError, "A must have dtype .* got bool"),
        ((U, A, B.astype(np.float16)), TypeError, "B must have dtype .* got float16"),
        ((U.tolist(), A, B), TypeError, "U must be an array .* got list"),
        ((U, np.full((4, 1), np.nan), B), ValueError, "A contains NaN or infinity"),
        ((U, A, np.full((4, 1), -np.inf)), ValueError, "B contains NaN or infinity"),
    ],
)
def test_bad_input(f, args, exc, pattern):
    with pytest.raises(exc, match=pattern):
        f(*args)


@pytest.mark.parametrize("f", [ul.transport, lambda U, A, B: ul.retract(U, A, B, "exp"),
                               lambda U, A, B: ul.retract(U, A, B, "cayley")])
def test_tangent_updates_need_square_u(f):
    W = ul.random_unitary(5, 3, dtype="float64", rng=0)
    with pytest.raises(ValueError, match=r"needs a square U .* got \(5, 3\)"):
        f(W, np.ones((5, 1)), np.ones((3, 1)))


def test_wide_u_rejected():
    with pytest.raises(ValueError, match=r"p <= n .* got \(3, 5\)"):
        ul.project(np.ones((3, 5)), np.ones((3, 1)), np.ones((5, 1)))


def test_unknown_method():
    with pytest.raises(ValueError,
                       match="method must be one of 'polar', 'exp', 'cayley', got 'qr'"):
        ul.retract(U, A, B, method="qr")


@pytest.mark.parametrize("f", FUNCS)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_u(f, value):
    bad = U.copy()
    bad[1, 2] = value
    W = bad.copy()
    # check_finite=True scans U before any work
    with pytest.raises(ValueError, match="U contains NaN or infinity"):
        f(bad, A, B, check_finite=True)
    # by default U is not scanned, but a non-finite U shows in the small core
    # (here through Uᴴ A) and is reported, never written to `out`
    with pytest.raises(ValueError, match="U contains NaN or infinity"):
        f(bad, A, B, out=W)
    assert np.array_equal(W, bad, equal_nan=True)


def test_non_finite_stiefel_u():
    bad = ul.random_unitary(6, 3, dtype="float64", rng=0)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="U contains NaN or infinity"):
        ul.project(bad, np.ones((6, 1)), np.ones((3, 1)))


@pytest.mark.parametrize("f", FUNCS)
@pytest.mark.parametrize("scale", [0.0, 2.0, 1e-150, 1e150])
def test_non_unitary_u_is_refused(f, scale):
    """A U that is not unitary (zeros, a scaled unitary) would give a non-unitary result."""
    with pytest.raises(ValueError, match=r"U is not unitary .* exceeds sqrt\(eps\)"):
        f(scale * U, 0.1 * A, B)
    X = f(2.0 * U, 0.1 * A, B, check_unitary=False)  # the caller's responsibility then
    assert np.all(np.isfinite(X))


def test_non_unitary_stiefel_u_is_refused():
    W = 3.0 * ul.random_unitary(6, 2, dtype="complex64", rng=0)
    with pytest.raises(ValueError, match="U is not unitary"):
        ul.project(W, np.ones((6, 1), np.complex64), np.ones((2, 1), np.complex64))


@pytest.mark.parametrize("f", FUNCS)
def test_drifted_u_is_accepted(f):
    """Drift at the level a long float32 run reaches (1e-5) is not an error.

    The update multiplies U by a unitary matrix, so it carries U's own error
    ‖UᴴU − I‖₂ forward unchanged and adds only its rounding: the result is
    unitary to that error plus the documented bound c·n·eps of the dtype.
    """
    W = (U + 1e-5 * np.random.default_rng(0).standard_normal(U.shape)).astype(np.float32)
    drift = float(ul.unitarity_error(W))
    assert drift > unitarity_bound(4, "float32")  # really off the group, beyond rounding
    X = f(W, 0.1 * A.astype(np.float32), B.astype(np.float32))
    assert X.dtype == np.float32
    assert np.all(np.isfinite(X))
    err = float(ul.unitarity_error(X))
    assert err <= drift + unitarity_bound(4, "float32"), (err, drift)


def test_read_only_out():
    W = U.copy()
    W.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        ul.project(W, A, B, out=W)


def test_bad_out():
    with pytest.raises(ValueError, match=r"out must have shape \(4, 4\) and dtype float64, got "
                                         r"\(4, 3\)"):
        ul.project(U, A, B, out=np.empty((4, 3)))
    with pytest.raises(ValueError, match="out must have .* float32"):
        ul.project(U, A, B, out=np.empty((4, 4), np.float32))


def test_mixed_precision_promotes():
    X = ul.project(U.astype(np.float32), A, B)
    assert X.dtype == np.float64
    Y = ul.transport(U, A.astype(np.complex64), B)
    assert Y.dtype == np.complex128


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"n": 3, "p": 4, "dtype": "float64"}, ValueError, "need 0 <= p <= n, got n=3, p=4"),
        ({"n": -1, "dtype": "float64"}, ValueError, "need 0 <= p <= n"),
        ({"n": 3, "dtype": "int32"}, TypeError, "dtype must be float32, float64, complex64 or "
                                                "complex128"),
        ({"n": 3, "dtype": np.float16}, TypeError, "dtype must be"),
        ({"n": 3, "dtype": "float64", "rng": "seed"}, TypeError, "rng must be None, an int seed"),
        ({"n": 3.5, "dtype": "float64"}, TypeError, "n must be an integer, got float 3.5"),
        ({"n": 3, "dtype": "float64", "batch_shape": (-1,)}, ValueError, "batch_shape"),
        ({"n": 3, "dtype": "float64", "batch_shape": 3}, TypeError, "batch_shape must be a tuple"),
        ({"n": 3, "dtype": "float64", "rng": -1}, ValueError, "rng must be a non-negative int"),
    ],
)
def test_random_unitary_bad_input(kwargs, exc, pattern):
    kwargs = dict(kwargs)
    n = kwargs.pop("n")
    with pytest.raises(exc, match=pattern):
        ul.random_unitary(n, **kwargs)


@pytest.mark.parametrize("f", [ul.polar, ul.unitarity_error])
def test_dense_bad_input(f):
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        f(np.ones(3))
    with pytest.raises(TypeError, match="must have dtype"):
        f(np.ones((3, 3), dtype=int))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_polar_non_finite(value):
    M = np.eye(3)
    M[0, 1] = value
    with pytest.raises(ValueError, match="M contains NaN or infinity"):
        ul.polar(M)


def test_out_that_autograd_cannot_write_is_named():
    """A leaf tensor that requires grad as `out` raised torch's bare RuntimeError."""
    torch = pytest.importorskip("torch")
    Ut, At, Bt = (torch.asarray(x) for x in (U, A * 1e-2, B))
    for f in [*FUNCS, lambda U, A, B, **kw: ul.step(U, A @ B.T, 0.1, rng=0, **kw),
              lambda U, A, B, **kw: ul.step(U, A @ B.T, 0.1, rank="full", **kw)]:
        leaf = torch.zeros((4, 4), dtype=torch.float64, requires_grad=True)
        with pytest.raises(ValueError, match="out is a leaf tensor that requires grad"):
            f(Ut, At, Bt, out=leaf)
        assert not leaf.detach().any()  # untouched
        with torch.no_grad():  # where autograd lets it be written: as any out
            assert f(Ut, At, Bt, out=leaf) is leaf
        assert float(ul.unitarity_error(leaf.detach())) <= unitarity_bound(4, "float64")
    with pytest.raises(ValueError, match=r"out must have shape \(4, 4\)"):
        ul.step(U, A @ B.T, 0.1, rank="full", out=np.empty((4, 3)))  # checked there too


def _largest(dtype):
    """A finite G of mixed signs whose entries are near the dtype's largest value."""
    big = float(np.finfo(dtype).max)
    G = np.full((8, 8), big, dtype=dtype)
    G[0, 1] = -big / 3
    return G


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
@pytest.mark.parametrize("kwargs", [{}, {"sampler": "lsi"}, {"sampler": "column"}, {"rank": 5},
                                    {"tol": 0.5}, {"rank": "full"}])
def test_step_on_overflowing_input_raises_its_own_error_without_warnings(dtype, kwargs):
    """A finite G near the dtype's largest value: a result or the library's ValueError.

    NumPy's RuntimeWarning (overflow in power, multiply, matmul, cast) came first; float32
    and complex64 raised numba's LinAlgError ('Array must not contain infs or NaNs').
    """
    import warnings

    V = ul.random_unitary(8, dtype=dtype, rng=1)
    big = float(np.finfo(dtype).max)
    cases = [(_largest(dtype), 1.0), (_largest(dtype) / 10, 1.0),
             (np.ones((8, 8), dtype), big), (_largest(dtype) / 100, 1e-3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for G, lr in cases:
            try:
                X = ul.step(V, G, lr, rng=0, **kwargs)
            except ValueError as exc:  # the library's own error, naming the step or G
                assert re.search(r"too large|U is not unitary", str(exc)), exc
            else:
                assert X.dtype == V.dtype and np.all(np.isfinite(X))
                if kwargs.get("rank") != 5 or dtype.startswith("complex"):
                    # a real G of rank 2 sketched at rank 5: the core bug of
                    # test_hostile.py::test_huge_step_with_widely_spread_singular_values
                    assert float(np.max(ul.unitarity_error(X))) <= (
                        100 * unitarity_bound(8, dtype))
    assert not caught, [str(w.message) for w in caught]


def test_lowrank_of_a_matrix_whose_factor_overflows():
    with pytest.raises(ValueError, match="G is too large for float64: the factor A of its "
                                         "rank-1 approximation"):
        ul.lowrank(_largest("float64"), 1, rng=0)
    A1, B1 = ul.lowrank(_largest("float32") / 100, 1, rng=0)  # was LinAlgError (numba's)
    assert np.all(np.isfinite(A1)) and np.all(np.isfinite(B1))


def test_random_unitary_too_large_for_memory_says_what_it_needs():
    """random_unitary(10**6) raised NumPy's MemoryError about its Gaussian draw only."""
    sizes = [10**8]  # 80 PB: beyond any address space, also with overcommit
    try:
        with open("/proc/sys/vm/overcommit_memory") as f:
            if f.read().strip() != "1":
                sizes.append(10**6)  # the reported call: 7.28 TiB, refused at once
    except OSError:
        pass
    for n in sizes:
        with pytest.raises(MemoryError, match=rf"not enough memory for a Haar sample of shape "
                                              rf"\({n}, {n}\) .* in all, and the float64 "
                                              r"result takes [\d.]+ [TP]iB"):
            ul.random_unitary(n, dtype="float64", rng=0)


def test_cli_run_whose_step_overflows_ends_as_diverged(tmp_path, capsys):
    """A step too large for float32 ends the run as diverged, with its summary.

    `adding --lr 1e6` ended through the catch-all ('error: ValueError: the step -lr*G
    is too large') instead.
    """
    import json

    from unitary_lowrank.cli import main

    out = tmp_path / "run.json"
    assert main(["adding", "--lr", "1e6", "--steps", "100", "--quiet", "--json",
                 str(out)]) == 1
    err = capsys.readouterr().err
    assert "ValueError" not in err and "Traceback" not in err
    assert "too large for the dtype: stopping (diverged)" in err
    summary = json.loads(out.read_text())
    assert summary["stop_reason"] == "diverged" and summary["diverged"] is True
