"""polar, unitarity_error and random_unitary against NumPy, and Haar statistics."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import unitary_lowrank as ul
from unitary_lowrank.testing import (
    assert_close,
    assert_unitary,
    compare_tol,
    eps_of,
    rounded_unitarity_bound,
)


def test_polar_is_the_svd_factor(dtype):
    rng = np.random.default_rng(0)
    M = rng.standard_normal((3, 7, 5))
    if "complex" in dtype:
        M = M + 1j * rng.standard_normal((3, 7, 5))
    M = M.astype(dtype)
    P = ul.polar(M)
    assert P.dtype == M.dtype and P.shape == M.shape
    assert_unitary(P)
    # M = P H with H Hermitian positive semi-definite
    H = np.swapaxes(P, -1, -2).conj().astype(np.complex128) @ M
    assert_close(H, np.swapaxes(H, -1, -2).conj(), compare_tol(7, dtype, 100))
    assert np.all(np.linalg.eigvalsh(H) > -compare_tol(7, dtype, 100))
    assert_close(P @ H, M, compare_tol(7, dtype, 100))


def test_unitarity_error_is_spectral_norm(dtype):
    rng = np.random.default_rng(1)
    U = ul.random_unitary(6, dtype=dtype, batch_shape=(4,), rng=rng)
    E = (1e-3 * rng.standard_normal((4, 6, 6))).astype(dtype)
    X = U + E
    Xd = X.astype(np.complex128)
    G = np.swapaxes(Xd, -1, -2).conj() @ Xd - np.eye(6)
    expected = np.linalg.norm(G, ord=2, axis=(-2, -1))
    err = ul.unitarity_error(X)
    assert err.shape == (4,)
    assert err.dtype == np.dtype("float32" if dtype in ("float32", "complex64") else "float64")
    # unitarity_error computes in double precision (rounding ~ n·eps₆₄, absolute) and
    # casts to the dtype's precision (relative eps/2); `expected` is in double
    np.testing.assert_allclose(err, expected, rtol=2 * eps_of(dtype),
                               atol=compare_tol(6, "float64"))


def test_unitarity_error_of_stiefel_and_exact_zero():
    assert float(ul.unitarity_error(np.eye(5)[:, :3])) == 0.0
    assert ul.unitarity_error(np.eye(3)[None]).shape == (1,)


@pytest.mark.parametrize("p", [None, 1, 4])
def test_random_unitary_shapes_and_unitarity(dtype, p):
    U = ul.random_unitary(7, p, dtype=dtype, batch_shape=(2, 3), rng=5)
    assert U.shape == (2, 3, 7, 7 if p is None else p)
    assert U.dtype == np.dtype(dtype)
    # drawn and orthonormalised (Householder QR) in double precision, rounded once to dtype
    err = float(np.max(ul.unitarity_error(U)))
    assert err <= rounded_unitarity_bound(7, dtype), err


def test_random_unitary_seed_reproducible():
    a = ul.random_unitary(4, dtype="complex64", rng=3)
    b = ul.random_unitary(4, dtype="complex64", rng=np.random.default_rng(3))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, ul.random_unitary(4, dtype="complex64", rng=4))


def test_random_unitary_is_haar(dtype):
    """Over 4 000 samples of size 6: E|tr U|² = 1 (within 15 %) and E tr U = 0.

    For Haar measure on U(n) or O(n), n >= 2, E|tr U|² = 1 and E tr U = 0; a sampler
    without the phase correction of diag(R) has E tr U ≠ 0 (its diagonal is biased).
    The mean of tr U has standard deviation 1/√4000 ≈ 0.016, so |mean| < 0.08 is a
    5-sigma bound.
    """
    U = ul.random_unitary(6, dtype=dtype, batch_shape=(4000,), rng=123)
    tr = np.trace(U, axis1=-2, axis2=-1).astype(np.complex128)
    assert abs(np.mean(np.abs(tr) ** 2) - 1.0) < 0.15
    assert abs(np.mean(tr)) < 0.08


def test_unfixed_qr_sampler_would_fail_the_haar_test():
    """The Haar test above can fail: plain QR without the phase fix is caught."""
    rng = np.random.default_rng(123)
    Z = rng.standard_normal((4000, 6, 6))
    Q, _ = np.linalg.qr(Z)
    tr = np.trace(Q, axis1=-2, axis2=-1)
    assert abs(np.mean(np.abs(tr) ** 2) - 1.0) > 0.15 or abs(np.mean(tr)) > 0.08


def test_import_loads_no_optional_library():
    code = (
        "import sys, unitary_lowrank, unitary_lowrank.testing;"
        "bad = [m for m in ('scipy', 'torch', 'cupy', 'jax', 'numba', 'hypothesis', "
        "'array_api_strict', 'matplotlib') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import unitary_lowrank loaded {out.stdout.strip()}"


def test_public_api():
    expected = {"polar", "project", "random_unitary", "retract", "transport", "unitarity_error"}
    assert expected <= set(ul.__all__)
    for name in ul.__all__:
        obj = getattr(ul, name)
        doc = obj.__doc__ or ""
        if callable(obj) and not isinstance(obj, type):
            for section in ("Parameters", "Returns", "Examples"):
                assert section in doc, f"{name} docstring lacks {section}"
