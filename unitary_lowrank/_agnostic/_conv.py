"""Array-agnostic bodies of the Fourier-domain convolutions in :mod:`unitary_lowrank.conv`.

Written only against the Array-API namespace `xp` (no NumPy import, no in-place
writes, no value-dependent Python branches; the only branches are on static
properties of the layout: real or complex, number of self-conjugate blocks).

A circular convolution with ``C_in`` input and ``C_out`` output channels on an
``H × W`` grid is block diagonal in the 2-D DFT (``docs/theory.md``,
convolutions)::

    ŷ_f = W_f x̂_f          one C_out × C_in block W_f per frequency f.

Complex (unitary) layers store all ``H·W`` blocks in ``fft2`` order. Real
(orthogonal) layers store one block per conjugate pair ``{f, −f}`` of
frequencies, the ``S`` self-conjugate ones (real blocks) first; the blocks of
the ``rfft2`` half-plane are gathered from them with an index array and a
"take the conjugate" mask that the public wrapper builds on the host and moves
to the device once.  Every routine here works on "frequency-major" stacks
``(F, C, m)``: frequencies are the batch axis of a batched matmul, so there is
no loop over frequencies anywhere.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._array_api import device_of, herm

__all__ = [
    "blocks_to_kernel",
    "convolve",
    "effective_blocks",
    "expand_blocks",
    "gradient_factors",
    "kernel_to_blocks",
    "real_projection",
]

_AXES = (-2, -1)


def effective_blocks(W: Any, n_real: int, xp: ModuleType) -> Any:
    """The stored blocks as the operator uses them: the first `n_real` replaced by their real part.

    The self-conjugate frequencies of a real layer see only real data, so the
    real operator actually applied there is ``Re W_s``; making that explicit
    keeps the operator exactly real whatever the stored imaginary part is.
    """
    if n_real == 0:
        return W
    head = xp.astype(xp.real(W[:n_real, ...]), W.dtype)
    return xp.concat([head, W[n_real:, ...]], axis=0)


def expand_blocks(W: Any, n_real: int, index: Any, conj: Any, xp: ModuleType) -> Any:
    """Blocks of every frequency of the ``rfft2`` half-plane from the stored ones.

    ``half[h] = conj(W[index[h]])`` where ``conj[h]`` else ``W[index[h]]``, with
    the self-conjugate blocks made real (:func:`effective_blocks`).
    """
    T = xp.take(effective_blocks(W, n_real, xp), index, axis=0)
    return xp.where(conj[:, None, None], xp.conj(T), T)


def _freq_major(Xh: Any, xp: ModuleType) -> Any:
    """``(m, C, H, W')`` spectra -> ``(H·W', C, m)`` stack, one C×m slice per frequency."""
    m, C, H, Wp = Xh.shape
    return xp.permute_dims(xp.reshape(Xh, (m, C, H * Wp)), (2, 1, 0))


def _image_major(Yf: Any, H: int, Wp: int, xp: ModuleType) -> Any:
    """Inverse of :func:`_freq_major`: ``(H·W', C, m)`` -> ``(m, C, H, W')``."""
    _, C, m = Yf.shape
    return xp.reshape(xp.permute_dims(Yf, (2, 1, 0)), (m, C, H, Wp))


def convolve(Wh: Any, x: Any, shape: tuple[int, int], real: bool, adjoint: bool,
             xp: ModuleType) -> Any:
    """``ifft2(W_f fft2(x)_f)`` (or with ``W_fᴴ``) for images ``x`` of shape (m, C, H, W).

    `Wh` holds one block per transformed frequency: all ``H·W`` of them for
    complex layers (`x` complex, ``fftn``), the ``H·(W//2+1)`` of the half-plane
    for real layers (`x` real, ``rfftn``/``irfftn``). The DFT normalisation
    cancels between the forward and inverse transforms.
    """
    if real:
        Xh = xp.fft.rfftn(x, axes=_AXES)
    else:
        Xh = xp.fft.fftn(x, axes=_AXES)
    H, Wp = Xh.shape[-2:]
    M = herm(Wh, xp) if adjoint else Wh
    Yh = _image_major(M @ _freq_major(Xh, xp), H, Wp, xp)
    if real:
        return xp.fft.irfftn(Yh, s=shape, axes=_AXES)
    return xp.fft.ifftn(Yh, axes=_AXES)


def kernel_to_blocks(K: Any, shape: tuple[int, int], real: bool, n_real: int, orbit: Any,
                     xp: ModuleType) -> Any:
    """Frequency blocks (F, C_out, C_in) of a spatial kernel (C_out, C_in, h, w).

    The kernel is zero-padded to the grid and transformed with the unnormalised
    DFT, ``W_f = Σ_{a,b} K[:, :, a, b] e^{−2πi(f₁a/H + f₂b/W)}``; for real layers
    the half-plane positions `orbit` of the stored blocks are picked out.
    """
    Co, Ci, h, w = K.shape
    H, Wd = shape
    dev = device_of(K)
    K = xp.concat([K, xp.zeros((Co, Ci, H - h, w), dtype=K.dtype, device=dev)], axis=-2)
    K = xp.concat([K, xp.zeros((Co, Ci, H, Wd - w), dtype=K.dtype, device=dev)], axis=-1)
    Kh = xp.fft.rfftn(K, axes=_AXES) if real else xp.fft.fftn(K, axes=_AXES)
    Kh = xp.reshape(Kh, (Co, Ci, Kh.shape[-2] * Kh.shape[-1]))
    if real:
        Kh = xp.take(Kh, orbit, axis=-1)
    Wb = xp.permute_dims(Kh, (2, 0, 1))
    # The transform of a real kernel is real at the self-conjugate frequencies;
    # drop the rounding-level imaginary part there.
    return effective_blocks(Wb, n_real, xp)


def blocks_to_kernel(Wh: Any, shape: tuple[int, int], real: bool, xp: ModuleType) -> Any:
    """Spatial kernel (C_out, C_in, H, W) from the blocks of every transformed frequency."""
    H, _ = shape
    Fh, Co, Ci = Wh.shape
    Kh = xp.reshape(xp.permute_dims(Wh, (1, 2, 0)), (Co, Ci, H, Fh // H))
    if real:
        return xp.fft.irfftn(Kh, s=shape, axes=_AXES)
    return xp.fft.ifftn(Kh, axes=_AXES)


def gradient_factors(x: Any, dy: Any, real: bool, n_real: int, orbit: Any,
                     xp: ModuleType) -> tuple[Any, Any]:
    """Per-frequency factors ``(δ̂_f, x̂_f)`` of the gradient ``G_f = δ̂_f x̂_fᴴ``.

    `x` (m, C_in, H, W) is the layer's input and `dy` (m, C_out, H, W) the
    gradient of the loss with respect to its output; both are real for real
    layers. The orthonormal DFT makes ``G_f`` the gradient with respect to the
    operator in the Frobenius metric: ``dL = Re Σ_f tr(G_fᴴ dW_f)`` over all
    ``H·W`` frequencies. For real data the spectrum is conjugate symmetric, so
    the half-plane value at a stored frequency is already the gradient
    symmetrised over its conjugate pair, ``(G_f + conj(G_{−f}))/2``.
    """
    if real:
        Xh = xp.fft.rfftn(x, axes=_AXES, norm="ortho")
        Dh = xp.fft.rfftn(dy, axes=_AXES, norm="ortho")
    else:
        Xh = xp.fft.fftn(x, axes=_AXES, norm="ortho")
        Dh = xp.fft.fftn(dy, axes=_AXES, norm="ortho")
    B = _freq_major(Xh, xp)
    A = _freq_major(Dh, xp)
    if real:
        A = effective_blocks(xp.take(A, orbit, axis=0), n_real, xp)
        B = effective_blocks(xp.take(B, orbit, axis=0), n_real, xp)
    return A, B


def real_projection(grad: Any, xp: ModuleType) -> Any:
    """``Re G`` of a dense gradient, or exact real factors of ``Re(A Bᴴ)`` for a pair.

    ``Re(A Bᴴ) = Re A (Re B)ᵀ + Im A (Im B)ᵀ``: the gradient with respect to a
    real block, as factors with twice the columns.
    """
    if isinstance(grad, tuple):
        A, B = grad
        return (xp.concat([xp.real(A), xp.imag(A)], axis=-1),
                xp.concat([xp.real(B), xp.imag(B)], axis=-1))
    return xp.real(grad)
