"""Drift control: the probe estimate of ‖UᴴU − I‖₂, reunitarize and DriftGuard.

References are dense NumPy computations in double precision: the singular
values of U give ``‖UᴴU − I‖₂ = max |σᵢ² − 1|``, and its polar factor ``W Vᴴ`` is
:func:`unitary_lowrank.testing.reference.reference_polar`.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import unitary_lowrank as ul
from unitary_lowrank.testing import (
    assert_close,
    assert_same_kind,
    compare_tol,
    eps_of,
    rounded_unitarity_bound,
    to_numpy,
    unitarity_bound,
)
from unitary_lowrank.testing.reference import reference_polar
from unitary_lowrank.testing.strategies import dtypes, seeds

# ---------------------------------------------------------------- references


def _wide(dtype: str) -> str:
    return "complex128" if dtype.startswith("complex") else "float64"


def ref_error(U: np.ndarray) -> np.ndarray:
    """‖UᴴU − I‖₂ from the singular values of U (double precision)."""
    U = np.asarray(U)
    s = np.linalg.svd(U.astype(_wide(U.dtype.name)), compute_uv=False)
    return np.max(np.abs(s**2 - 1.0), axis=-1)


def assert_repaired(X) -> None:
    """Assert X (any backend) is as unitary as a double-precision result rounded to its dtype.

    ``reunitarize`` computes in double precision and is documented as "unitary to
    the rounding of its own dtype" (``rounded_unitarity_bound``: eps·√n for the
    rounding, plus the 30·n·eps₆₄ of a backward-stable double-precision result).
    """
    err = float(np.max(to_numpy(ul.unitarity_error(X)), initial=0.0))
    dtype = to_numpy(X).dtype.name
    bound = rounded_unitarity_bound(X.shape[-2], dtype)
    assert err <= bound, f"unitarity error {err:.3e} > {bound:.3e} (n={X.shape[-2]}, {dtype})"


def drifted(n, p, dtype, level, rng, *, batch=(), kind="wigner"):
    """A Haar matrix (n×p) moved off the group: its error is about `level`."""
    wide = _wide(dtype)
    W = ul.random_unitary(n, p, dtype=wide, batch_shape=batch, rng=rng)
    shape = (*batch, p, p)
    H = rng.standard_normal(shape)
    if wide == "complex128":
        H = (H + 1j * rng.standard_normal(shape)) / np.sqrt(2)
    H = (H + np.swapaxes(H, -1, -2).conj()) / (2 * np.sqrt(2 * max(p, 1)))  # edge ≈ 1
    if kind == "spike":
        v = rng.standard_normal((*batch, p, 1))
        v /= np.linalg.norm(v, axis=-2, keepdims=True)
        H = H + rng.uniform(0.5, 5.0) * rng.choice([-1.0, 1.0]) * (v @ np.swapaxes(v, -1, -2))
    elif kind == "additive":
        N = rng.standard_normal((*batch, n, p)) / np.sqrt(max(n, 1))
        return (W + 0.5 * level * N).astype(dtype)
    elif kind == "diagonal":
        H = np.zeros(shape) + np.eye(p) * rng.uniform(-1, 1, (*batch, 1, p))
    X = W @ (np.eye(p) + 0.5 * level * H)
    return X.astype(dtype)


# ---------------------------------------------------------------- unitarity_error


def test_exact_error_matches_singular_values(dtype):
    rng = np.random.default_rng(0)
    U = drifted(9, 6, dtype, 1e-3, rng, batch=(2, 3))
    err = ul.unitarity_error(U)
    real = "float32" if dtype in ("float32", "complex64") else "float64"
    assert err.shape == (2, 3) and err.dtype == np.dtype(real)
    # both are computed in double precision (absolute rounding ~ n·eps64), then cast
    np.testing.assert_allclose(err, ref_error(U), rtol=2 * eps_of(dtype),
                               atol=compare_tol(9, "float64"))


def test_probe_is_a_lower_bound_within_factor_two(backend, dtype):
    rng = np.random.default_rng(1)
    U = drifted(40, 40, dtype, 1e-3, rng, batch=(3,))
    Ux = backend.asarray(U)
    est = ul.unitarity_error(Ux, method="probe", rng=2)
    assert_same_kind(est, ul.unitarity_error(Ux))
    est = to_numpy(est).astype(np.float64)
    ref = ref_error(U)
    assert np.all(est <= ref * (1 + 2 * eps_of(dtype)) + compare_tol(40, "float64")), (est, ref)
    assert np.all(est >= ref / 2), (est, ref)


def test_probe_seed_gives_the_same_estimate_on_every_backend(backend, dtype):
    rng = np.random.default_rng(2)
    U = drifted(30, 20, dtype, 1e-2, rng)
    here = to_numpy(ul.unitarity_error(backend.asarray(U), method="probe", rng=7))
    host = ul.unitarity_error(U, method="probe", rng=7)
    # same probes, same Krylov space (QR signs may differ between libraries): equal up
    # to the rounding of double-precision products and of the final cast
    tol = compare_tol(30, "float64") + 2 * eps_of(dtype) * float(host)
    assert abs(float(here) - float(host)) <= tol


def test_probe_is_exact_when_the_probes_span_everything(dtype):
    rng = np.random.default_rng(3)
    U = drifted(12, 5, dtype, 1e-2, rng, batch=(4,))
    est = ul.unitarity_error(U, method="probe", probes=5, depth=1, rng=0)
    tols = {"rtol": 2 * eps_of(dtype), "atol": compare_tol(12, "float64")}
    np.testing.assert_allclose(est, ref_error(U), **tols)
    est = ul.unitarity_error(U, method="probe", probes=2, depth=3, rng=0)  # 2+2+1 columns
    np.testing.assert_allclose(est, ref_error(U), **tols)


def test_probe_of_a_rank_one_error_is_exact():
    # E = UᴴU − I has rank one: the Krylov space is invariant after one block, and
    # the re-orthogonalised junk blocks must not dilute the estimate.
    U = np.eye(50)
    U[7, 7] = 1.1
    est = float(ul.unitarity_error(U, method="probe", rng=0))
    assert est == pytest.approx(0.21, rel=compare_tol(50, "float64"))
    assert float(ul.unitarity_error(np.eye(50), method="probe", rng=0)) == 0.0


def test_probe_accuracy_statistics_1000_drifted_matrices():
    """Within a factor 2 for >= 99 % of 1 000 drifted matrices (docs/reliability.md §3)."""
    rng = np.random.default_rng(20240606)
    kinds = ("wigner", "spike", "additive", "diagonal")
    ratios = []
    ratios_one_probe = []
    for i in range(1000):
        n = int(np.exp(rng.uniform(np.log(2), np.log(160))))
        p = n if rng.uniform() < 0.75 else int(rng.integers(1, n + 1))
        dtype = str(rng.choice(["float32", "float64", "complex64", "complex128"]))
        # errors from 10 eps of the dtype (float32 drift lives at 1e-6..1e-5) to 0.3,
        # and far above the rounding of the double-precision check itself
        low = max(10 * eps_of(dtype), 1e3 * n * eps_of("float64"))
        level = 10 ** rng.uniform(np.log10(low), np.log10(0.3))
        U = drifted(n, p, dtype, level, rng, kind=kinds[i % len(kinds)])
        exact = float(ul.unitarity_error(U))
        est = float(ul.unitarity_error(U, method="probe", rng=rng))
        # a lower bound, up to the rounding of double-precision Gram products and of
        # the cast of both figures to the dtype's precision (relative eps/2 each)
        assert est <= exact * (1 + 2 * eps_of(dtype)) + unitarity_bound(n, "float64"), (
            i, n, dtype, est, exact)
        ratios.append(est / exact)
        if i < 200:
            one = float(ul.unitarity_error(U, method="probe", probes=1, depth=1, rng=rng))
            ratios_one_probe.append(one / exact)
    ratios = np.array(ratios)
    assert np.mean(ratios >= 0.5) >= 0.99, np.quantile(ratios, [0, 0.01, 0.5])
    # the test has teeth: a single probe without Krylov iterations (‖E x‖/‖x‖ ≈ rms
    # eigenvalue) does not pass it
    assert np.mean(np.array(ratios_one_probe) >= 0.5) < 0.99


def test_error_of_non_finite_and_extreme_matrices():
    U = np.eye(4)
    for bad in (np.nan, np.inf, -np.inf):
        V = U.copy()
        V[1, 2] = bad
        for method in ("exact", "probe"):
            assert float(ul.unitarity_error(V, method=method, rng=0)) == np.inf
    B = np.stack([np.eye(3), np.eye(3) * np.nan])
    np.testing.assert_array_equal(ul.unitarity_error(B), [0.0, np.inf])
    for method in ("exact", "probe"):
        big = float(ul.unitarity_error(1e150 * np.eye(3), method=method, rng=0))
        # relative: the double-precision Gram products of the scaled matrix round like
        # any other (the dense-oracle tolerance of unitary_lowrank.testing)
        assert big == pytest.approx(1e300, rel=compare_tol(3, "float64"))
        assert float(ul.unitarity_error(1e200 * np.eye(3), method=method, rng=0)) == np.inf
        tiny = float(ul.unitarity_error(1e-300 * np.eye(3), method=method, rng=0))
        assert tiny == 1.0
        assert float(ul.unitarity_error(np.zeros((5, 3)), method=method, rng=0)) == 1.0
        assert float(ul.unitarity_error(np.zeros((0, 3)), method=method, rng=0)) == 1.0
        assert ul.unitarity_error(np.zeros((2, 0, 4, 4)), method=method).shape == (2, 0)
        assert float(ul.unitarity_error(np.zeros((4, 0)), method=method)) == 0.0
    # float32 errors beyond its range overflow to inf, as the cast must
    assert float(ul.unitarity_error(np.float32(1e30) * np.eye(2, dtype=np.float32))) == np.inf


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"method": "fast"}, ValueError, "method must be 'exact' or 'probe'"),
        ({"method": "probe", "probes": 0}, ValueError, "probes must be at least 1, got 0"),
        ({"method": "probe", "depth": -1}, ValueError, "depth must be at least 1, got -1"),
        ({"method": "probe", "probes": 2.5}, TypeError, "probes must be an integer, got float"),
        ({"method": "probe", "rng": "seed"}, TypeError, "rng must be None, an int seed"),
    ],
)
def test_unitarity_error_bad_arguments(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        ul.unitarity_error(np.eye(3), **kwargs)


# ---------------------------------------------------------------- reunitarize


@pytest.mark.parametrize("method", ["auto", "newton-schulz", "polar"])
@pytest.mark.parametrize(("n", "p"), [(16, 16), (16, 5)])
def test_reunitarize_is_the_polar_factor(backend, dtype, method, n, p):
    rng = np.random.default_rng(4)
    U = drifted(n, p, dtype, 1e-3, rng, batch=(2,))
    Ux = backend.asarray(U)
    X = ul.reunitarize(Ux, method=method)
    assert_same_kind(X, Ux)
    assert_repaired(X)  # double precision, then the rounding of one cast
    # the polar factor of U is Lipschitz with constant ~1/σ_min ≈ 1 here: the
    # documented dense-oracle tolerance 100·n·eps (compare_tol)
    assert_close(X, reference_polar(U), compare_tol(n, dtype))
    assert_close(Ux, U, 0.0, what="input U (must not be modified)")


def test_reunitarize_repairs_drift_to_the_precision_of_each_dtype(dtype):
    rng = np.random.default_rng(5)
    for level in (1e-5, 1e-3, 0.3):
        U = drifted(24, 24, dtype, level, rng)
        # reunitarize is "unitary to the rounding of its own dtype" (its docstring):
        # eps·√n for rounding an orthonormal matrix, plus the 30·n·eps₆₄ of the
        # backward-stable double-precision computation (LAPACK's SVD on the polar
        # path gives ~11 eps₆₄ at n = 24, more than the rounding term alone)
        bound = rounded_unitarity_bound(24, dtype)
        assert ref_error(U) > bound  # the test has teeth: U starts outside the bound
        X = ul.reunitarize(U)
        assert float(ref_error(X)) <= bound, (level, ref_error(X), bound)


def test_newton_schulz_step_count_follows_the_quadratic_bound():
    rng = np.random.default_rng(6)
    U = drifted(32, 32, "float32", 1e-5, rng)
    # from 1e-5 one step reaches 7.5e-11 < eps(float32): auto takes exactly one step
    one = ul.reunitarize(U, method="newton-schulz", iterations=1)
    np.testing.assert_array_equal(ul.reunitarize(U), one)
    U = drifted(32, 32, "float64", 0.2, rng)
    X1 = ul.reunitarize(U, method="newton-schulz", iterations=1)
    X = ul.reunitarize(U, method="newton-schulz")
    e0, e1, e = ref_error(U), ref_error(X1), ref_error(X)
    # the bound that sets the number of steps (exact arithmetic), plus the rounding of one
    # backward-stable double-precision step (30·n·eps₆₄)
    assert e1 <= e0**2 * (3 + e0) / 4 + unitarity_bound(32, "float64")
    assert e <= rounded_unitarity_bound(32, "float64")


def test_reunitarize_far_from_the_group():
    rng = np.random.default_rng(7)
    U = rng.standard_normal((10, 10))  # ‖UᴴU − I‖ ≫ 1: Newton–Schulz would diverge
    with pytest.raises(ValueError, match="too far from orthonormal columns for Newton-Schulz"):
        ul.reunitarize(U, method="newton-schulz")
    for method in ("auto", "polar"):
        X = ul.reunitarize(U, method=method)
        assert_repaired(X)
        # the polar factor moves by cond(U)·(relative rounding of U)
        assert_close(X, reference_polar(U), compare_tol(10, "float64", condition=np.linalg.cond(U)))
    # singular and zero matrices: one (non-unique) polar factor, still unitary
    assert_repaired(ul.reunitarize(np.zeros((4, 4))))
    assert_repaired(ul.reunitarize(np.diag([1.0, 1.0, 0.0])))
    # huge and tiny scales
    W = ul.random_unitary(6, dtype="float64", rng=0)
    assert_close(ul.reunitarize(1e200 * W), W, compare_tol(6, "float64"))
    assert_close(ul.reunitarize(1e-300 * W), W, compare_tol(6, "float64"))


def test_reunitarize_out_and_empty_shapes():
    rng = np.random.default_rng(8)
    U = drifted(8, 8, "complex64", 1e-4, rng, batch=(3,))
    expected = ul.reunitarize(U)
    res = ul.reunitarize(U, out=U)
    assert res is U
    np.testing.assert_array_equal(U, expected)
    for shape in [(0, 4, 4), (3, 0, 0), (5, 0), (0, 0)]:
        Z = np.zeros(shape)
        X = ul.reunitarize(Z)
        assert X.shape == Z.shape and X is not Z


@pytest.mark.parametrize(
    ("call", "exc", "pattern"),
    [
        (lambda: ul.reunitarize(np.ones((2, 3))), ValueError, r"p <= n .* got \(2, 3\)"),
        (lambda: ul.reunitarize(np.ones(3)), ValueError, "at least 2 dimensions"),
        (lambda: ul.reunitarize(np.eye(3, dtype=int)), TypeError, "must have dtype"),
        (lambda: ul.reunitarize(np.eye(3), method="qr"), ValueError, "method must be 'auto'"),
        (lambda: ul.reunitarize(np.eye(3), method="polar", iterations=2), ValueError,
         "iterations applies to Newton-Schulz only"),
        (lambda: ul.reunitarize(np.eye(3), iterations=0), ValueError,
         "iterations must be at least 1, got 0"),
        (lambda: ul.reunitarize(np.eye(3), iterations=1.0), TypeError,
         "iterations must be an integer, got float"),
        (lambda: ul.reunitarize(np.diag([1.0, np.nan])), ValueError, "U .* NaN or infinity"),
        (lambda: ul.reunitarize(np.eye(3), out=np.eye(2)), ValueError,
         r"out must have shape \(3, 3\)"),
        (lambda: ul.reunitarize([[1.0]]), TypeError, "U must be an array"),
    ],
)
def test_reunitarize_bad_arguments(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


@settings(max_examples=30)
@given(n=st.integers(1, 20), dtype=dtypes(), seed=seeds(),
       log_level=st.floats(-7.0, np.log10(0.4)), square=st.booleans(),
       kind=st.sampled_from(["wigner", "spike", "additive", "diagonal"]))
def test_reunitarize_property(n, dtype, seed, log_level, square, kind):
    rng = np.random.default_rng(seed)
    p = n if square else max(1, n // 2)
    U = drifted(n, p, dtype, 10**log_level, rng, kind=kind)
    smin = float(np.min(np.linalg.svd(U.astype(_wide(dtype)), compute_uv=False)))
    cond = 1.0 / smin if smin > 0 else np.inf  # singular U: the polar factor is not unique
    X = ul.reunitarize(U)
    assert X.dtype == U.dtype
    assert_repaired(X)
    assert_close(X, reference_polar(U), compare_tol(n, dtype, condition=cond))


# ---------------------------------------------------------------- DriftGuard


def test_guard_counts_checks_and_repairs_only_when_needed(backend):
    rng = np.random.default_rng(9)
    U = backend.asarray(drifted(20, 20, "float32", 1e-4, rng))
    guard = ul.DriftGuard(every=3, tol=1e-3, rng=0)  # tolerance above the error
    for _ in range(7):
        assert guard(U) is U
    assert (guard.steps, guard.checks, guard.repairs) == (7, 2, 0)
    assert 0 < guard.last_estimate <= 1e-3
    strict = ul.DriftGuard(every=1, rng=0)  # default 32 eps = 3.8e-6 < 1e-4
    X = strict(U)
    assert_same_kind(X, U)
    assert strict.repairs == 1
    assert_repaired(X)
    assert strict(X) is X  # repaired: no second repair
    assert strict.stats == {"steps": 2, "checks": 2, "repairs": 1,
                            "last_estimate": strict.last_estimate,
                            "max_estimate": strict.max_estimate}


def test_guard_out_and_default_tolerances():
    guard = ul.DriftGuard(every=1, rng=0)
    assert guard.tolerance(np.eye(2, dtype=np.float32)) == 32 * eps_of("float32")
    assert guard.tolerance(np.eye(2, dtype=np.complex128)) == 32 * eps_of("float64")
    rng = np.random.default_rng(10)
    U = drifted(8, 8, "float64", 1e-3, rng)
    V = U.copy()
    assert guard(U, out=U) is U
    np.testing.assert_array_equal(U, ul.reunitarize(V))
    buf = np.empty_like(U)
    assert guard(U, out=buf) is buf  # no repair needed: U is copied into out
    np.testing.assert_array_equal(buf, U)
    with pytest.raises(ValueError, match=r"out must have shape \(8, 8\)"):
        guard(U, out=np.empty((8, 7)))


def test_guard_fails_loudly_on_non_finite_weights():
    guard = ul.DriftGuard(every=1, rng=0)
    U = np.eye(4)
    U[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        guard(U)
    assert guard.max_estimate == np.inf


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"every": 0}, ValueError, "every must be at least 1"),
        ({"every": 2.0}, TypeError, "every must be an integer"),
        ({"tol": -1.0}, ValueError, "tol must be a positive number"),
        ({"tol": float("nan")}, ValueError, "tol must be a positive number"),
        ({"probes": 0}, ValueError, "probes must be at least 1"),
        ({"method": "svd"}, ValueError, "method must be 'auto'"),
        ({"rng": 1.5}, TypeError, "rng must be None"),
    ],
)
def test_guard_bad_arguments(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        ul.DriftGuard(**kwargs)


@pytest.mark.parametrize("update", [ul.transport, ul.project])
def test_guard_keeps_a_float32_training_run_below_tolerance(update):
    """A short version of the benchmark.

    The error at every check point stays below 2·tol plus the drift of one
    interval, and without the guard it does not.
    """
    n, every, steps = 16, 20, 2000
    rng = np.random.default_rng(11)
    U = ul.random_unitary(n, dtype="float32", rng=rng)
    plain = U.copy()
    guard = ul.DriftGuard(every=every, tol=4 * eps_of("float32"), rng=0)
    tol = guard.tolerance(U)
    worst = worst_plain = 0.0
    for i in range(steps):
        a = rng.standard_normal((n, 1)) * 10 ** rng.uniform(-4, np.log10(0.5))
        b = rng.standard_normal((n, 1)) / np.sqrt(n)
        a, b = a.astype(np.float32), b.astype(np.float32)
        if i % every == 0:  # just before the guard's check: the peak it allows
            worst = max(worst, float(ul.unitarity_error(U)))
        U = update(guard(U), a, b)
        plain = update(plain, a, b)
        worst_plain = max(worst_plain, float(ul.unitarity_error(plain)) if i % 500 == 0 else 0)
    worst_plain = max(worst_plain, float(ul.unitarity_error(plain)))
    assert guard.checks == steps // every and 0 < guard.repairs < guard.checks
    # estimate >= exact/2 at a check that does not repair (docs/reliability.md §3), plus
    # one interval of rounding drift: a random walk, 0.6·eps·√steps in §1 of the same
    # document (4·eps·√every here); a repaired U starts below rounded_unitarity_bound < 2·tol
    assert worst <= 2 * tol + 4 * np.sqrt(every) * eps_of("float32"), worst
    assert worst_plain > worst  # without the guard the drift goes further


def test_drift_functions_accept_a_torch_weight_that_requires_grad():
    torch = pytest.importorskip("torch")
    U = torch.asarray(drifted(8, 8, "float64", 1e-3, np.random.default_rng(12)))
    U.requires_grad_()
    # no "converting a tensor that requires grad to a scalar" warning (errors here)
    err = ul.unitarity_error(U, method="probe", rng=0)
    X = ul.reunitarize(U)
    assert_repaired(X.detach())
    X = ul.DriftGuard(every=1, rng=0)(U)
    assert_repaired(X.detach())
    assert float(err.detach()) > 0
