"""The same calls on every array library: namespace, device and dtype kept, values equal.

array-api-strict on ``device1`` refuses any conversion to NumPy, so these tests
also prove that the library never moves data to the host behind the caller's back.
"""

from __future__ import annotations

import numpy as np
import pytest

import unitary_lowrank as ul
from unitary_lowrank.testing import (
    assert_close,
    assert_same_kind,
    assert_unitary,
    compare_tol,
    lowrank_factors,
)


class _Host:
    """A backend stand-in that leaves NumPy arrays alone."""

    def asarray(self, x):
        return x


# Values on another backend are compared with NumPy's result of the same call: both are
# documented within the dense-oracle tolerance 100·n·eps of compare_tol (NumPy's against
# the dense oracle in tests/test_updates.py), so the comparisons use that tolerance.


def _inputs(backend, dtype, n=9, p=9, k=2, batch=(), seed=0):
    rng = np.random.default_rng(seed)
    U = ul.random_unitary(n, p, dtype=dtype, batch_shape=batch, rng=rng)
    AB = [lowrank_factors(n, p, k, dtype, rng, norm=0.3) for _ in range(int(np.prod(batch)))]
    A = np.stack([a for a, _ in AB]).reshape(*batch, n, k)
    B = np.stack([b for _, b in AB]).reshape(*batch, p, k)
    return (U, A, B), tuple(backend.asarray(x) for x in (U, A, B))


@pytest.mark.parametrize("method", ["polar", "exp", "cayley"])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_retract_on_every_backend(core_backend, dtype, method, batch):
    (U, A, B), (Ux, Ax, Bx) = _inputs(core_backend, dtype, batch=batch)
    X = ul.retract(Ux, Ax, Bx, method=method)
    assert_same_kind(X, Ux)
    assert_close(X, ul.retract(U, A, B, method=method), compare_tol(9, dtype))
    assert_unitary(X)


def test_stiefel_project_on_every_backend(core_backend, dtype):
    (U, A, B), (Ux, Ax, Bx) = _inputs(core_backend, dtype, n=11, p=4, k=3)
    X = ul.project(Ux, Ax, Bx)
    assert_same_kind(X, Ux)
    assert_close(X, ul.project(U, A, B), compare_tol(11, dtype))


def test_transport_singular_and_zero_on_every_backend(core_backend, dtype):
    (U, A, B), (Ux, Ax, Bx) = _inputs(core_backend, dtype, k=1)
    Ux = core_backend.asarray(U)
    a = core_backend.asarray(-(U.astype(np.complex128 if "complex" in dtype else np.float64)
                         @ B).astype(dtype))
    for method in ("polar", "exp", "cayley"):
        assert_unitary(ul.retract(Ux, a, Bx, method=method))
    Z = ul.transport(Ux, Ax * 0, Bx)
    assert_same_kind(Z, Ux)
    assert_close(Z, U, compare_tol(9, dtype))


def test_out_on_every_backend(core_backend, dtype):
    if core_backend.name == "jax":
        pytest.skip("JAX arrays are immutable: out= is not available")
    (U, A, B), (Ux, Ax, Bx) = _inputs(core_backend, dtype)
    res = ul.project(Ux, Ax, Bx, out=Ux)
    assert res is Ux
    assert_close(Ux, ul.project(U, A, B), compare_tol(9, dtype))


def test_dense_helpers_on_every_backend(core_backend, dtype):
    (U, A, B), (Ux, Ax, Bx) = _inputs(core_backend, dtype, batch=(2,))
    M = Ux + Ax @ core_backend.xp.conj(core_backend.xp.matrix_transpose(Bx))
    P = ul.polar(M)
    assert_same_kind(P, Ux)
    err = ul.unitarity_error(P)
    assert tuple(err.shape) == (2,)
    real = {"complex64": "float32", "complex128": "float64"}.get(dtype, dtype)
    assert err.dtype == core_backend.dtype(real)
    assert_unitary(P)


def test_random_unitary_on_every_backend(core_backend, dtype):
    U = ul.random_unitary(5, 3, dtype=dtype, batch_shape=(2,), rng=4, xp=core_backend.xp,
                          device=core_backend.device)
    assert U.dtype == core_backend.dtype(dtype)
    assert tuple(U.shape) == (2, 5, 3)
    from array_api_compat import device

    assert device(U) == core_backend.device
    # the same seed gives the same matrices on every backend
    assert_close(U, ul.random_unitary(5, 3, dtype=dtype, batch_shape=(2,), rng=4), 0.0)


def test_mixed_libraries_raise_type_error(core_backend):
    if core_backend.name == "numpy":
        pytest.skip("needs a second library")
    (U, A, B), (Ux, Ax, Bx) = _inputs(core_backend, "float64")
    with pytest.raises(TypeError, match="one array library"):
        ul.project(Ux, A, Bx)


def test_value_checks_on_every_backend(core_backend):
    """NaN in a step, NaN in a gradient and a non-unitary U are refused on every backend.

    Concrete JAX arrays included: only tracers (under ``jax.jit``) skip the checks.
    """
    (U, A, B), (Ux, Ax, Bx) = _inputs(core_backend, "float64")
    A_nan = A.copy()
    A_nan[1, 0] = np.nan
    with pytest.raises(ValueError, match="A contains NaN"):
        ul.transport(Ux, core_backend.asarray(A_nan), Bx)
    with pytest.raises(ValueError, match="NaN or infinity"):
        ul.lowrank(core_backend.asarray(A_nan), 1, rng=0)
    with pytest.raises(ValueError, match="not unitary"):
        ul.project(core_backend.asarray(2.0 * U), Ax, Bx)


def test_mixed_devices_raise_value_error():
    xps = pytest.importorskip("array_api_strict")
    (U, A, B), _ = _inputs(_Host(), "float64")
    Ux = xps.asarray(U, device=xps.Device("device1"))
    Ax = xps.asarray(A)
    Bx = xps.asarray(B, device=xps.Device("device1"))
    with pytest.raises(ValueError, match="A is on device"):
        ul.transport(Ux, Ax, Bx)


def test_torch_conjugate_views():
    """Torch's lazily conjugated tensors must be read as their values."""
    torch = pytest.importorskip("torch")
    (U, A, B), _ = _inputs(_Host(), "complex128")
    Ut = torch.asarray(U.conj()).conj()  # a conj view of the conjugate
    X = ul.transport(Ut, torch.asarray(A), torch.asarray(B))
    assert_close(X, ul.transport(U, A, B), compare_tol(9, "complex128"))


@pytest.mark.parametrize("method", ["polar", "exp", "cayley"])
def test_jax_jit(method, jax_x64):
    """Under jax.jit the value checks are skipped and the agnostic bodies trace."""
    jax = jax_x64
    jnp = jax.numpy
    (U, A, B), _ = _inputs(_Host(), "complex128")
    f = jax.jit(lambda U, A, B: ul.retract(U, A, B, method=method))
    X = f(jnp.asarray(U), jnp.asarray(A), jnp.asarray(B))
    assert_close(X, ul.retract(U, A, B, method=method), compare_tol(9, "complex128"))
    step = jax.jit(lambda U, X, Y: ul.step(U, (X, Y), 0.1, rank=2, method=method, rng=0))
    assert_unitary(step(jnp.asarray(U), jnp.asarray(A), jnp.asarray(B)))
