"""``rmsprop_direction`` and ``adam_direction`` against the NumPy formulas on every backend.

Also: complex moduli, ``jax.jit``, inputs left alone, argument errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import unitary_lowrank as ul
from unitary_lowrank.testing import assert_same_kind, eps_of

DTYPES = ["float32", "float64", "complex64", "complex128"]
REAL_OF = {"float32": "float32", "float64": "float64", "complex64": "float32",
           "complex128": "float64"}


def _gradients(dtype: str, shape: tuple[int, ...], count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        g = rng.standard_normal(shape)
        if np.dtype(dtype).kind == "c":
            g = g + 1j * rng.standard_normal(shape)
        out.append(g.astype(dtype))
    return out


def _formula(grads: list[np.ndarray], alpha: float, eps: float):
    """The recurrence in float64 / complex128 with NumPy: directions and running means."""
    v = None
    directions, means = [], []
    for g in grads:
        g = g.astype(np.complex128 if np.iscomplexobj(g) else np.float64)
        sq = (g.real**2 + g.imag**2) if np.iscomplexobj(g) else g**2  # |g|², real
        v = (1 - alpha) * sq if v is None else alpha * v + (1 - alpha) * sq
        directions.append(g / (np.sqrt(v) + eps))
        means.append(v)
    return directions, means


def _assert_rel_close(got: np.ndarray, want: np.ndarray, dtype: str, what: str) -> None:
    tol = 20 * eps_of(dtype)
    err = np.abs(got - want) / np.maximum(np.abs(want), np.finfo(np.float64).tiny)
    assert err.max() <= tol, f"{what}: relative error {err.max():.2e} > {tol:.2e}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5,), (3, 4, 6)])  # a vector, and batch axes of matrices
def test_matches_the_numpy_formula(backend, dtype, shape):
    alpha, eps = 0.9, 1e-6
    grads = _gradients(dtype, shape, 4)
    want_d, want_v = _formula(grads, alpha, eps)
    v = None
    for i, g_host in enumerate(grads):
        g = backend.asarray(g_host)
        d, v = ul.rmsprop_direction(g, v, alpha=alpha, eps=eps)
        assert_same_kind(d, g)  # namespace, device and dtype of G
        assert_same_kind(v, g, backend.dtype(REAL_OF[dtype]))  # real, same precision
        assert tuple(d.shape) == tuple(v.shape) == shape
        _assert_rel_close(backend.numpy(v), want_v[i], dtype, f"v at step {i}")
        _assert_rel_close(backend.numpy(d), want_d[i], dtype, f"direction at step {i}")


def test_complex_uses_the_squared_modulus_not_the_square(backend):
    # G = i: |G|² = 1 but G² = -1, which would make v negative and √v NaN.
    g = backend.asarray(np.array([1j, -2j, 3 + 4j], dtype=np.complex128))
    d, v = ul.rmsprop_direction(g)
    np.testing.assert_allclose(backend.numpy(v), 0.01 * np.array([1.0, 4.0, 25.0]), rtol=1e-14)
    assert backend.numpy(v).dtype == np.float64
    want = np.array([1j, -2j, 3 + 4j]) / (np.sqrt(0.01 * np.array([1.0, 4.0, 25.0])) + 1e-8)
    np.testing.assert_allclose(backend.numpy(d), want, rtol=1e-14)
    d2, v2 = ul.rmsprop_direction(g, v)
    np.testing.assert_allclose(backend.numpy(v2), 0.0199 * np.array([1.0, 4.0, 25.0]),
                               rtol=1e-14)
    assert np.all(np.isfinite(backend.numpy(d2)))


def test_first_step_and_defaults():
    g = np.array([2.0, -0.5, 0.0])
    d, v = ul.rmsprop_direction(g)  # alpha 0.99, eps 1e-8, no running mean yet
    np.testing.assert_array_equal(v, (1 - 0.99) * (g * g))
    np.testing.assert_array_equal(d, g / (np.sqrt((1 - 0.99) * (g * g)) + 1e-8))
    assert d[2] == 0.0  # a zero gradient gives a zero direction, not NaN
    d0, v0 = ul.rmsprop_direction(g, alpha=0.0)  # alpha 0: v is |g|² itself
    np.testing.assert_array_equal(v0, g * g)


def test_inputs_are_not_modified(backend):
    g_host, v_host = _gradients("float64", (4, 4), 1)[0], np.full((4, 4), 0.5)
    g, v = backend.asarray(g_host), backend.asarray(v_host)
    ul.rmsprop_direction(g, v, alpha=0.5)
    np.testing.assert_array_equal(backend.numpy(g), g_host)
    np.testing.assert_array_equal(backend.numpy(v), v_host)


def test_numpy_inputs_are_not_modified_nor_returned():
    g, v = np.array([1.0, 2.0]), np.array([0.25, 0.25])
    g0, v0 = g.copy(), v.copy()
    d, v1 = ul.rmsprop_direction(g, v)
    assert np.array_equal(g, g0) and np.array_equal(v, v0)
    assert not np.shares_memory(d, g) and not np.shares_memory(v1, v)


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
def test_under_jax_jit(jax_x64, dtype):
    jnp = jax_x64.numpy
    grads = _gradients(dtype, (3, 5), 3, seed=1)
    want_d, want_v = _formula(grads, 0.8, 1e-7)
    first = jax_x64.jit(lambda g: ul.rmsprop_direction(g, alpha=0.8, eps=1e-7))
    later = jax_x64.jit(lambda g, v: ul.rmsprop_direction(g, v, alpha=0.8, eps=1e-7))
    d, v = first(jnp.asarray(grads[0]))
    for i, g in enumerate(grads):
        if i:
            d, v = later(jnp.asarray(g), v)
        assert d.dtype == jnp.dtype(dtype) and v.dtype == jnp.dtype(REAL_OF[dtype])
        _assert_rel_close(np.asarray(v), want_v[i], dtype, f"v at step {i}")
        _assert_rel_close(np.asarray(d), want_d[i], dtype, f"direction at step {i}")


def test_the_cli_optimizer_steps_along_it():
    """The application's RMSprop takes ``p − lr · D`` with D from rmsprop_direction."""
    import array_api_compat.numpy as npx

    from unitary_lowrank.cli.tasks.optim import RMSprop

    opt = RMSprop(0.01, alpha=0.9, xp=npx)
    p = {"w": np.ones(3)}
    v = None
    for g in _gradients("float64", (3,), 3, seed=2):
        d, v = ul.rmsprop_direction(g, v, alpha=0.9)
        want = p["w"] - 0.01 * d
        p = opt.step(p, {"w": g})
        np.testing.assert_array_equal(p["w"], want)
        np.testing.assert_array_equal(opt.square_avg["w"], v)


