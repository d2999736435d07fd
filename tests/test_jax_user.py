"""What a JAX (or PyTorch) user meets outside the optax transformation.

``random_unitary`` with ``jax.numpy`` dtypes returns JAX arrays; ``lowrank``,
``range_finder``, ``step`` and ``random_unitary`` draw from a JAX PRNG key (also
under ``jax.jit``, where a key argument gives fresh numbers and a seed would be
a constant) and from a ``torch.Generator``; a key or generator of another
library than the arrays' is a `TypeError` naming ``rng``. Runs under JAX's
default configuration (x64 off) unless a test asks for ``jax_x64``.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

import unitary_lowrank as ul  # noqa: E402
from unitary_lowrank.testing import (  # noqa: E402
    compare_tol,
    eps_of,
    rounded_unitarity_bound,
    to_numpy,
    unitarity_bound,
)


def _unitarity(U) -> float:
    return float(np.max(ul.unitarity_error(to_numpy(U))))


def _lowrank_matrix(shape, k, dtype, seed):
    """A (…, m, n) matrix of rank k, built on the host."""
    rng = np.random.default_rng(seed)
    *batch, m, n = shape
    X = rng.standard_normal((*batch, m, k))
    Y = rng.standard_normal((*batch, n, k))
    if "complex" in dtype:
        X = X + 1j * rng.standard_normal((*batch, m, k))
        Y = Y + 1j * rng.standard_normal((*batch, n, k))
    return (X @ np.conj(np.swapaxes(Y, -1, -2))).astype(dtype)


def _product(A, B):
    return to_numpy(A) @ np.conj(np.swapaxes(to_numpy(B), -1, -2))


# ---------------------------------------------------------------- random_unitary


@pytest.mark.parametrize("name", ["float32", "complex64"])
def test_random_unitary_follows_jax_dtypes(name):
    """A jax.numpy dtype gives a JAX array (jnp.float32 == np.float32, yet it is JAX's)."""
    U = ul.random_unitary(5, dtype=getattr(jnp, name), batch_shape=(2,), rng=3)
    assert isinstance(U, jax.Array)
    assert U.dtype == getattr(jnp, name)
    # a seed draws on the host: the same matrices as NumPy's
    ref = ul.random_unitary(5, dtype=name, batch_shape=(2,), rng=3)
    np.testing.assert_array_equal(to_numpy(U), ref)
    # a NumPy dtype still gives NumPy
    assert isinstance(ul.random_unitary(3, dtype=np.float32, rng=0), np.ndarray)


@pytest.mark.parametrize("name", ["float64", "complex128"])
def test_random_unitary_jax_double(name, jax_x64):
    U = ul.random_unitary(6, 4, dtype=getattr(jnp, name), rng=jax.random.key(0))
    assert isinstance(U, jax.Array) and U.dtype == getattr(jnp, name)
    assert U.shape == (6, 4)
    assert _unitarity(U) <= rounded_unitarity_bound(6, name)


@pytest.mark.parametrize("name", ["float32", "complex64"])
def test_random_unitary_from_a_jax_key(name):
    key = jax.random.key(1)
    U = ul.random_unitary(6, dtype=getattr(jnp, name), batch_shape=(3,), rng=key)
    assert isinstance(U, jax.Array) and U.shape == (3, 6, 6)
    # single precision with x64 off: a backward-stable QR
    assert _unitarity(U) <= unitarity_bound(6, name)
    # a key with a dtype name gives JAX arrays too; the same key, the same matrices
    V = ul.random_unitary(6, dtype=name, batch_shape=(3,), rng=key)
    np.testing.assert_array_equal(to_numpy(U), to_numpy(V))
    W = ul.random_unitary(6, dtype=name, batch_shape=(3,), rng=jax.random.key(2))
    assert not np.array_equal(to_numpy(U), to_numpy(W))
    # raw uint32 keys (jax.random.PRNGKey) are keys too
    P = ul.random_unitary(6, dtype=name, rng=jax.random.PRNGKey(1))
    assert isinstance(P, jax.Array)


def test_random_unitary_under_jit():
    draw = jax.jit(lambda key: ul.random_unitary(5, dtype=jnp.complex64, rng=key))
    U1, U2 = draw(jax.random.key(0)), draw(jax.random.key(1))
    assert _unitarity(U1) <= unitarity_bound(5, "complex64")
    assert not np.array_equal(to_numpy(U1), to_numpy(U2))  # the key is traced, not frozen


def test_random_unitary_refuses_a_key_of_another_library():
    with pytest.raises(TypeError, match="rng"):
        ul.random_unitary(3, dtype=np.float32, rng=jax.random.key(0))
    with pytest.raises(TypeError, match="rng"):
        ul.random_unitary(3, dtype="float32", xp=np, rng=jax.random.key(0))


# ---------------------------------------------------------------- the sketch


@pytest.mark.parametrize("name", ["float32", "complex64"])
def test_lsi_sketch_with_a_jax_key_under_jit(name):
    """x64 off: the LSI sketch of a rank-2 G at rank 2 is exact, drawn from the traced key."""
    G = jnp.asarray(_lowrank_matrix((3, 12, 9), 2, name, 0))
    sketch = jax.jit(lambda G, key: ul.lowrank(G, 2, sampler="lsi", rng=key))
    A, B = sketch(G, jax.random.key(0))
    assert isinstance(A, jax.Array) and A.dtype == G.dtype and A.shape == (3, 12, 2)
    scale = float(np.max(np.abs(to_numpy(G))))
    assert np.max(np.abs(_product(A, B) - to_numpy(G))) <= compare_tol(12, name) * scale
    # the same key outside the jit: the same factors; another key: other factors
    A0, B0 = ul.lowrank(G, 2, sampler="lsi", rng=jax.random.key(0))
    assert np.max(np.abs(to_numpy(A0) - to_numpy(A))) <= compare_tol(12, name) * scale
    A1, _ = sketch(G, jax.random.key(1))
    assert np.max(np.abs(to_numpy(A1) - to_numpy(A))) > compare_tol(12, name) * scale


@pytest.mark.parametrize("sampler", ["randomized", "column"])
@pytest.mark.parametrize("name", ["float64", "complex128", "float32"])
def test_sketches_with_a_jax_key_in_x64(sampler, name, jax_x64):
    G = jnp.asarray(_lowrank_matrix((2, 10, 8), 3, name, 1))
    sketch = jax.jit(lambda G, key: ul.lowrank(G, 3, sampler=sampler, oversample=2, rng=key))
    A, B = sketch(G, jax.random.key(4))
    assert A.dtype == G.dtype and B.shape == (2, 8, 3)
    scale = float(np.max(np.abs(to_numpy(G))))
    assert np.max(np.abs(_product(A, B) - to_numpy(G))) <= compare_tol(10, name) * scale
    info = ul.lowrank(G, tol=compare_tol(10, name), sampler=sampler, rng=jax.random.key(4),
                      return_info=True)
    assert info.rank == 3


def test_range_finder_with_a_jax_key():
    G = jnp.asarray(_lowrank_matrix((10, 8), 3, "float32", 2))
    Q = jax.jit(lambda G, key: ul.range_finder(G, 3, n_iter=0, rng=key))(G, jax.random.key(0))
    assert Q.shape == (10, 3) and Q.dtype == jnp.float32
    Qn = to_numpy(Q)
    resid = to_numpy(G) - Qn @ (Qn.T @ to_numpy(G))
    assert np.max(np.abs(resid)) <= compare_tol(10, "float32") * float(np.max(np.abs(G)))


def test_lowrank_with_a_tolerance_is_quiet_with_x64_off():
    """tol= picks the rank by counting on the device: no int64 request (a warning) there."""
    G = jnp.asarray(_lowrank_matrix((12, 9), 3, "float32", 4))
    A, B = ul.lowrank(G, tol=eps_of("float32") ** 0.5, rng=jax.random.key(1))
    assert A.shape == (12, 3) and B.shape == (9, 3)  # the exact rank of G
    err = np.max(np.abs(_product(A, B) - to_numpy(G)))
    assert err <= compare_tol(12, "float32") * float(np.max(np.abs(G)))


def test_int_seed_with_jax_arrays_draws_on_the_host():
    """Unchanged: a seed gives the NumPy seed's numbers, on JAX arrays too."""
    G = _lowrank_matrix((9, 7), 4, "float32", 3)
    A, B = ul.lowrank(jnp.asarray(G), 2, sampler="lsi", rng=5)
    An, Bn = ul.lowrank(G, 2, sampler="lsi", rng=5)
    assert np.max(np.abs(to_numpy(A) - An)) <= compare_tol(9, "float32") * float(np.max(np.abs(G)))


def test_a_jax_key_with_other_arrays_is_a_type_error():
    G = _lowrank_matrix((6, 5), 2, "float64", 0)
    with pytest.raises(TypeError, match="rng is a JAX PRNG key"):
        ul.lowrank(G, 1, rng=jax.random.key(0))
    with pytest.raises(TypeError, match="rng is a JAX PRNG key"):
        ul.range_finder(G, 1, rng=jax.random.key(0))
    with pytest.raises(TypeError, match="rng"):
        ul.lowrank(G, 1, rng=jnp.zeros(3))  # not a key: rng must be a seed or generator


def test_step_with_a_jax_key_under_jit(jax_x64):
    U = ul.random_unitary(8, dtype=jnp.complex128, rng=jax.random.key(0))
    G = jnp.asarray(_lowrank_matrix((8, 8), 8, "complex128", 1))
    step = jax.jit(lambda U, G, key: ul.step(U, G, 0.05, rank=2, sampler="lsi", rng=key))
    U1, U2 = step(U, G, jax.random.key(0)), step(U, G, jax.random.key(1))
    assert _unitarity(U1) <= unitarity_bound(8, "complex128")
    assert np.max(np.abs(to_numpy(U1) - to_numpy(U2))) > compare_tol(8, "complex128")


# ---------------------------------------------------------------- torch.Generator


def test_sketch_with_a_torch_generator():
    torch = pytest.importorskip("torch")
    G = torch.asarray(_lowrank_matrix((2, 10, 8), 2, "complex128", 4))
    for sampler in ("lsi", "randomized", "column"):
        A, B = ul.lowrank(G, 2, sampler=sampler, rng=torch.Generator().manual_seed(0))
        assert isinstance(A, torch.Tensor) and A.dtype == G.dtype
        err = np.max(np.abs(_product(A, B) - to_numpy(G)))
        assert err <= compare_tol(10, "complex128") * float(G.abs().max())
    # reproducible from the generator's seed; its state advances
    g = torch.Generator().manual_seed(7)
    A1, _ = ul.lowrank(G, 1, sampler="lsi", rng=g)
    A2, _ = ul.lowrank(G, 1, sampler="lsi", rng=g)
    A3, _ = ul.lowrank(G, 1, sampler="lsi", rng=torch.Generator().manual_seed(7))
    assert torch.equal(A1, A3) and not torch.equal(A1, A2)
    Q = ul.range_finder(G, 2, rng=torch.Generator().manual_seed(0))
    assert isinstance(Q, torch.Tensor) and Q.shape == (2, 10, 2)


def test_random_unitary_with_a_torch_generator():
    torch = pytest.importorskip("torch")
    U = ul.random_unitary(6, 3, dtype=torch.float32, batch_shape=(2,),
                          rng=torch.Generator().manual_seed(0))
    assert isinstance(U, torch.Tensor) and U.dtype == torch.float32 and U.shape == (2, 6, 3)
    assert _unitarity(U) <= rounded_unitarity_bound(6, "float32")
    V = ul.random_unitary(6, 3, dtype="float32", batch_shape=(2,),
                          rng=torch.Generator().manual_seed(0))
    assert torch.equal(U, V)


def test_a_torch_generator_with_other_arrays_is_a_type_error():
    torch = pytest.importorskip("torch")
    G = _lowrank_matrix((6, 5), 2, "float64", 0)
    with pytest.raises(TypeError, match="rng is a torch.Generator"):
        ul.lowrank(G, 1, rng=torch.Generator())
    with pytest.raises(TypeError, match="rng is a torch.Generator"):
        ul.lowrank(jnp.asarray(G), 1, rng=torch.Generator())
    with pytest.raises(TypeError, match="rng is a JAX PRNG key"):
        ul.lowrank(torch.asarray(G), 1, rng=jax.random.key(0))
    with pytest.raises(TypeError, match="rng"):
        ul.random_unitary(3, dtype=np.float64, rng=torch.Generator())


@pytest.fixture
def jax_x32():
    """JAX's default configuration (no float64), restored after."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    yield
    jax.config.update("jax_enable_x64", old)


@pytest.mark.parametrize("name", ["float32", "complex64"])
def test_default_configuration_is_quiet_and_unitary(name, jax_x32):
    """Without x64: no truncation warnings, and results unitary to the dtype's bound.

    The small cores run in single precision there; warnings are errors in this suite.
    """
    jnp = jax.numpy
    n = 24
    U = ul.random_unitary(n, dtype=getattr(jnp, name), rng=jax.random.key(0))
    A, B = U[:, :1] * 0.1, U[:, 1:2]
    bound = unitarity_bound(n, name)
    for method in ("polar", "exp", "cayley"):
        assert _unitarity(ul.retract(U, A, B, method=method)) <= bound
    G = jnp.asarray(_lowrank_matrix((n, n), 3, name, 4))
    for sampler in ("randomized", "lsi", "column"):
        X = ul.step(U, G, 0.01, sampler=sampler, rng=jax.random.key(1))
        assert X.dtype == U.dtype and _unitarity(X) <= bound
    assert float(ul.unitarity_error(U)) <= bound  # computed in JAX, single precision
    assert _unitarity(ul.reunitarize(U)) <= bound
