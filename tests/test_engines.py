"""The two-pass NumPy engines: parity, the written interface, the choice.

The engines (Numba kernels, cache-blocked BLAS) agree with the array-agnostic
body to a few eps; engine switch errors; the engine modules implement the
written interface (``_engines.Engine``) and ``_engines.select`` picks them as
documented.
"""

from __future__ import annotations

import importlib
import inspect
import math
import subprocess
import sys

import numpy as np
import pytest

import unitary_lowrank as ul
from unitary_lowrank import _engines
from unitary_lowrank._engines import _shared
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
    pytest.param("numba", marks=pytest.mark.skipif(_engines.load_numba() is None,
                                                      reason="numba is not installed")),
]


def parity_tol(dtype) -> float:
    """Tolerance of engine parity: 20·eps per entry.

    docs/theory.md documents that the two-pass engines "agree with the portable
    path to a few eps" (both are backward stable).
    """
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
    """At n = 1030, past the size from which the kernels run threaded (and BLAS blocks)."""
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


@pytest.mark.skipif(_engines.load_numba() is None, reason="numba is not installed")
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


# ---------------------------------------------------------------------------------------
# The written interface (_engines.Engine) and the choice of engine (_engines.select).

ENGINE_MODULES = [
    "blocked",
    pytest.param("numba", marks=pytest.mark.skipif(_engines.load_numba() is None,
                                                      reason="numba is not installed")),
]
INTERFACE = ("adjoint_products", "basis_from_products", "write_update")


def _documented_signature(name: str) -> inspect.Signature:
    """The signature of `name` in the Engine protocol, without `self` and annotations."""
    sig = inspect.signature(getattr(_engines.Engine, name))
    params = list(sig.parameters.values())[1:]
    return inspect.Signature([p.replace(annotation=inspect.Parameter.empty) for p in params])


def _bare_signature(func) -> inspect.Signature:
    sig = inspect.signature(func)
    return inspect.Signature([p.replace(annotation=inspect.Parameter.empty)
                              for p in sig.parameters.values()])


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_engine_modules_implement_the_interface(module):
    engine = importlib.import_module(f"unitary_lowrank._engines.{module}")
    assert set(INTERFACE) <= set(engine.__all__)
    for name in INTERFACE:
        assert callable(getattr(engine, name)), name
        assert _bare_signature(getattr(engine, name)) == _documented_signature(name), name
    # the engine-independent step is one function, shared by both engines
    assert engine.basis_from_products is _shared.basis_from_products


def test_the_interface_is_documented():
    for name in INTERFACE:
        doc = getattr(_engines.Engine, name).__doc__
        assert doc and "*batch" in doc, name
    assert "one call" in _engines.Engine.write_update.__doc__


@pytest.mark.parametrize("has_numba", [True, False])
def test_select_picks_as_documented(monkeypatch, has_numba):
    numba_engine = object()  # stands for the Numba engine, installed or not
    monkeypatch.setattr(_engines, "load_numba", lambda: numba_engine if has_numba else None)
    select = _engines.select
    blocked = _engines.blocked
    big = 512  # 512 × 512 = AUTO_MIN_ENTRIES
    assert big * big == _engines.AUTO_MIN_ENTRIES
    fast = numba_engine if has_numba else blocked

    assert select("array_api", np, (big, big), 1) is None
    assert select("blas", np, (3, 3), 5) is blocked
    assert select("blas", np, (4, 3), 1) is None  # rectangular: the agnostic body
    # auto: square NumPy inputs with at least AUTO_MIN_ENTRIES entries in all
    assert select("auto", np, (big - 1, big - 1), 1) is None
    assert select("auto", np, (big, big), 1) is fast
    assert select("auto", np, (big, big), 2) is fast
    assert select("auto", np, (big, big), 3) is blocked  # numba only for k <= 2
    assert select("auto", np, (2 * big, big), 1) is None
    # a batch of small matrices: numba loops over it in compiled code, BLAS blocks would not pay
    assert select("auto", np, (64, 64, 64), 1) is (numba_engine if has_numba else None)
    assert select("auto", np, (64, 64, 64), 3) is None
    assert select("auto", np, (63, 64, 64), 1) is None
    if has_numba:
        assert select("numba", np, (3, 3), 7) is numba_engine
        assert select("numba", np, (4, 3), 1) is None
    else:
        with pytest.raises(ImportError, match="engine='numba' needs numba"):
            select("numba", np, (3, 3), 1)
    with pytest.raises(ValueError, match="engine must be 'auto', 'numba', 'blas' or 'array_api'"):
        select("fast", np, (3, 3), 1)


def test_select_needs_numpy_for_an_explicit_engine():
    xps = pytest.importorskip("array_api_strict")
    assert _engines.select("auto", xps, (1024, 1024), 1) is None
    assert _engines.select("array_api", xps, (1024, 1024), 1) is None
    for engine in ("numba", "blas"):
        with pytest.raises(ValueError, match=f"engine='{engine}' needs NumPy arrays"):
            _engines.select(engine, xps, (8, 8), 1)