@pytest.mark.parametrize("alpha", [1.0, 1.5, -0.1, math.nan, math.inf])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        ul.rmsprop_direction(np.ones(2), alpha=alpha)


@pytest.mark.parametrize("eps", [0.0, -1e-8, math.nan, math.inf])
def test_bad_eps(eps):
    with pytest.raises(ValueError, match="eps"):
        ul.rmsprop_direction(np.ones(2), eps=eps)


@pytest.mark.parametrize(("kw", "match"), [({"alpha": "0.9"}, "alpha"), ({"alpha": True}, "alpha"),
                                           ({"eps": None}, "eps"), ({"eps": 1j}, "eps")])
def test_non_numbers_are_type_errors(kw, match):
    with pytest.raises(TypeError, match=match):
        ul.rmsprop_direction(np.ones(2), **kw)


def test_bad_arrays_are_named():
    g = np.ones((2, 3))
    with pytest.raises(TypeError, match="G"):
        ul.rmsprop_direction([1.0, 2.0])
    with pytest.raises(TypeError, match="G"):
        ul.rmsprop_direction(np.ones(3, dtype=np.int64))
    with pytest.raises(TypeError, match="square_avg"):
        ul.rmsprop_direction(g, np.ones((2, 3), dtype=np.complex128))  # v must be real
    with pytest.raises(TypeError, match="square_avg"):
        ul.rmsprop_direction(g, np.ones((2, 3), dtype=np.float32))  # of G's precision
    with pytest.raises(TypeError, match="square_avg.*float32"):
        ul.rmsprop_direction(g.astype(np.complex64), np.ones((2, 3)))
    with pytest.raises(ValueError, match="square_avg"):
        ul.rmsprop_direction(g, np.ones((3, 2)))


def test_mixed_libraries_are_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="square_avg"):
        ul.rmsprop_direction(np.ones(2), torch.ones(2, dtype=torch.float64))


def test_exported():
    assert "rmsprop_direction" in ul.__all__
    assert ul.rmsprop_direction.__module__ == "unitary_lowrank.directions"


def test_torch_fused_path_does_not_alias_and_autograd_takes_the_portable_one():
    torch = pytest.importorskip("torch")
    g = torch.tensor([3.0, -4.0, 0.5], dtype=torch.float64)
    v0 = torch.tensor([1.0, 2.0, 0.25], dtype=torch.float64)
    d, v = ul.rmsprop_direction(g, v0, alpha=0.75)  # real, no autograd: the fused path
    assert d.data_ptr() not in (g.data_ptr(), v0.data_ptr(), v.data_ptr())
    assert v.data_ptr() not in (g.data_ptr(), v0.data_ptr())
    # with autograd, the gradient of Σ D through the portable expression, against the
    # derivative of the formula: ∂/∂g [g / (√(a v0 + (1−a) g²) + ε)]
    gr = g.clone().requires_grad_(True)
    dg, _ = ul.rmsprop_direction(gr, v0, alpha=0.75, eps=1e-8)
    torch.testing.assert_close(dg.detach(), d, rtol=4 * eps_of("float64"), atol=0.0)
    dg.sum().backward()
    s = torch.sqrt(0.75 * v0 + 0.25 * g * g)
    want = 1 / (s + 1e-8) - g * (0.25 * g / s) / (s + 1e-8) ** 2
    torch.testing.assert_close(gr.grad, want, rtol=16 * eps_of("float64"), atol=0.0)


