"""The two-pass NumPy engines (Numba kernels, cache-blocked BLAS) agree with the
array-agnostic body to a few eps; engine switch errors."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import unitary_lowrank as ul
from unitary_lowrank import _numba
from unitary_lowrank.testing import (
    assert_close,
    assert_unitary,
    compare_tol,
    lowrank_factors,
    unitarity_bound,
)

METHODS = ("polar", "exp", "cayley")
ENGINES = [
    "blas",
    pytest.param("numba", marks=pytest.mark.skipif(_numba.load() is None,
                                                    reason="numba is not installed")),
]


def parity_tol(dtype) -> float:
    """Engine parity: docs/theory.md documents that the two-pass engines "agree with
    the portable path to a few eps" (both are backward stable); 20·eps per entry."""
    return compare_tol(1, dtype, 20)


def _case(n, k, dtype, batch=(), seed=0, kind="generic"):
    rng = np.random.default_rng(seed)
    U = ul.random_unitary(n, dtype=dtype, batch_shape=batch, rng=rng)
    A, B = lowrank_factors(n, n, k, dtype, rng, norm=0.3)
    if kind == "normal":  # [B, UᴴA] rank deficient: the kernels must fall back to U @ Q
        A = (U.astype(np.complex128 if "complex" in dtype else np.float64) @ B).astype(dtype)
    return U, A, B


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("n", "k", "batch"), [(1, 1, ()), (3, 4, ()), (40, 2, ()), (65, 3, ()),
                                               (16, 1, (7,)), (24, 2, (20,))])
def test_engine_matches_array_api(engine, method, n, k, batch, dtype):
    U, A, B = _case(n, k, dtype, batch)
    X = ul.retract(U, A, B, method=method, engine=engine)
    Y = ul.retract(U, A, B, method=method, engine="array_api")
    assert X.dtype == Y.dtype and X.shape == Y.shape
    assert_close(X, Y, parity_tol(dtype))
    assert_unitary(X)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype_", ["float32", "complex128"])
def test_large_inputs_threaded_path(engine, dtype_):
    """n = 1030 crosses the size from which the kernels run threaded (and BLAS blocks)."""
    rng = np.random.default_rng(8)
    n = 1030
    # a Householder reflection times a diagonal of phases: exactly unitary and O(n²) to build
    # (a Haar sample of this size would cost a QR of n³)
    v = rng.standard_normal(n) + (1j * rng.standard_normal(n) if "complex" in dtype_ else 0)
    v /= np.linalg.norm(v)
    phases = np.exp(1j * rng.uniform(0, 2 * np.pi, n)) if "complex" in dtype_ else np.sign(
        rng.standard_normal(n))
    U = ((np.eye(n) - 2 * np.outer(v, v.conj())) * phases).astype(dtype_)
    A, B = lowrank_factors(n, n, 2, dtype_, rng, norm=0.3)
    X = ul.transport(U, A, B, engine=engine)
    assert_close(X, ul.transport(U, A, B, engine="array_api"), parity_tol(dtype_))
    W = U.copy()
    ul.project(W, A, B, engine=engine, out=W)
    assert_close(W, ul.project(U, A, B, engine="array_api"), parity_tol(dtype_))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["normal", "generic"])
def test_fallback_and_fast_left_basis(engine, kind, dtype):
    U, A, B = _case(50, 2, dtype, kind=kind)
    X = ul.transport(U, A, B, engine=engine)
    assert_close(X, ul.transport(U, A, B, engine="array_api"), parity_tol(dtype))
    assert_unitary(X)


@pytest.mark.parametrize("engine", ENGINES)
def test_in_place_and_broadcast(engine, dtype):
    U, A, B = _case(70, 2, dtype, seed=3)
    expected = ul.project(U, A, B, engine="array_api")
    W = U.copy()
    assert ul.project(W, A, B, engine=engine, out=W) is W
    assert_close(W, expected, parity_tol(dtype))
    # one U, a batch of steps
    A2 = np.stack([A, 2 * A])
    X = ul.transport(U, A2, B, engine=engine)
    assert_close(X, ul.transport(U, A2, B, engine="array_api"), parity_tol(dtype))


@pytest.mark.parametrize("engine", ENGINES)
def test_layouts(engine, dtype):
    """Fortran order, negative strides and views are read correctly."""
    U, A, B = _case(30, 2, dtype, seed=4)
    expected = ul.transport(U, A, B, engine="array_api")
    assert_close(ul.transport(np.asfortranarray(U), A[::-1][::-1], B, engine=engine), expected,
                 parity_tol(dtype))
    flipped = ul.transport(U[::-1], A[::-1], B, engine=engine)
    assert_close(flipped, ul.transport(U[::-1].copy(), A[::-1].copy(), B, engine="array_api"),
                 parity_tol(dtype))
    Uf = np.asfortranarray(U)
    assert ul.transport(Uf, A, B, engine=engine, out=Uf) is Uf
    assert_close(Uf, expected, parity_tol(dtype))


@pytest.mark.parametrize("engine", ENGINES)
def test_chained_drift(engine):
    """300 chained steps in float64 stay at rounding level (the fast left basis is used)."""
    rng = np.random.default_rng(1)
    U = ul.random_unitary(120, dtype="float64", rng=rng)
    for _ in range(300):
        A, B = lowrank_factors(120, 120, 1, "float64", rng, norm=0.05)
        ul.transport(U, A, B, engine=engine, out=U)
    # each step is unitary to 30·n·eps (unitarity_bound); the rounding errors of the
    # steps add up like a random walk (docs/theory.md, drift): √steps of them
    assert float(ul.unitarity_error(U)) <= unitarity_bound(120, "float64") * math.sqrt(300)


def test_engine_errors():
    U, A, B = _case(5, 1, "float64")
    with pytest.raises(ValueError, match="engine must be 'auto', 'numba', 'blas' or 'array_api', "
                                         "got 'c'"):
        ul.project(U, A, B, engine="c")
    torch = pytest.importorskip("torch")
    for engine in ("numba", "blas"):
        with pytest.raises(ValueError, match=f"engine='{engine}' needs NumPy arrays"):
            ul.project(torch.asarray(U), torch.asarray(A), torch.asarray(B), engine=engine)


@pytest.mark.skipif(_numba.load() is None, reason="numba is not installed")
def test_numba_disabled_by_environment():
    code = (
        "import numpy as np, unitary_lowrank as ul\n"
        "U = np.eye(3); A = np.ones((3, 1)); B = np.ones((3, 1))\n"
        "ul.project(U, A, B)\n"
        "try:\n"
        "    ul.project(U, A, B, engine='numba')\n"
        "except ImportError as e:\n"
        "    print('ImportError', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"UNITARY_LOWRANK_DISABLE_NUMBA": "1", "PATH": ""})
    assert "ImportError engine='numba' needs numba" in out.stdout
