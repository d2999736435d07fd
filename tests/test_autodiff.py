"""Gradients through the updates (torch autograd, jax.grad) against finite differences.

A loss ``L = Re Σ C ⊙ retract(U, A, B)`` is differentiated with respect to each
argument and compared, direction by direction, with central differences in
float64. The central difference with step h = eps^(1/3) has error of order
eps^(2/3) relative to the loss's scale (truncation h² and rounding eps/h
balanced), so the bound is a multiple of that, never a literal.

Generic steps first, then the degenerate ones every run meets (A = 0 at the first
step, repeated or zero columns, a rank-deficient B, a sketch of higher rank than
G), where the QR, eigh and SVD inside the updates have no derivative: reverse
mode (torch backward, jax.grad) and forward mode (torch.func.jvp, jax.jvp) must
still give the derivative of the map, and a singular U + ABᴴ, where the polar
factor has none, must raise.
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


def _condition(args, method):
    """How much the difference's truncation error grows: ``max(1, 1/σ_min(U + ABᴴ))²``.

    The polar factor's k-th derivative grows like ``1/σ_min^k`` (its first derivative
    like ``1/σ_min``, which is why the accuracy tests divide by σ_min too), so the
    central difference's error h²·f‴/6, relative to f′, grows like its square; the
    exponential and Cayley maps are entire in the step.
    """
    if method != "polar":
        return 1.0
    U, A, B = args
    smin = np.linalg.svd(U + A @ B.conj().T, compute_uv=False)[-1]
    return max(1.0, 1.0 / smin) ** 2


def _check(grads, loss_np, args, dtype, method):
    """<grad, direction> (the real inner product) equals the directional derivative."""
    rng = np.random.default_rng(1)
    scale = max(1.0, abs(loss_np(*args))) * _condition(args, method)
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


# ---------------------------------------------------------------- degenerate steps

#: Steps where [B, UᴴA] is rank deficient or the core has repeated eigenvalues.
KINDS = ("zero A", "repeated A", "repeated B", "zero columns", "dependent B")
STIEFEL_KINDS = ("zero A", "repeated A", "A in range(U)", "dependent B")


def _degenerate(kind, dtype, n=6, p=None, k=3, seed=0):
    """``(U, A, B, C)`` of a degenerate step: U n×p (p = n: square), A n×k, B p×k."""
    U, A, B, C = _case(dtype, n=n, k=k, seed=seed)
    p = n if p is None else p
    U, B, C = U[:, :p], B[:p], C[:, :p]
    A, B = A.copy(), B.copy()
    if kind == "zero A":
        A[:] = 0
    elif kind == "repeated A":
        A[:, 1] = A[:, 0]
    elif kind == "repeated B":
        B[:, 1] = B[:, 0]
    elif kind == "zero columns":
        A[:, 1] = 0
        B[:, 2] = 0
    elif kind == "dependent B":
        B[:, 2] = B[:, 0] - 2 * B[:, 1]
    elif kind == "A in range(U)":  # A⊥ = 0: the Stiefel update's extra directions vanish
        A = U @ B[:, ::-1].conj()
    return U, A, B, C


def _loss_np(method, C):
    def loss(U_, A_, B_):
        X = ul.retract(U_, A_, B_, method=method, check_unitary=False)
        return float(np.real(np.sum(X * C)))
    return loss


def _torch_gradients(method, args, C):
    torch = pytest.importorskip("torch")
    leaves = [torch.tensor(x, requires_grad=True) for x in args]
    X = ul.retract(*leaves, method=method, check_unitary=False)
    (X * torch.as_tensor(C)).real.sum().backward()
    return [leaf.grad.numpy() for leaf in leaves]


def _jax_gradients(jax, method, args, C):
    jnp = jax.numpy
    Cj = jnp.asarray(C)

    def loss(*a):
        return jnp.real(jnp.sum(ul.retract(*a, method=method, check_unitary=False) * Cj))

    raw = jax.grad(loss, argnums=(0, 1, 2))(*(jnp.asarray(x) for x in args))
    return [np.conj(np.asarray(g)) for g in raw]  # jax: ∂/∂Re − i ∂/∂Im


def _joint_direction(args, dtype, seed=2):
    rng = np.random.default_rng(seed)
    return [next(_directions(a.shape, dtype, rng, count=1)) for a in args]


def _check_forward_mode(derivative, loss_np, args, dirs, method, what):
    """A forward-mode directional derivative against the central difference along `dirs`."""
    plus = [a + H * d for a, d in zip(args, dirs, strict=True)]
    minus = [a - H * d for a, d in zip(args, dirs, strict=True)]
    fd = (loss_np(*plus) - loss_np(*minus)) / (2 * H)
    scale = max(1.0, abs(loss_np(*args))) * _condition(args, method)
    size = np.sqrt(sum(np.linalg.norm(d) ** 2 for d in dirs))
    assert np.isfinite(derivative), f"{what}: non-finite forward-mode derivative"
    assert abs(derivative - fd) <= FD_TOL * scale * size, (
        f"{what}: forward mode {derivative!r} vs finite difference {fd!r}")


def _torch_forward_mode(method, args, C, dirs):
    torch = pytest.importorskip("torch")
    Ct = torch.as_tensor(C)

    def loss(*a):
        return (ul.retract(*a, method=method, check_unitary=False) * Ct).real.sum()

    _, tangent = torch.func.jvp(loss, tuple(torch.as_tensor(x) for x in args),
                                tuple(torch.as_tensor(d) for d in dirs))
    return float(tangent)


def _jax_forward_mode(jax, method, args, C, dirs):
    jnp = jax.numpy
    Cj = jnp.asarray(C)

    def loss(*a):
        return jnp.real(jnp.sum(ul.retract(*a, method=method, check_unitary=False) * Cj))

    _, tangent = jax.jvp(loss, tuple(jnp.asarray(x) for x in args),
                         tuple(jnp.asarray(d) for d in dirs))
    return float(tangent)


#: torch's forward mode imports its JVP decompositions through ``torch.jit.script`` at its
#: first use, which warns (torch 2.9 and later); nothing of this library's.
TORCH_FORWARD_AD_IMPORT = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@TORCH_FORWARD_AD_IMPORT
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_torch_derivatives_at_degenerate_steps(kind, method, dtype):
    """At A = 0 every method gave NaN; with equal columns, finite but wrong gradients."""
    args = _degenerate(kind, dtype)
    C = args[3]
    loss_np = _loss_np(method, C)
    _check(_torch_gradients(method, args[:3], C), loss_np, args[:3], dtype, method)
    dirs = _joint_direction(args[:3], dtype)
    _check_forward_mode(_torch_forward_mode(method, args[:3], C, dirs), loss_np, args[:3],
                        dirs, method, f"torch.func.jvp, {method}, {kind}")


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_jax_derivatives_at_degenerate_steps(kind, method, dtype, jax_x64):
    args = _degenerate(kind, dtype)
    C = args[3]
    loss_np = _loss_np(method, C)
    _check(_jax_gradients(jax_x64, method, args[:3], C), loss_np, args[:3], dtype, method)
    dirs = _joint_direction(args[:3], dtype)
    _check_forward_mode(_jax_forward_mode(jax_x64, method, args[:3], C, dirs), loss_np,
                        args[:3], dirs, method, f"jax.jvp, {method}, {kind}")


@pytest.mark.parametrize("library", ["torch", "jax"])
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("kind", STIEFEL_KINDS)
def test_stiefel_derivatives_at_degenerate_steps(kind, dtype, library, request):
    """The polar update of U with fewer columns (p < n): NaN at A = 0 before."""
    args = _degenerate(kind, dtype, n=7, p=4, k=3)
    C = args[3]
    loss_np = _loss_np("polar", C)
    if library == "torch":
        grads = _torch_gradients("polar", args[:3], C)
    else:
        grads = _jax_gradients(request.getfixturevalue("jax_x64"), "polar", args[:3], C)
    _check(grads, loss_np, args[:3], dtype, "polar")


@pytest.mark.parametrize("library", ["torch", "jax"])
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("method", METHODS)
def test_derivative_in_lr_at_lr_zero(method, dtype, library, request):
    """d/d(lr) of retract(U, lr·A, B) at lr = 0, the first step of a differentiable optimizer."""
    U, A, B, C = _case(dtype, k=2)

    def value(lr):
        return _loss_np(method, C)(U, lr * A, B)

    fd = (value(H) - value(-H)) / (2 * H)
    if library == "torch":
        torch = pytest.importorskip("torch")
        lr = torch.zeros((), dtype=torch.float64, requires_grad=True)
        X = ul.retract(torch.as_tensor(U), lr * torch.as_tensor(A), torch.as_tensor(B),
                       method=method)
        (X * torch.as_tensor(C)).real.sum().backward()
        ad = float(lr.grad)
    else:
        jax = request.getfixturevalue("jax_x64")
        jnp = jax.numpy
        ad = float(jax.grad(lambda t: jnp.real(jnp.sum(ul.retract(
            jnp.asarray(U), t * jnp.asarray(A), jnp.asarray(B), method=method) * C)))(0.0))
    scale = max(1.0, abs(value(0.0)))
    assert abs(ad - fd) <= FD_TOL * scale * np.linalg.norm(A), (ad, fd)


def _rank_one_gradient(dtype, n=6, seed=3):
    rng = np.random.default_rng(seed)
    U = ul.random_unitary(n, dtype=dtype, rng=rng)
    x, y, C = (next(_directions(s, dtype, rng, count=1)) for s in ((n, 1), (n, 1), (n, n)))
    return U, x @ y.conj().T, C


def _tangent(U, dtype, rng):
    """A direction U Ω (Ω skew-Hermitian) tangent to the unitary group at U."""
    W = next(_directions(U.shape, dtype, rng, count=1))
    return U @ (W - W.conj().T) / 2


@pytest.mark.parametrize("library", ["torch", "jax"])
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("method", METHODS)
def test_step_with_a_gradient_of_lower_rank(method, dtype, library, request):
    """step(rank=2) of a rank-1 G: the sketch's A has a zero column (polar gave NaN).

    ``step`` checks that U is unitary, so U moves along tangent directions U Ω; the
    central difference along one leaves the group by O(h²), inside its truncation error.
    """
    U, G, C = _rank_one_gradient(dtype)
    lr = 0.3

    def value(U_, lr_=lr):
        return float(np.real(np.sum(ul.step(U_, G, lr_, rank=2, method=method, rng=0) * C)))

    if library == "torch":
        torch = pytest.importorskip("torch")
        Ut = torch.tensor(U, requires_grad=True)
        X = ul.step(Ut, torch.as_tensor(G), lr, rank=2, method=method, rng=0)
        (X * torch.as_tensor(C)).real.sum().backward()
        gU = Ut.grad.numpy()
    else:
        jax = request.getfixturevalue("jax_x64")
        jnp = jax.numpy

        def loss(U_, lr_):
            X = ul.step(U_, jnp.asarray(G), lr_, rank=2, method=method, rng=0)
            return jnp.real(jnp.sum(X * C))

        gU = np.conj(np.asarray(jax.grad(loss)(jnp.asarray(U), lr)))
        glr = jax.grad(loss, argnums=1)(jnp.asarray(U), 0.0)
        fd = (value(U, H) - value(U, -H)) / (2 * H)  # d/d(lr) at lr = 0
        assert abs(float(glr) - fd) <= FD_TOL * max(1.0, abs(value(U, 0.0))) * np.linalg.norm(G)
    scale = max(1.0, abs(value(U)))
    rng = np.random.default_rng(4)
    assert np.all(np.isfinite(gU))
    for _ in range(3):
        d = _tangent(U, dtype, rng)
        fd = (value(U + H * d) - value(U - H * d)) / (2 * H)
        ad = float(np.real(np.vdot(gU, d)))
        assert abs(ad - fd) <= FD_TOL * scale * np.linalg.norm(d), (ad, fd)


def test_torch_gradient_of_a_broadcast_u():
    """One U for a batch of steps: its gradient sums over the batch (shape of U)."""
    torch = pytest.importorskip("torch")
    U, A, B, C = _case("float64", k=2)
    A = np.stack([A, 0 * A])  # the second step is zero
    Ut = torch.tensor(U, requires_grad=True)
    X = ul.retract(Ut, torch.as_tensor(A), torch.as_tensor(B), method="exp")
    (X * torch.as_tensor(C)).sum().backward()
    assert tuple(Ut.grad.shape) == U.shape
    expected = _torch_gradients("exp", (U, A[0], B), C)[0] + _torch_gradients(
        "exp", (U, A[1], B), C)[0]
    np.testing.assert_allclose(Ut.grad.numpy(), expected, rtol=0, atol=10 * U.shape[0] * EPS)


@pytest.mark.parametrize("method", METHODS)
def test_torch_second_derivatives_at_a_generic_step(method):
    """create_graph=True: the Hessian-vector product against differences of gradients."""
    torch = pytest.importorskip("torch")
    U, A, B, C = _case("float64", k=2)
    Ct = torch.as_tensor(C)

    def grad(A_, create_graph=False):
        At = A_ if torch.is_tensor(A_) else torch.tensor(A_, requires_grad=True)
        X = ul.retract(torch.as_tensor(U), At, torch.as_tensor(B), method=method,
                       check_unitary=False)
        (g,) = torch.autograd.grad((X * Ct).sum(), At, create_graph=create_graph)
        return g

    d = next(_directions(A.shape, "float64", np.random.default_rng(5), count=1))
    At = torch.tensor(A, requires_grad=True)
    (hvp,) = torch.autograd.grad((grad(At, create_graph=True) * torch.as_tensor(d)).sum(), At)
    fd = (grad(A + H * d).numpy() - grad(A - H * d).numpy()) / (2 * H)
    scale = max(1.0, float(np.abs(grad(A).numpy()).max()))
    assert np.abs(hvp.numpy() - fd).max() <= FD_TOL * scale * np.linalg.norm(d)


@pytest.mark.parametrize("library", ["torch", "jax"])
@pytest.mark.parametrize("shape", [(5, 5), (7, 3)])
def test_polar_derivative_at_a_singular_matrix_raises(shape, library, request):
    """U + ABᴴ singular (k = 1, bᴴUᴴa = −1): the polar factor is not unique there.

    The update itself returns one of them; its derivative is refused with a
    ValueError (under jax.jit, where nothing can raise, it is NaN).
    """
    n, p = shape
    rng = np.random.default_rng(6)
    U = ul.random_unitary(n, dtype="float64", rng=rng)[:, :p]
    b = rng.standard_normal((p, 1))
    a = -U @ b / (b.T @ b)
    C = rng.standard_normal((n, p))
    if library == "torch":
        torch = pytest.importorskip("torch")
        At = torch.tensor(a, requires_grad=True)
        X = ul.project(torch.as_tensor(U), At, torch.as_tensor(b))
        with pytest.raises(ValueError, match="singular"):
            (X * torch.as_tensor(C)).sum().backward()
        return
    jax = request.getfixturevalue("jax_x64")
    jnp = jax.numpy

    def loss(a_):
        return jnp.sum(ul.project(jnp.asarray(U), a_, jnp.asarray(b)) * C)

    with pytest.raises(ValueError, match="singular"):
        jax.grad(loss)(jnp.asarray(a))
    assert not np.any(np.isfinite(np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(a)))))


@pytest.mark.parametrize("rank", [2, "full"])
def test_torch_step_is_differentiable_in_lr(rank):
    # lr as a tensor that requires grad: kept on the tape (it was turned into a float, and
    # lr.grad came back None with a warning)
    torch = pytest.importorskip("torch")
    n = 6
    U = torch.from_numpy(ul.random_unitary(n, dtype="float64", rng=0))
    G = torch.from_numpy(np.random.default_rng(1).standard_normal((n, n)))
    T = torch.from_numpy(np.random.default_rng(2).standard_normal((n, n)))

    def f(lr):
        return (ul.step(U, G, lr, rank=rank, method="exp", sampler="randomized", rng=0)
                * T).sum()

    lr = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    f(lr).backward()
    h = 1e-6
    with torch.no_grad():
        fd = (f(torch.tensor(0.05 + h, dtype=torch.float64))
              - f(torch.tensor(0.05 - h, dtype=torch.float64))) / (2 * h)
    assert lr.grad is not None
    # central difference: rounding c·eps·|f|/h (f sums n² entries of size 1), truncation O(h²)
    tol = 100 * n * n * eps_of("float64") / h + h
    assert abs(float(lr.grad) - float(fd)) <= tol