# ------------------------------------------------------------------------ Adam
def _adam_formula(grads: list[np.ndarray], b1: float, b2: float, eps: float):
    """Adam's recurrence as torch.optim.Adam writes it, in float64 / complex128.

    Also the size of the terms that make up m at each step (``β₁|m₀| + (1 − β₁)|g|``)
    and that of the direction built from them: m may cancel to near zero, and a
    rounding error is relative to its terms, not to m.
    """
    m = v = mag = None
    out = []
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.complex128 if np.iscomplexobj(g) else np.float64)
        sq = (g.real**2 + g.imag**2) if np.iscomplexobj(g) else g**2
        mag = (1 - b1) * np.abs(g) if m is None else b1 * np.abs(m) + (1 - b1) * np.abs(g)
        m = (1 - b1) * g if m is None else b1 * m + (1 - b1) * g
        v = (1 - b2) * sq if v is None else b2 * v + (1 - b2) * sq
        denom = np.sqrt(v / (1 - b2**t)) + eps
        out.append((m / (1 - b1**t) / denom, m, v, mag, mag / (1 - b1**t) / denom))
    return out


def _assert_close_to_terms(got, want, terms, dtype: str, what: str) -> None:
    tol = 20 * eps_of(dtype)
    err = np.abs(got - want) / np.maximum(terms, np.finfo(np.float64).tiny)
    assert err.max() <= tol, f"{what}: error {err.max():.2e} of its terms > {tol:.2e}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5,), (3, 4, 6)])
def test_adam_matches_the_numpy_formula(backend, dtype, shape):
    b1, b2, eps = 0.8, 0.95, 1e-6
    grads = _gradients(dtype, shape, 4, seed=3)
    m = v = None
    for t, (g_host, (want_d, want_m, want_v, mag_m, mag_d)) in enumerate(
            zip(grads, _adam_formula(grads, b1, b2, eps), strict=True), start=1):
        g = backend.asarray(g_host)
        d, m, v = ul.adam_direction(g, m, v, t, betas=(b1, b2), eps=eps)
        assert_same_kind(d, g)
        assert_same_kind(m, g)
        assert_same_kind(v, g, backend.dtype(REAL_OF[dtype]))
        _assert_rel_close(backend.numpy(v), want_v, dtype, f"v at step {t}")
        _assert_close_to_terms(backend.numpy(m), want_m, mag_m, dtype, f"m at step {t}")
        _assert_close_to_terms(backend.numpy(d), want_d, mag_d, dtype, f"direction at step {t}")


def test_adam_agrees_with_torch_adam():
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 5, dtype=torch.float64, generator=gen)
    p = torch.nn.Parameter(w.clone())
    opt = torch.optim.Adam([p], lr=0.1, betas=(0.9, 0.99), eps=1e-8)
    mine, m, v = w.clone(), None, None
    for t in range(1, 6):
        g = torch.randn(4, 5, dtype=torch.float64, generator=gen)
        p.grad = g.clone()
        opt.step()
        d, m, v = ul.adam_direction(g, m, v, t, betas=(0.9, 0.99), eps=1e-8)
        mine = mine - 0.1 * d
    assert torch.allclose(mine, p.detach(), rtol=0, atol=50 * torch.finfo(torch.float64).eps)


def test_adam_inputs_are_not_modified(backend):
    g0 = np.arange(1.0, 7.0).reshape(2, 3)
    g, m, v = (backend.asarray(x) for x in (g0, 0.5 * g0, g0**2))
    ul.adam_direction(g, m, v, 3)
    for x, want in ((g, g0), (m, 0.5 * g0), (v, g0**2)):
        np.testing.assert_array_equal(backend.numpy(x), want)


@pytest.mark.parametrize(("args", "kwargs", "exc", "match"), [
    ((), {"betas": (0.9, 1.0)}, ValueError, r"betas\[1\] must be in \[0, 1\)"),
    ((), {"betas": (-0.1, 0.9)}, ValueError, r"betas\[0\] must be in \[0, 1\)"),
    ((), {"betas": 0.9}, TypeError, "betas must be a pair"),
    ((), {"eps": 0.0}, ValueError, "eps"),
    ((None, None, 0), {}, ValueError, "step must be >= 1"),
    ((None, None, 1.0), {}, TypeError, "step must be an int"),
    ((np.zeros(3, dtype=np.float32),), {}, TypeError, "exp_avg must have dtype float64"),
    ((None, np.zeros(2)), {}, ValueError, r"exp_avg_sq must have the shape of G \(3,\)"),
])
def test_adam_bad_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ul.adam_direction(np.ones(3), *args, **kwargs)


def test_adam_under_jax_jit(jax_x64):
    jnp = jax_x64.numpy
    g0 = np.linspace(-1, 1, 6).reshape(2, 3)
    f = jax_x64.jit(lambda g, m, v: ul.adam_direction(g, m, v, 2))
    got = f(jnp.asarray(g0), jnp.asarray(0.5 * g0), jnp.asarray(g0 * g0))
    want = ul.adam_direction(g0, 0.5 * g0, g0 * g0, 2)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=20 * eps_of("float64"))
