"""Gradients through the updates (torch autograd, jax.grad) against finite differences.

A loss ``L = Re Σ C ⊙ retract(U, A, B)`` is differentiated with respect to each
argument and compared, direction by direction, with central differences in
float64. The central difference with step h = eps^(1/3) has error of order
eps^(2/3) relative to the loss's scale (truncation h² and rounding eps/h
balanced), so the bound is a multiple of that, never a literal.
"""

from __future__ import annotations

import numpy as np
import pytest

import unitary_lowrank as ul
from unitary_lowrank.testing import eps_of

METHODS = ("polar", "exp", "cayley")
EPS = eps_of("float64")
H = EPS ** (1 / 3)
#: finite-difference error bound per unit of scale: truncation + rounding, with margin
FD_TOL = 1e3 * EPS ** (2 / 3)


def _case(dtype, n=6, k=1, seed=0):
    rng = np.random.default_rng(seed)
    U = ul.random_unitary(n, dtype=dtype, rng=rng)

    def draw(shape):
        z = rng.standard_normal(shape)
        if dtype.startswith("complex"):
            z = z + 1j * rng.standard_normal(shape)
        return z.astype(dtype)

    return U, 0.3 * draw((n, k)), draw((n, k)), draw((n, n))


def _finite_difference(loss, args, which, direction):
    """Central difference of `loss` along `direction` in argument `which` (NumPy arrays)."""
    plus = [a.copy() for a in args]
    minus = [a.copy() for a in args]
    plus[which] = plus[which] + H * direction
    minus[which] = minus[which] - H * direction
    return (loss(*plus) - loss(*minus)) / (2 * H)


def _directions(shape, dtype, rng, count=3):
    for _ in range(count):
        d = rng.standard_normal(shape)
        if dtype.startswith("complex"):
            d = d + 1j * rng.standard_normal(shape)
        yield d.astype(dtype)


def _check(grads, loss_np, args, dtype, method):
    """<grad, direction> (the real inner product) equals the directional derivative."""
    rng = np.random.default_rng(1)
    scale = max(1.0, abs(loss_np(*args)))
    for which, g in enumerate(grads):
        assert np.all(np.isfinite(g)), f"non-finite gradient in argument {which}"
        for d in _directions(args[which].shape, dtype, rng):
            fd = _finite_difference(loss_np, args, which, d)
            ad = float(np.real(np.vdot(g, d)))  # Re⟨g, d⟩: g is the real gradient
            assert abs(ad - fd) <= FD_TOL * scale * np.linalg.norm(d), (
                f"{method}, argument {which}: autodiff {ad!r} vs finite difference {fd!r}")


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("method", METHODS)
def test_torch_gradients_match_finite_differences(method, dtype):
    torch = pytest.importorskip("torch")
    U, A, B, C = _case(dtype)
    Ct = torch.as_tensor(C)

    def loss_t(U_, A_, B_):
        return (ul.retract(U_, A_, B_, method=method, check_unitary=False) * Ct).real.sum()

    def loss_np(U_, A_, B_):
        with torch.no_grad():
            return float(loss_t(*(torch.as_tensor(x) for x in (U_, A_, B_))))

    leaves = [torch.tensor(x, requires_grad=True) for x in (U, A, B)]
    loss_t(*leaves).backward()
    # torch's .grad of a real loss is ∂L/∂Re + i ∂L/∂Im: the real gradient, as a complex array
    grads = [leaf.grad.numpy() for leaf in leaves]
    _check(grads, loss_np, (U, A, B), dtype, method)


@pytest.fixture
def jax_x64():
    jax = pytest.importorskip("jax")
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield jax
    jax.config.update("jax_enable_x64", old)


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("method", METHODS)
def test_jax_gradients_match_finite_differences(method, dtype, jax_x64):
    jax = jax_x64
    jnp = jax.numpy
    U, A, B, C = _case(dtype)
    Cj = jnp.asarray(C)

    def loss_j(U_, A_, B_):
        return jnp.real(jnp.sum(ul.retract(U_, A_, B_, method=method, check_unitary=False) * Cj))

    def loss_np(U_, A_, B_):
        return float(loss_j(*(jnp.asarray(x) for x in (U_, A_, B_))))

    raw = jax.grad(loss_j, argnums=(0, 1, 2))(*(jnp.asarray(x) for x in (U, A, B)))
    # jax.grad of a real loss of complex z is ∂L/∂Re − i ∂L/∂Im: conjugate to the real gradient
    grads = [np.conj(np.asarray(g)) for g in raw]
    _check(grads, loss_np, (U, A, B), dtype, method)
