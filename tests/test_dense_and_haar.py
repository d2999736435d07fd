"""Dense routines and the Haar sampler, checked against NumPy and SciPy.

polar, unitarity_error and random_unitary against NumPy, Haar statistics, and
the dense reference of the updates (:mod:`unitary_lowrank.testing.reference`)
against SciPy.
"""

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
    lowrank_factors,
    rounded_unitarity_bound,
)
from unitary_lowrank.testing.reference import (
    reference_polar,
    reference_retract,
    reference_step,
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


# ---------------------------------------------------------------- the dense reference itself


def _reference_cases(dtype):
    """(U, A, B) with U square, Stiefel (p < n) and batched, steps of norm 0.5."""
    rng = np.random.default_rng(3)
    cases = []
    for n, p, k, batch in [(6, 6, 2, ()), (9, 4, 3, ()), (5, 5, 1, (3,)), (1, 1, 1, ())]:
        U = ul.random_unitary(n, p, dtype=dtype, batch_shape=batch, rng=rng)
        size = int(np.prod(batch))
        AB = [lowrank_factors(n, p, k, dtype, rng, norm=0.5) for _ in range(size)]
        A = np.stack([a for a, _ in AB]).reshape(*batch, n, k)
        B = np.stack([b for _, b in AB]).reshape(*batch, p, k)
        cases.append((U, A, B))
    return cases


def _double(x):
    return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)


def test_reference_polar_matches_scipy_polar(dtype):
    """The reference's polar factor against scipy.linalg.polar.

    reference_retract(..., "polar"), reference_step(..., "polar") and
    reference_polar, matrix by matrix, in double precision.
    """
    scipy_linalg = pytest.importorskip("scipy.linalg")
    for U, A, B in _reference_cases(dtype):
        M = _double(U) + _double(A) @ np.swapaxes(_double(B), -1, -2).conj()
        flat = M.reshape(-1, *M.shape[-2:])
        expect = np.stack([scipy_linalg.polar(m)[0] for m in flat]).reshape(M.shape)
        smin = float(np.min(np.linalg.svd(M, compute_uv=False)[..., -1]))
        tol = compare_tol(M.shape[-2], "float64", condition=1.0 / smin)
        got = reference_retract(U, A, B, "polar")
        assert got.dtype == M.dtype and got.shape == M.shape
        assert_close(got, expect, tol, what="reference_retract polar vs scipy.linalg.polar")
        assert_close(reference_polar(M), expect, tol, what="reference_polar vs scipy")
        assert_close(reference_step(U, M - _double(U), "polar"), expect, tol,
                     what="reference_step polar vs scipy")


def test_reference_tangent_updates_closed_form():
    """The reference's exp and Cayley updates of a plane rotation.

    U = I, Ω = [[0, −θ], [θ, 0]] gives the rotation by θ, and by 2·atan(θ/2)
    for Cayley; the step D = Ω has skew(Uᴴ D) = Ω.
    """
    for theta in (1e-3, 0.4, 2.5):
        Om = np.array([[0.0, -theta], [theta, 0.0]])

        def rotation(t):
            return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])

        tol = compare_tol(2, "float64")
        assert_close(reference_step(np.eye(2), Om, "exp"), rotation(theta), tol)
        assert_close(reference_step(np.eye(2), Om, "cayley"), rotation(2 * np.arctan(theta / 2)),
                     tol)
        # the symmetric part of Uᴴ D plays no part in exp and Cayley
        sym = np.array([[0.3, 0.1], [0.1, -0.2]])
        assert_close(reference_step(np.eye(2), Om + sym, "exp"), rotation(theta), tol)


def test_reference_precision_and_errors():
    U = ul.random_unitary(4, dtype="complex64", rng=0)
    A, B = lowrank_factors(4, 4, 1, "complex64", 1)
    for method in ("polar", "exp", "cayley"):
        assert reference_retract(U, A, B, method).dtype == np.complex128
        single = reference_retract(U, A, B, method, double=False)
        assert single.dtype == np.complex64
        # the same matrix, in single precision: a backward-stable dense update
        assert_close(single, reference_retract(U, A, B, method), compare_tol(4, "complex64"))
    with pytest.raises(ValueError, match="method must be"):
        reference_retract(U, A, B, "svd")
    with pytest.raises(ValueError, match="needs a square U"):
        reference_retract(U[:, :2], A, B[:2], "exp")
