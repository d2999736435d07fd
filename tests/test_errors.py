"""Bad input raises ValueError or TypeError whose message names the argument and what it got."""

from __future__ import annotations

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
    with pytest.raises(ValueError, match="method must be 'polar', 'exp' or 'cayley', got 'qr'"):
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
