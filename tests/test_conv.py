"""Fourier-domain orthogonal and unitary convolutions (unitary_lowrank.conv).

References are independent of the library: explicit circular sums with
``np.roll``, NumPy's full ``fft2`` in double precision, the dense updates of
:mod:`unitary_lowrank.testing.reference`, central finite differences.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from unitary_lowrank import conv
from unitary_lowrank.testing import (
    assert_close,
    assert_same_kind,
    compare_tol,
    to_numpy,
    unitarity_bound,
)
from unitary_lowrank.testing.reference import reference_step

REAL = {"float32": "float32", "float64": "float64", "complex64": "float32",
        "complex128": "float64"}
CPLX = {"float32": "complex64", "float64": "complex128", "complex64": "complex64",
        "complex128": "complex128"}


# ---------------------------------------------------------------------------
# independent references


def ref_circular_conv(K, x):
    """y[o,i,j] = Σ_c Σ_{a,b} K[o,c,a,b] x[c,(i−a)%H,(j−b)%W], by explicit sums."""
    K = np.asarray(K, np.complex128)
    x = np.asarray(x, np.complex128)
    y = np.zeros((*x.shape[:-3], K.shape[0], *x.shape[-2:]), np.complex128)
    for a in range(K.shape[2]):
        for b in range(K.shape[3]):
            shifted = np.roll(x, (a, b), axis=(-2, -1))
            y += np.einsum("oc,...cij->...oij", K[:, :, a, b], shifted)
    return y


def full_blocks(layout, W):
    """Blocks at all H·W frequencies (fft2 order) from the stored ones, in NumPy."""
    H, Wd = layout.shape
    W = np.asarray(to_numpy(W), np.complex128)
    if not layout.real:
        return W.reshape(H, Wd, *W.shape[1:])
    out = np.full((H, Wd, *W.shape[1:]), np.nan, np.complex128)
    S = layout.n_real_blocks
    for r, (f1, f2) in enumerate(layout.frequencies):
        block = W[r].real if r < S else W[r]
        out[f1, f2] = block
        out[(-f1) % H, (-f2) % Wd] = np.conj(block)
    assert not np.isnan(out).any()
    return out


def dense_gradient(layout, x, dy):
    """Σ_batch δ̂_f x̂_fᴴ at every frequency (orthonormal fft2), symmetrised if real."""
    x = np.asarray(x, np.complex128).reshape(-1, *np.shape(x)[-3:])
    dy = np.asarray(dy, np.complex128).reshape(-1, *np.shape(dy)[-3:])
    xh = np.fft.fft2(x, norm="ortho")
    dh = np.fft.fft2(dy, norm="ortho")
    G = np.einsum("moij,mcij->ijoc", dh, xh.conj())
    if layout.real:
        Gm = np.conj(np.roll(G[::-1, ::-1], (1, 1), axis=(0, 1)))  # conj(G(−f))
        G = (G + Gm) / 2
    return G


def haar_full(rng, shape, cplx=True):
    z = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if cplx else 0)
    q, r = np.linalg.qr(z)
    d = np.diagonal(r, axis1=-2, axis2=-1)
    return q * (d / np.abs(d))[..., None, :]


def images(rng, shape, dtype):
    x = rng.standard_normal(shape)
    if dtype.startswith("complex"):
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)


# ---------------------------------------------------------------------------
# layout


def brute_force_orbits(H, W):
    """Orbits {f, −f} of the 2-D DFT grid, by enumeration."""
    seen, orbits = set(), []
    for f1 in range(H):
        for f2 in range(W):
            if (f1, f2) in seen:
                continue
            orb = {(f1, f2), ((-f1) % H, (-f2) % W)}
            seen |= orb
            orbits.append(orb)
    return orbits


@pytest.mark.parametrize("shape", [1, 2, 3, 4, 5, (4, 7), (5, 6), (1, 6), (8, 8)])
def test_layout_matches_enumerated_orbits(shape):
    layout = conv.FourierLayout(shape)
    H, W = layout.shape
    orbits = brute_force_orbits(H, W)
    freqs = [tuple(f) for f in layout.frequencies.tolist()]
    assert layout.n_blocks == len(orbits) == len(set(freqs))
    # one stored frequency per orbit, all in the rfft2 half-plane, self-conjugate first
    owner = {f: i for i, orb in enumerate(orbits) for f in orb}
    assert sorted(owner[f] for f in freqs) == list(range(len(orbits)))
    assert all(f2 <= W // 2 for _, f2 in freqs)
    sizes = [len(orbits[owner[f]]) for f in freqs]
    S = layout.n_real_blocks
    assert sizes[:S] == [1] * S and all(s == 2 for s in sizes[S:])
    assert S == (1 + (H % 2 == 0)) * (1 + (W % 2 == 0))
    assert layout.multiplicity.tolist() == sizes
    assert layout.multiplicity.sum() == H * W
    cl = conv.FourierLayout(shape, real=False)
    assert cl.n_blocks == H * W and cl.n_real_blocks == 0
    assert cl.frequencies.tolist() == [[i, j] for i in range(H) for j in range(W)]


def test_layout_rejects_bad_shapes():
    for bad in [0, (3,), (2, 0), "a", (2, 2.5)]:
        with pytest.raises(ValueError, match="shape must be"):
            conv.FourierLayout(bad)
    assert conv.FourierLayout(4) == conv.FourierLayout((4, 4))
    assert conv.FourierLayout(4) != conv.FourierLayout(4, real=False)


# ---------------------------------------------------------------------------
# the layer is the circular convolution with its kernel


@pytest.mark.parametrize("real", [True, False], ids=["real", "complex"])
@pytest.mark.parametrize("shape", [(4, 4), (5, 3)], ids=["even", "odd"])
def test_convolve_equals_circular_conv_of_kernel(backend, dtype, real, shape):
    rng = np.random.default_rng(11)
    layout = conv.FourierLayout(shape, real=real)
    Co, Ci, H, Wd = 3, 2, *shape
    # 1) a random small kernel, converted to blocks and applied
    kdt = REAL[dtype] if real else CPLX[dtype]
    K = images(rng, (Co, Ci, 3, 2), kdt)
    x = images(rng, (2, Ci, H, Wd), dtype)
    Wb = conv.kernel_to_blocks(backend.asarray(K), layout)
    assert_same_kind(Wb, backend.asarray(K), backend.dtype(CPLX[dtype]))
    y = conv.convolve(Wb, backend.asarray(x), layout)
    expect = ref_circular_conv(K, x)
    out_real = real and not dtype.startswith("complex")
    assert_same_kind(y, Wb, backend.dtype(REAL[dtype] if out_real else CPLX[dtype]))
    scale = np.abs(K).sum() * np.abs(x).max()
    tol = compare_tol(Ci * H * Wd, dtype) * scale
    assert_close(y, expect, tol, what="convolve(kernel_to_blocks(K))")
    # 2) random unitary blocks, their kernel (real for real layouts) applied by explicit sums
    Wr = conv.random_blocks(Co, layout, dtype=dtype, rng=3, xp=backend.xp, device=backend.device)
    Kr = conv.blocks_to_kernel(Wr, layout)
    assert_same_kind(Kr, Wr, backend.dtype(REAL[dtype] if real else CPLX[dtype]))
    x2 = images(rng, (2, Co, H, Wd), dtype)
    y2 = conv.convolve(Wr, backend.asarray(x2), layout)
    expect2 = ref_circular_conv(to_numpy(Kr), x2)
    scale2 = np.abs(to_numpy(Kr)).sum() * np.abs(x2).max()
    assert_close(y2, expect2, compare_tol(Co * H * Wd, dtype) * scale2,
                 what="convolve vs blocks_to_kernel")


@pytest.mark.parametrize("real", [True, False], ids=["real", "complex"])
def test_kernel_blocks_round_trip_and_dft(backend, dtype, real):
    rng = np.random.default_rng(5)
    layout = conv.FourierLayout((6, 5), real=real)
    K = images(rng, (2, 3, 6, 5), REAL[dtype] if real else CPLX[dtype])
    Wb = conv.kernel_to_blocks(backend.asarray(K), layout)
    # the blocks are the unnormalised 2-D DFT of the kernel at the stored frequencies
    Kh = np.fft.fft2(K.astype(np.complex128))
    f = layout.frequencies
    expect = np.moveaxis(Kh[:, :, f[:, 0], f[:, 1]], -1, 0)
    tol = compare_tol(30, dtype) * np.abs(K).sum()
    assert_close(Wb, expect, tol, what="kernel_to_blocks vs fft2")
    back = conv.blocks_to_kernel(Wb, layout)
    assert_same_kind(back, backend.asarray(K))
    assert_close(back, K, tol, what="blocks_to_kernel(kernel_to_blocks(K))")


# ---------------------------------------------------------------------------
# norm preservation and adjoint = inverse, at initialisation and after updates


def _norm_tol(layout, C, dtype, steps=0):
    """Relative bound on the change of norm.

    FFT rounding (c·log₂(HW)·eps) plus the blocks' unitarity bound, which grows
    like √steps (a random walk of rounding errors, docs/theory.md, "Drift").
    """
    H, W = layout.shape
    fft = compare_tol(2 + math.log2(H * W), dtype, factor=30)
    return fft + unitarity_bound(C, dtype) * math.sqrt(1 + steps)


def _check_isometry(W, layout, asarray, dtype, rng, tol):
    C = W.shape[1]
    H, Wd = layout.shape
    for xdt in (REAL[dtype], CPLX[dtype]):
        x = images(rng, (3, C, H, Wd), xdt)
        y = conv.convolve(W, asarray(x), layout)
        yn = to_numpy(y)
        nx = np.linalg.norm(x.astype(np.complex128))
        assert abs(np.linalg.norm(yn.astype(np.complex128)) - nx) <= tol * nx, (
            f"‖conv(x)‖ = {np.linalg.norm(yn):.8g} but ‖x‖ = {nx:.8g} ({xdt} input)")
        back = conv.convolve_adjoint(W, y, layout)
        assert_same_kind(back, y)
        assert_close(back, x, tol * np.abs(x).max() * math.sqrt(C * H * Wd),
                     what=f"conv_adjoint(conv(x)), {xdt} input")


@pytest.mark.parametrize("real", [True, False], ids=["real", "complex"])
@pytest.mark.parametrize("shape", [4, 5], ids=["even", "odd"])
def test_isometry_at_initialisation(backend, dtype, real, shape):
    layout = conv.FourierLayout(shape, real=real)
    rng = np.random.default_rng(2)
    C = 3
    for init in ("identity", "random"):
        if init == "identity":
            W = conv.identity_blocks(C, layout, dtype=dtype, xp=backend.xp, device=backend.device)
        else:
            W = conv.random_blocks(C, layout, dtype=dtype, rng=4, xp=backend.xp,
                                   device=backend.device)
        assert_same_kind(W, backend.asarray(np.zeros(1, CPLX[dtype])))
        assert float(to_numpy(conv.orthogonality_error(W, layout))) <= unitarity_bound(C, dtype)
        _check_isometry(W, layout, backend.asarray, dtype, rng, _norm_tol(layout, C, dtype))


@pytest.mark.parametrize("method", ["polar", "exp"])
@pytest.mark.parametrize("real", [True, False], ids=["real", "complex"])
@pytest.mark.parametrize("shape", [4, (5, 3)], ids=["even", "odd"])
@pytest.mark.parametrize("dtype_", ["float32", "float64"])
def test_isometry_after_500_updates(dtype_, shape, real, method):
    """500 projUNN steps with random gradients (rank-1 sketches of batch-2 gradients)."""
    layout = conv.FourierLayout(shape, real=real)
    C, steps = 3, 500
    rng = np.random.default_rng(7)
    W = conv.random_blocks(C, layout, dtype=dtype_, rng=rng)
    H, Wd = layout.shape
    for _ in range(steps):
        x = rng.standard_normal((2, C, H, Wd)).astype(dtype_)
        dy = rng.standard_normal((2, C, H, Wd)).astype(dtype_)
        grad = conv.gradient_factors(x, dy, layout)
        W = conv.update(W, grad, layout, lr=0.05, rank=1, method=method, rng=rng)
    assert W.dtype == np.dtype(CPLX[dtype_])
    if real:  # the self-conjugate blocks stayed exactly real
        assert np.all(W[: layout.n_real_blocks].imag == 0)
    err = float(conv.orthogonality_error(W, layout))
    assert err <= unitarity_bound(C, dtype_) * math.sqrt(steps)
    _check_isometry(W, layout, np.asarray, dtype_, rng, _norm_tol(layout, C, dtype_, steps))


def test_untied_half_plane_blocks_are_not_orthogonal():
    """The defect the tying prevents.

    Unitary but untied rfft2 blocks give a non-orthogonal real operator, which
    per-block checks cannot see and norm preservation does.
    """
    rng = np.random.default_rng(0)
    N, C = 4, 2
    blocks = haar_full(rng, (N, N // 2 + 1, C, C))  # every block unitary, nothing tied
    x = rng.standard_normal((50, C, N, N))
    xh = np.fft.rfft2(x)
    y = np.fft.irfft2(np.einsum("ijoc,mcij->moij", blocks, xh), s=(N, N))
    ratios = np.sqrt(np.sum(y**2, axis=(1, 2, 3)) / np.sum(x**2, axis=(1, 2, 3)))
    assert np.max(np.abs(ratios - 1)) > 1e3 * _norm_tol(conv.FourierLayout(N), C, "float64")
    # and our orthogonality_error sees complex self-conjugate blocks
    layout = conv.FourierLayout(N)
    W = conv.random_blocks(C, layout, dtype="complex128", rng=1)
    W[0] = haar_full(rng, (C, C))
    assert float(conv.orthogonality_error(W, layout)) > 0.1
    Wr = conv.random_blocks(C, layout, dtype="complex128", rng=1)
    assert float(conv.orthogonality_error(Wr, layout)) <= unitarity_bound(C, "float64")


def test_real_layer_symmetry(backend, dtype):
    """Stored real blocks give a real kernel whose full spectrum is conjugate-symmetric."""
    layout = conv.FourierLayout((4, 6))
    W = conv.random_blocks(3, layout, dtype=dtype, rng=8, xp=backend.xp, device=backend.device)
    K = conv.blocks_to_kernel(W, layout)
    assert_same_kind(K, W, backend.dtype(REAL[dtype]))
    full = conv.kernel_to_blocks(backend.xp.astype(K, backend.dtype(CPLX[dtype])),
                                 conv.FourierLayout((4, 6), real=False))
    assert_close(full, full_blocks(layout, W).reshape(-1, 3, 3),
                 compare_tol(3 * 24, dtype), what="full spectrum of the real kernel")


@pytest.mark.parametrize("real", [True, False], ids=["real", "complex"])
def test_adjoint_identity_rectangular(backend, real):
    rng = np.random.default_rng(3)
    layout = conv.FourierLayout((5, 4), real=real)
    Wb = conv.kernel_to_blocks(backend.asarray(rng.standard_normal((2, 3, 2, 2))), layout)
    x = rng.standard_normal((2, 3, 5, 4))
    y = rng.standard_normal((2, 2, 5, 4))
    lhs = np.vdot(y, to_numpy(conv.convolve(Wb, backend.asarray(x), layout)))
    rhs = np.vdot(to_numpy(conv.convolve_adjoint(Wb, backend.asarray(y), layout)), x)
    assert abs(lhs - rhs) <= compare_tol(3 * 20, "float64") * np.abs(x).sum() * np.abs(y).sum()


# ---------------------------------------------------------------------------
# gradient factors = dense per-frequency gradient = finite differences


@pytest.mark.parametrize("real", [True, False], ids=["real", "complex"])
@pytest.mark.parametrize("shape", [(4, 4), (5, 3)], ids=["even", "odd"])
def test_gradient_factors_match_dense_gradient(backend, dtype, real, shape):
    rng = np.random.default_rng(9)
    layout = conv.FourierLayout(shape, real=real)
    H, Wd = shape
    x = images(rng, (2, 3, 3, H, Wd), dtype)  # two leading batch axes
    dy = images(rng, (2, 3, 2, H, Wd), dtype)
    A, B = conv.gradient_factors(backend.asarray(x), backend.asarray(dy), layout)
    assert_same_kind(A, backend.asarray(x), backend.dtype(CPLX[dtype]))
    m = 6 * (2 if real and dtype.startswith("complex") else 1)
    assert A.shape == (layout.n_blocks, 2, m) and B.shape == (layout.n_blocks, 3, m)
    G = to_numpy(A) @ np.conj(np.swapaxes(to_numpy(B), -1, -2))
    Gd = dense_gradient(layout, x, dy)
    f = layout.frequencies
    expect = Gd[f[:, 0], f[:, 1]]
    tol = compare_tol(H * Wd, dtype) * np.abs(x).max() * np.abs(dy).max() * 6
    assert_close(G, expect, tol, what="A Bᴴ vs dense per-frequency gradient")
    if real:  # self-conjugate factors are real
        S = layout.n_real_blocks
        assert np.all(to_numpy(A)[:S].imag == 0) and np.all(to_numpy(B)[:S].imag == 0)


@pytest.mark.parametrize("real", [True, False], ids=["real", "complex"])
@pytest.mark.parametrize("xdtype", ["float64", "complex128"])
@pytest.mark.parametrize("shape", [4, (3, 5)], ids=["even", "odd"])
def test_gradient_factors_finite_differences(real, xdtype, shape):
    """dL/dt of L(W + t·dW) = Σ_r multiplicity_r Re tr(G_rᴴ dW_r), L = ½‖conv(x) − t‖²."""
    rng = np.random.default_rng(1)
    layout = conv.FourierLayout(shape, real=real)
    H, Wd = layout.shape
    C = 3
    W = conv.random_blocks(C, layout, dtype="complex128", rng=rng)
    x = images(rng, (4, C, H, Wd), xdtype)
    target = conv.convolve(W, images(rng, (4, C, H, Wd), xdtype), layout)

    def loss(Wt):
        r = conv.convolve(Wt, x, layout) - target
        return 0.5 * float(np.vdot(r, r).real)

    dy = conv.convolve(W, x, layout) - target
    A, B = conv.gradient_factors(x, dy, layout)
    G = A @ np.conj(np.swapaxes(B, -1, -2))
    dW = haar_full(rng, W.shape) * 0.3
    h = 1e-4  # L is quadratic in W: the central difference is exact up to rounding
    fd = (loss(W + h * dW) - loss(W - h * dW)) / (2 * h)
    mult = layout.multiplicity[:, None, None]
    analytic = float(np.sum(mult * (np.conj(G) * dW).real))
    tol = compare_tol(C * H * Wd, "float64") * loss(W) / h
    assert abs(fd - analytic) <= tol, (fd, analytic, tol)


# ---------------------------------------------------------------------------
# the projUNN update: one batched call, exact against dense references


@pytest.mark.parametrize("method", ["polar", "exp"])
@pytest.mark.parametrize("real", [True, False], ids=["real", "complex"])
def test_update_matches_dense_per_frequency(backend, dtype, method, real):
    """Batch 3, rank 3: the exact step; each block is the dense retraction of W_f − lr·G_f."""
    rng = np.random.default_rng(4)
    layout = conv.FourierLayout((4, 3), real=real)
    C, lr = 3, 0.05
    W = conv.random_blocks(C, layout, dtype=dtype, rng=rng, xp=backend.xp, device=backend.device)
    x = images(rng, (3, C, 4, 3), REAL[dtype])
    dy = images(rng, (3, C, 4, 3), REAL[dtype])
    grad = conv.gradient_factors(backend.asarray(x), backend.asarray(dy), layout)
    new = conv.update(W, grad, layout, lr=lr, rank=6, method=method)
    assert_same_kind(new, W)
    Wn = to_numpy(W).astype(np.complex128)
    G = dense_gradient(layout, x, dy)[layout.frequencies[:, 0], layout.frequencies[:, 1]]
    S = layout.n_real_blocks
    Wn[:S], G[:S] = Wn[:S].real, G[:S].real
    expect = reference_step(Wn, -lr * G, method)
    assert_close(new, expect, compare_tol(C, dtype), what=f"update({method}) vs dense")
    if real:
        assert np.all(to_numpy(new)[:S].imag == 0)
    assert float(to_numpy(conv.orthogonality_error(new, layout))) <= unitarity_bound(C, dtype)


@pytest.mark.parametrize("real", [True, False], ids=["real", "complex"])
def test_update_sketched_rank1_is_best_rank1_step(backend, real):
    """Batch 4 > rank 1: the step along the top singular pair of every G_f.

    The batched sketch is exact here: the factors have 4 <= 1 + oversample columns.
    """
    rng = np.random.default_rng(6)
    layout = conv.FourierLayout((4, 4), real=real)
    C, lr = 4, 0.1
    W = conv.random_blocks(C, layout, dtype="complex128", rng=rng, xp=backend.xp,
                           device=backend.device)
    x = rng.standard_normal((4, C, 4, 4))
    dy = rng.standard_normal((4, C, 4, 4))
    grad = conv.gradient_factors(backend.asarray(x), backend.asarray(dy), layout)
    new = conv.update(W, grad, layout, lr=lr, rank=1, rng=0)
    Wn = to_numpy(W)
    G = dense_gradient(layout, x, dy)[layout.frequencies[:, 0], layout.frequencies[:, 1]]
    S = layout.n_real_blocks
    Wn[:S], G[:S] = Wn[:S].real, G[:S].real
    u, s, vh = np.linalg.svd(G)
    G1 = s[:, :1, None] * u[:, :, :1] @ vh[:, :1, :]
    # the sketched G1 carries rounding eps·σ₁·(1 + 2σ₁/(σ₁ − σ₂)) (Wedin: the top pair
    # turns by rounding/gap), the step lr times that; the polar factor of M = W − lr·G1
    # amplifies a perturbation of M by 1/σ_min(M)
    trunc = 1 + 2 * s[:, 0] / (s[:, 0] - s[:, 1])
    smin = np.linalg.svd(Wn - lr * G1, compute_uv=False)[:, -1]
    cond = float(np.max((1 + lr * s[:, 0] * trunc) / smin))
    assert_close(new, reference_step(Wn, -lr * G1), compare_tol(C, "float64", condition=cond),
                 what="rank-1 sketched update vs dense")


def test_update_is_one_batched_call_per_kind(monkeypatch):
    """No Python loop over frequencies: the number of retract calls does not grow with F."""
    calls = []
    real_retract = conv.retract

    def counting(U, *args, **kwargs):
        calls.append(U.shape)
        return real_retract(U, *args, **kwargs)

    monkeypatch.setattr(conv, "retract", counting)
    rng = np.random.default_rng(0)
    for N in (4, 16):
        for real in (True, False):
            layout = conv.FourierLayout(N, real=real)
            W = conv.identity_blocks(2, layout, dtype="complex64")
            grad = (rng.standard_normal((layout.n_blocks, 2, 3)).astype(np.complex64),
                    rng.standard_normal((layout.n_blocks, 2, 3)).astype(np.complex64))
            calls.clear()
            conv.update(W, grad, layout, lr=0.1, rank=1, rng=0)
            S = layout.n_real_blocks
            expect = [(S, 2, 2), (layout.n_blocks - S, 2, 2)] if real else [W.shape]
            assert calls == expect


def test_update_dense_gradient_out_and_cayley(backend):
    rng = np.random.default_rng(2)
    layout = conv.FourierLayout(4)
    W = conv.random_blocks(3, layout, dtype="complex128", rng=rng, xp=backend.xp,
                           device=backend.device)
    G = rng.standard_normal((layout.n_blocks, 3, 3)) + 1j * rng.standard_normal(
        (layout.n_blocks, 3, 3))
    new = conv.update(W, backend.asarray(G), layout, lr=0.01, rank=3, method="cayley", rng=0)
    Wn, Gr = to_numpy(W), G.copy()
    Gr[:4] = Gr[:4].real
    Wn[:4] = Wn[:4].real
    expect = reference_step(Wn, -0.01 * Gr, "cayley")
    assert_close(new, expect, compare_tol(3, "float64"), what="cayley update with dense G")
    # rank above C with factors of more columns: sketched at rank C, which is exact here
    A = rng.standard_normal((layout.n_blocks, 3, 5)) + 0j
    B = rng.standard_normal((layout.n_blocks, 3, 5)) + 0j
    G2 = A @ np.conj(np.swapaxes(B, 1, 2))
    via_factors = conv.update(W, (backend.asarray(A), backend.asarray(B)), layout, lr=0.01,
                              rank=4, rng=0)
    via_dense = conv.update(W, backend.asarray(G2), layout, lr=0.01, rank=4)
    assert_close(via_factors, via_dense, compare_tol(3 * 5, "float64"),
                 what="update from factors (sketched) vs from the dense gradient")
    out = backend.xp.asarray(W, copy=True)
    res = conv.update(W, backend.asarray(G), layout, lr=0.01, rank=3, method="cayley", rng=0,
                      out=out)
    assert res is out
    assert_close(out, new, 0.0)


# ---------------------------------------------------------------------------
# property test


@given(H=st.integers(1, 6), W=st.integers(1, 6), C=st.integers(1, 4), real=st.booleans(),
       dtype=st.sampled_from(["float32", "float64", "complex64", "complex128"]),
       seed=st.integers(0, 2**32 - 1))
def test_property_isometry_and_round_trip(H, W, C, real, dtype, seed):
    rng = np.random.default_rng(seed)
    layout = conv.FourierLayout((H, W), real=real)
    Wb = conv.random_blocks(C, layout, dtype=dtype, rng=rng)
    x = images(rng, (2, C, H, W), dtype)
    y = conv.convolve(Wb, x, layout)
    tol = _norm_tol(layout, C, dtype)
    assert abs(np.linalg.norm(y) - np.linalg.norm(x)) <= tol * np.linalg.norm(x)
    K = conv.blocks_to_kernel(Wb, layout)
    assert_close(conv.kernel_to_blocks(K, layout), Wb, compare_tol(C * H * W, dtype),
                 what="kernel_to_blocks(blocks_to_kernel(W))")
    grad = conv.gradient_factors(x, images(rng, (2, C, H, W), dtype), layout)
    new = conv.update(Wb, grad, layout, lr=0.1, rank=1, rng=rng)
    assert float(conv.orthogonality_error(new, layout)) <= unitarity_bound(C, dtype)


# ---------------------------------------------------------------------------
# validation and dispatch


def test_validation_messages():
    layout = conv.FourierLayout(4)
    W = conv.identity_blocks(2, layout, dtype="complex128")
    x = np.zeros((1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"W must have shape \(F, C_out, C_in\) with F = 10"):
        conv.convolve(W[:5], x, layout)
    with pytest.raises(TypeError, match="W must have a complex dtype"):
        conv.convolve(W.real, x, layout)
    with pytest.raises(ValueError,
                       match=r"x must have shape \(\.\.\., 2, 4, 4\).*got \(1, 3, 4, 4\)"):
        conv.convolve(W, np.zeros((1, 3, 4, 4)), layout)
    with pytest.raises(TypeError, match="layout must be a FourierLayout"):
        conv.convolve(W, x, 4)
    with pytest.raises(TypeError, match="K must be real"):
        conv.kernel_to_blocks(np.zeros((2, 2, 3, 3), complex), layout)
    with pytest.raises(ValueError, match=r"K must have shape .* h <= 4"):
        conv.kernel_to_blocks(np.zeros((2, 2, 5, 3)), layout)
    with pytest.raises(ValueError, match="method must be"):
        conv.update(W, (x[0, :1], x[0, :1]), layout, lr=0.1, method="svd")
    with pytest.raises(ValueError, match="lr must be a finite"):
        conv.update(W, np.zeros_like(W), layout, lr=float("nan"))
    with pytest.raises(ValueError, match="rank must be at least 1, got 0"):
        conv.update(W, np.zeros_like(W), layout, lr=0.1, rank=0)
    with pytest.raises(TypeError, match="rank must be an integer, got float 1.5"):
        conv.update(W, np.zeros_like(W), layout, lr=0.1, rank=1.5)
    with pytest.raises(TypeError, match="rank must be an integer, got True"):
        conv.update(W, np.zeros_like(W), layout, lr=0.1, rank=True)
    for pair in [(W,), (W, W, W)]:
        with pytest.raises(ValueError, match="grad must be an array or a pair"):
            conv.update(W, pair, layout, lr=0.1)
    with pytest.raises(ValueError, match="channels must be at least 0, got -1"):
        conv.identity_blocks(-1, layout, dtype="complex64")
    with pytest.raises(TypeError, match="channels must be an integer"):
        conv.random_blocks(2.0, layout, dtype="complex64")
    with pytest.raises(ValueError, match=r"A must have shape \(F, C, m\)"):
        conv.update(W, (np.zeros((9, 2, 1)), np.zeros((10, 2, 1))), layout, lr=0.1)
    with pytest.raises(ValueError, match="grad contains NaN"):
        conv.update(W, np.full(W.shape, np.nan), layout, lr=0.1)
    with pytest.raises(ValueError, match="same leading axes"):
        conv.gradient_factors(np.zeros((2, 2, 4, 4)), np.zeros((3, 2, 4, 4)), layout)


def test_mixed_namespaces_raise():
    torch = pytest.importorskip("torch")
    layout = conv.FourierLayout(4)
    W = conv.identity_blocks(2, layout, dtype="complex128")
    with pytest.raises(TypeError, match="one array library"):
        conv.convolve(W, torch.zeros((1, 2, 4, 4), dtype=torch.float64), layout)


def test_example_script_trains_and_stays_orthogonal(capsys):
    """docs/examples/orthogonal_conv.py, shrunk: the loss falls and every layer stays orthogonal."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / "orthogonal_conv.py"
    spec = importlib.util.spec_from_file_location("orthogonal_conv_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    net = example.main(["--grid", "8", "--channels", "4", "--layers", "2", "--epochs", "4",
                        "--train", "256", "--test", "128", "--batch", "32", "--noise", "1"])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " loss " in ln]
    losses = [float(ln.split(" loss ")[1].split()[0]) for ln in lines]
    assert len(losses) == 4 and losses[-1] < losses[0]
    steps = 4 * (256 // 32)
    for W in net.W:
        err = float(conv.orthogonality_error(W, net.layout))
        assert err <= unitarity_bound(4, "float64") * math.sqrt(steps)
