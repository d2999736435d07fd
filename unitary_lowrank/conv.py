r"""Orthogonal and unitary circular convolutions in the Fourier domain (projUNN for CNNs).

A circular convolution with ``C_in`` input and ``C_out`` output channels on an
``H × W`` grid,

.. math:: y_o[i, j] = \sum_c \sum_{a, b} K[o, c, a, b]\, x_c[(i - a) \bmod H, (j - b) \bmod W],

is block diagonal in the 2-D DFT: ``ŷ_f = W_f x̂_f`` with one
``C_out × C_in`` block ``W_f`` per frequency ``f``. It is unitary exactly when
every block is (``docs/theory.md``, convolutions), so projUNN trains it by
updating all blocks at once as a batch of small unitary matrices.

- :class:`FourierLayout`: which frequencies are stored, for a complex (unitary,
  ``fft2``) or a real (orthogonal, ``rfft2``) layer.
- :func:`kernel_to_blocks`, :func:`blocks_to_kernel`: spatial kernel ↔ blocks.
- :func:`convolve`, :func:`convolve_adjoint`: apply the layer and its adjoint
  to a batch of images through the FFT of the input's namespace.
- :func:`identity_blocks`, :func:`random_blocks`: initialisation.
- :func:`gradient_factors`: the per-frequency gradient ``Σ_batch δ̂_f x̂_fᴴ``
  as factors (rank ≤ batch); :func:`update`: the projUNN step of every
  frequency in one batched call (batched sketch, then batched
  :func:`~unitary_lowrank.project` or :func:`~unitary_lowrank.transport`).
- :func:`orthogonality_error`: ``‖OᴴO − I‖₂`` of the operator actually applied.

Real layers keep the real operator *exactly* orthogonal: a conjugate pair of
frequencies ``{f, −f}`` shares one stored block (the partner uses its
conjugate, and the gradient is symmetrised over the pair), and the
self-conjugate frequencies (index 0 or ``N/2`` on each axis) hold real
orthogonal blocks updated with real factors. Per-block unitarity alone would
not guarantee this.

Examples
--------
>>> import numpy as np
>>> from unitary_lowrank import conv
>>> layout = conv.FourierLayout(8)                       # real 8×8 layer
>>> W = conv.random_blocks(3, layout, dtype="float64", rng=0)
>>> x = np.random.default_rng(1).standard_normal((2, 3, 8, 8))
>>> y = conv.convolve(W, x, layout)
>>> y.dtype, bool(np.isclose(np.linalg.norm(y), np.linalg.norm(x)))
(dtype('float64'), True)
"""

from __future__ import annotations

import math
import operator
from functools import cached_property
from types import ModuleType
from typing import Any

import numpy as np

from ._agnostic import _conv
from ._array_api import device_of, dtype_name, get_namespace, is_complex, real_dtype
from ._random import as_generator, haar_samples, resolve_dtype
from ._validation import (
    as_int,
    check_dtype,
    check_finite,
    check_lr,
    check_out,
    check_same_device,
)
from .dense import unitarity_error
from .methods import METHODS
from .typing import Array, DType, Method, Namespace, Sampler, Seed
from .updates import retract

__all__ = [
    "FourierLayout",
    "blocks_to_kernel",
    "convolve",
    "convolve_adjoint",
    "gradient_factors",
    "identity_blocks",
    "kernel_to_blocks",
    "orthogonality_error",
    "random_blocks",
    "update",
]



class FourierLayout:
    r"""Frequencies of a circular convolution on an ``H × W`` grid and how its blocks are stored.

    Parameters
    ----------
    shape : int or tuple of two ints
        Grid size ``N`` (square) or ``(H, W)``.
    real : bool, default: True
        True: a real (orthogonal) layer, applied with ``rfft2``; one block per
        conjugate pair ``{f, −f}`` is stored, the self-conjugate frequencies
        first (their blocks are real). False: a complex (unitary) layer with
        all ``H·W`` blocks in ``fft2`` order (``f = f₁·W + f₂``).

    Attributes
    ----------
    shape : tuple of int
        ``(H, W)``.
    real : bool
        Whether the layer is real.
    n_blocks : int
        Number ``F`` of stored blocks: ``H·W`` (complex), or the number of
        conjugate pairs and self-conjugate frequencies (real; ``H·W/2 + 2`` for
        even ``H = W``).
    n_real_blocks : int
        Number of self-conjugate frequencies (1, 2 or 4 for real layers, 0 for
        complex ones); they are the first blocks of the stack.
    frequencies : numpy.ndarray, shape (F, 2)
        Frequency ``(f₁, f₂)`` of each stored block.
    multiplicity : numpy.ndarray, shape (F,)
        How many of the ``H·W`` frequencies each stored block stands for (2 for
        a conjugate pair, else 1): the derivative of a loss along a change
        ``dW`` of the stored blocks is ``Σ_f multiplicity_f · Re tr(G_fᴴ dW_f)``.

    Raises
    ------
    ValueError
        If a grid size is not a positive integer.

    See Also
    --------
    convolve : Apply the layer.

    Examples
    --------
    >>> from unitary_lowrank.conv import FourierLayout
    >>> layout = FourierLayout(4)
    >>> layout.n_blocks, layout.n_real_blocks
    (10, 4)
    >>> layout.frequencies[:4].tolist()
    [[0, 0], [0, 2], [2, 0], [2, 2]]
    >>> FourierLayout((3, 5), real=False).n_blocks
    15
    """

    def __init__(self, shape: int | tuple[int, int], *, real: bool = True) -> None:
        dims = (shape, shape) if isinstance(shape, int | np.integer) else tuple(shape)
        try:
            dims = tuple(operator.index(d) for d in dims)
        except TypeError:
            raise ValueError(f"shape must be an int N or a pair (H, W), got {shape!r}") from None
        if len(dims) != 2 or min(dims) < 1:
            raise ValueError(f"shape must be an int N or a pair (H, W) of positive sizes, "
                             f"got {shape!r}")
        self.shape: tuple[int, int] = dims
        self.real: bool = bool(real)

    def __repr__(self) -> str:
        """``FourierLayout((H, W), real=...)``."""
        return f"FourierLayout({self.shape}, real={self.real})"

    def __eq__(self, other: object) -> bool:
        """Layouts are equal when their grids and kinds (real or complex) are."""
        if not isinstance(other, FourierLayout):
            return NotImplemented
        return (self.shape, self.real) == (other.shape, other.real)

    def __hash__(self) -> int:
        """Hash of the grid and the kind, consistent with ``==``."""
        return hash((self.shape, self.real))

    @property
    def _half_width(self) -> int:
        W = self.shape[1]
        return W // 2 + 1 if self.real else W

    @cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """``(orbit, index, conj, n_real)`` on the host.

        ``orbit[r]``: half-plane position (``f₁·W' + f₂``) of stored block r;
        ``index[h]``, ``conj[h]``: stored block of half-plane position h and
        whether it enters conjugated.
        """
        H, W = self.shape
        Wp = self._half_width
        f1, f2 = np.divmod(np.arange(H * Wp), Wp)
        if not self.real:
            pos = np.arange(H * W)
            return pos, pos, np.zeros(H * W, bool), 0
        # Partner -f of a half-plane frequency; it lies in the half-plane only
        # on the columns f₂ = 0 and f₂ = W/2 (W even).
        g1, g2 = (-f1) % H, (-f2) % W
        inside = g2 < Wp
        partner = np.where(inside, g1 * Wp + np.minimum(g2, Wp - 1), -1)
        pos = np.arange(H * Wp)
        self_conj = partner == pos
        rep = np.where(inside, np.minimum(pos, partner), pos)
        reps = np.unique(rep)
        orbit = np.concatenate([reps[self_conj[reps]], reps[~self_conj[reps]]])
        slot = np.empty(H * Wp, np.int64)
        slot[orbit] = np.arange(orbit.size)
        return orbit, slot[rep], rep != pos, int(self_conj.sum())

    @property
    def n_blocks(self) -> int:
        """Number of stored blocks."""
        return int(self._tables[0].size)

    @property
    def n_real_blocks(self) -> int:
        """Number of self-conjugate (real) blocks, stored first."""
        return self._tables[3]

    @property
    def frequencies(self) -> np.ndarray:
        """``(f₁, f₂)`` of each stored block, shape (F, 2)."""
        f1, f2 = np.divmod(self._tables[0], self._half_width)
        return np.stack([f1, f2], axis=-1)

    @property
    def multiplicity(self) -> np.ndarray:
        """Number of DFT frequencies each stored block stands for, shape (F,)."""
        m = np.ones(self.n_blocks, np.int64)
        if self.real:
            m[self.n_real_blocks:] = 2
        return m

    def _on(self, xp: ModuleType, like: Any) -> tuple[Any, Any, Any]:
        """Index tables on the device of `like`, moved there once per namespace and device.

        They are built on the host from the layout alone (no data involved), so
        this is a host-to-device copy of a few integers, never the reverse.
        """
        dev = device_of(like)
        key = (xp.__name__, repr(dev))
        cache = self.__dict__.setdefault("_device_tables", {})
        if key not in cache:
            orbit, index, conj, _ = self._tables
            cache[key] = (xp.asarray(orbit, dtype=xp.int64, device=dev),
                          xp.asarray(index, dtype=xp.int64, device=dev),
                          xp.asarray(conj, dtype=xp.bool, device=dev))
        return cache[key]


# ---------------------------------------------------------------------------
# validation helpers


def _check_layout(layout: Any) -> None:
    if not isinstance(layout, FourierLayout):
        raise TypeError(f"layout must be a FourierLayout, got {type(layout).__name__}")


def _complex_of(xp: ModuleType, dtype: Any) -> Any:
    name = dtype_name(xp, dtype)
    return {"float32": xp.complex64, "float64": xp.complex128}.get(name, dtype)


def _check_blocks(W: Any, layout: FourierLayout, xp: ModuleType, *, square: bool = False,
                  name: str = "W") -> None:
    check_dtype(W, name, xp)
    if not is_complex(xp, W.dtype):
        raise TypeError(f"{name} must have a complex dtype (complex64 or complex128): the "
                        f"blocks of every layer are complex, got {dtype_name(xp, W.dtype)}")
    F = layout.n_blocks
    if W.ndim != 3 or W.shape[0] != F:
        raise ValueError(f"{name} must have shape (F, C_out, C_in) with F = {F} blocks for "
                         f"{layout!r}, got {tuple(W.shape)}")
    if square and W.shape[1] != W.shape[2]:
        raise ValueError(f"{name} must hold square blocks (F, C, C), got {tuple(W.shape)}")


def _check_images(x: Any, name: str, layout: FourierLayout, channels: int, role: str,
                  xp: ModuleType) -> None:
    check_dtype(x, name, xp)
    if x.ndim < 3 or tuple(x.shape[-2:]) != layout.shape or x.shape[-3] != channels:
        raise ValueError(f"{name} must have shape (..., {channels}, {layout.shape[0]}, "
                         f"{layout.shape[1]}) ({role} channels on the layout's grid), "
                         f"got {tuple(x.shape)}")


def _flatten(x: Any, xp: ModuleType) -> tuple[Any, tuple[int, ...]]:
    lead = tuple(x.shape[:-3])
    return xp.reshape(x, (math.prod(lead), *x.shape[-3:])), lead


# ---------------------------------------------------------------------------
# conversion


def kernel_to_blocks(K: Array, layout: FourierLayout, /, *, xp: Namespace | None = None) -> Array:
    r"""Frequency blocks of a spatial kernel placed on the layout's grid.

    Parameters
    ----------
    K : array, shape (C_out, C_in, h, w)
        Spatial kernel, ``h <= H``, ``w <= W``; tap ``K[:, :, a, b]`` acts at
        offset ``(a, b)`` (see the module docstring). Real for real layouts.
    layout : FourierLayout
        Grid and storage of the layer.
    xp : array namespace, optional
        Namespace of `K`; inferred by default.

    Returns
    -------
    array, shape (F, C_out, C_in)
        ``W_f = Σ_{a,b} K[:, :, a, b] exp(−2πi(f₁a/H + f₂b/W))`` for the stored
        frequencies, complex, in the namespace, device and precision of `K`.

    Raises
    ------
    TypeError
        If `K` is not floating, or complex for a real layout.
    ValueError
        If `K` is not 4-D or larger than the grid.

    See Also
    --------
    blocks_to_kernel : The inverse.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank import conv
    >>> layout = conv.FourierLayout(6)
    >>> K = np.zeros((2, 2, 3, 3)); K[:, :, 0, 0] = np.eye(2)   # identity
    >>> W = conv.kernel_to_blocks(K, layout)
    >>> W.shape, bool(np.allclose(W, np.eye(2)))
    ((20, 2, 2), True)
    """
    _check_layout(layout)
    xp = get_namespace(("K", K), xp=xp)
    check_dtype(K, "K", xp)
    H, Wd = layout.shape
    if K.ndim != 4 or K.shape[2] > H or K.shape[3] > Wd:
        raise ValueError(f"K must have shape (C_out, C_in, h, w) with h <= {H}, w <= {Wd}, "
                         f"got {tuple(K.shape)}")
    if layout.real and is_complex(xp, K.dtype):
        raise TypeError(f"K must be real for a real layout, got {dtype_name(xp, K.dtype)}")
    if not layout.real:
        K = xp.astype(K, _complex_of(xp, K.dtype))
    orbit, _, _ = layout._on(xp, K)
    return _conv.kernel_to_blocks(K, layout.shape, layout.real, layout.n_real_blocks, orbit, xp)


def blocks_to_kernel(W: Array, layout: FourierLayout, /, *, xp: Namespace | None = None) -> Array:
    r"""Spatial kernel of the layer with the given frequency blocks.

    Parameters
    ----------
    W : array, shape (F, C_out, C_in)
        Complex frequency blocks.
    layout : FourierLayout
        Grid and storage of the layer.
    xp : array namespace, optional
        Namespace of `W`; inferred by default.

    Returns
    -------
    array, shape (C_out, C_in, H, W)
        The kernel on the whole grid (an orthogonal convolution generally has
        full support): real for real layouts (of `W`'s precision), complex for
        complex ones. The imaginary parts of the self-conjugate blocks of a real
        layout are ignored, as in :func:`convolve`.

    Raises
    ------
    TypeError
        If `W` is not complex.
    ValueError
        If `W` does not have ``layout.n_blocks`` blocks.

    See Also
    --------
    kernel_to_blocks : The inverse.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank import conv
    >>> layout = conv.FourierLayout((4, 5))
    >>> W = conv.random_blocks(2, layout, dtype="float64", rng=0)
    >>> K = conv.blocks_to_kernel(W, layout)
    >>> K.shape, K.dtype
    ((2, 2, 4, 5), dtype('float64'))
    >>> bool(np.allclose(conv.kernel_to_blocks(K, layout), W))
    True
    """
    _check_layout(layout)
    xp = get_namespace(("W", W), xp=xp)
    _check_blocks(W, layout, xp)
    if layout.real:
        _, index, conj = layout._on(xp, W)
        W = _conv.expand_blocks(W, layout.n_real_blocks, index, conj, xp)
    return _conv.blocks_to_kernel(W, layout.shape, layout.real, xp)


# ---------------------------------------------------------------------------
# applying the layer


def _convolve(W, x, layout, adjoint, xp):
    _check_layout(layout)
    name = "y" if adjoint else "x"  # the argument's name in convolve_adjoint / convolve
    xp = get_namespace(("W", W), (name, x), xp=xp)
    _check_blocks(W, layout, xp)
    Co, Ci = W.shape[1:]
    _check_images(x, name, layout, Co if adjoint else Ci, "output" if adjoint else "input", xp)
    check_same_device([("W", W), (name, x)])
    ct = _complex_of(xp, xp.result_type(W.dtype, x.dtype))
    W = xp.astype(W, ct)
    xf, lead = _flatten(x, xp)
    m = xf.shape[0]
    if layout.real:
        _, index, conj = layout._on(xp, W)
        Wh = _conv.expand_blocks(W, layout.n_real_blocks, index, conj, xp)
        rt = real_dtype(xp, ct)
        if is_complex(xp, x.dtype):
            # The real operator acts on the real and imaginary parts separately.
            parts = xp.concat([xp.real(xf), xp.imag(xf)], axis=0)
            yp = _conv.convolve(Wh, xp.astype(parts, rt), layout.shape, True, adjoint, xp)
            y = xp.astype(yp[:m, ...], ct) + xp.astype(yp[m:, ...], ct) * 1j
        else:
            y = _conv.convolve(Wh, xp.astype(xf, rt), layout.shape, True, adjoint, xp)
    else:
        y = _conv.convolve(W, xp.astype(xf, ct), layout.shape, False, adjoint, xp)
    return xp.reshape(y, (*lead, *y.shape[1:]))


def convolve(W: Array, x: Array, layout: FourierLayout, /, *, xp: Namespace | None = None) -> Array:
    r"""Apply the circular convolution with frequency blocks `W` to a batch of images.

    Computes ``ifft2(W_f · fft2(x)_f)`` with the FFT of the input's namespace
    (``rfftn``/``irfftn`` for real layouts), in :math:`O(m C N^2 \log N + m C^2 N^2)`
    for `m` images.

    Parameters
    ----------
    W : array, shape (F, C_out, C_in)
        Complex frequency blocks of the layer.
    x : array, shape (..., C_in, H, W)
        Images; leading axes are batch axes. For a real layout a real `x` gives
        a real result and a complex `x` is treated as ``Re x + i Im x``.
    layout : FourierLayout
        Grid and storage of the layer.
    xp : array namespace, optional
        Namespace of the inputs; inferred by default.

    Returns
    -------
    array, shape (..., C_out, H, W)
        The convolved images, in the namespace and on the device of the inputs;
        real for a real layout and real `x`, complex otherwise, in the
        precision of ``result_type(W, x)``.

    Raises
    ------
    TypeError
        If an input is not floating, `W` is not complex, or the inputs come from
        different libraries.
    ValueError
        If the shapes do not match the layout, or the inputs are on different
        devices.

    See Also
    --------
    convolve_adjoint : The adjoint (the inverse, for unitary blocks).
    blocks_to_kernel : The spatial kernel of the same layer.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank import conv
    >>> layout = conv.FourierLayout(5, real=False)
    >>> W = conv.random_blocks(3, layout, dtype="complex128", rng=0)
    >>> x = np.random.default_rng(1).standard_normal((4, 3, 5, 5))
    >>> y = conv.convolve(W, x, layout)
    >>> bool(np.allclose(conv.convolve_adjoint(W, y, layout), x))
    True
    """
    return _convolve(W, x, layout, False, xp)


def convolve_adjoint(W: Array, y: Array, layout: FourierLayout, /, *,
                     xp: Namespace | None = None) -> Array:
    r"""Apply the adjoint of the convolution with frequency blocks `W` (``W_fᴴ`` per frequency).

    Parameters
    ----------
    W : array, shape (F, C_out, C_in)
        Complex frequency blocks of the layer.
    y : array, shape (..., C_out, H, W)
        Images in the layer's output space; leading axes are batch axes.
    layout : FourierLayout
        Grid and storage of the layer.
    xp : array namespace, optional
        Namespace of the inputs; inferred by default.

    Returns
    -------
    array, shape (..., C_in, H, W)
        ``ifft2(W_fᴴ · fft2(y)_f)``: the inverse of :func:`convolve` when the
        blocks are unitary, and the gradient with respect to the layer's input
        in back-propagation. Real for a real layout and real `y`.

    Raises
    ------
    TypeError
        If an input is not floating, `W` is not complex, or the inputs come from
        different libraries.
    ValueError
        If the shapes do not match the layout, or the inputs are on different
        devices.

    See Also
    --------
    convolve : The forward operator.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank import conv
    >>> layout = conv.FourierLayout(6)
    >>> W = conv.random_blocks(2, layout, dtype="float64", rng=0)
    >>> rng = np.random.default_rng(1)
    >>> x, y = rng.standard_normal((2, 2, 6, 6)), rng.standard_normal((2, 2, 6, 6))
    >>> lhs = np.vdot(y, conv.convolve(W, x, layout))
    >>> rhs = np.vdot(conv.convolve_adjoint(W, y, layout), x)
    >>> bool(np.isclose(lhs, rhs))
    True
    """
    return _convolve(W, y, layout, True, xp)


# ---------------------------------------------------------------------------
# initialisation


def _block_dtype(dtype: Any, xp: ModuleType | None) -> tuple[str, ModuleType]:
    name, xp = resolve_dtype(dtype, xp)
    return {"float32": "complex64", "float64": "complex128"}.get(name, name), xp


def identity_blocks(channels: int, layout: FourierLayout, *, dtype: DType,
                    xp: Namespace | None = None, device: Any = None) -> Array:
    r"""Blocks of the identity convolution: ``W_f = I`` at every frequency.

    Parameters
    ----------
    channels : int
        Number of channels C.
    layout : FourierLayout
        Grid and storage of the layer.
    dtype : str or dtype
        Precision of the layer: ``"float32"``/``"complex64"`` give complex64
        blocks, ``"float64"``/``"complex128"`` complex128 blocks.
    xp : array namespace, optional
        Namespace of the result; default NumPy (or torch for a torch dtype).
    device : device, optional
        Device of the result.

    Returns
    -------
    array, shape (F, C, C)
        Identity blocks.

    Raises
    ------
    TypeError
        If `channels` is not an integer or `dtype` is not supported.
    ValueError
        If `channels` is negative.

    See Also
    --------
    random_blocks : Haar-random initialisation.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank import conv
    >>> layout = conv.FourierLayout(4)
    >>> W = conv.identity_blocks(3, layout, dtype="float32")
    >>> W.shape, W.dtype
    ((10, 3, 3), dtype('complex64'))
    >>> x = np.ones((3, 4, 4), np.float32)
    >>> bool(np.array_equal(conv.convolve(W, x, layout), x))
    True
    """
    _check_layout(layout)
    C = as_int(channels, "channels", 0)
    name, xp = _block_dtype(dtype, xp)
    eye = xp.eye(C, dtype=getattr(xp, name), device=device)
    return xp.asarray(xp.broadcast_to(eye, (layout.n_blocks, C, C)), copy=True)


def random_blocks(channels: int, layout: FourierLayout, *, dtype: DType, rng: Seed = None,
                  xp: Namespace | None = None, device: Any = None) -> Array:
    r"""Blocks of a Haar-random unitary (complex layout) or orthogonal (real layout) convolution.

    Every stored block is drawn independently from the Haar measure: unitary
    for conjugate pairs and complex layouts, real orthogonal for the
    self-conjugate frequencies of a real layout. This is the Haar measure of
    the group of orthogonal (unitary) circular convolutions.

    Parameters
    ----------
    channels : int
        Number of channels C.
    layout : FourierLayout
        Grid and storage of the layer.
    dtype : str or dtype
        Precision of the layer: ``"float32"``/``"complex64"`` give complex64
        blocks, ``"float64"``/``"complex128"`` complex128 blocks.
    rng : None, int or numpy.random.Generator, optional
        Randomness; drawn on the host in double precision, so a seed gives the
        same layer on every backend.
    xp : array namespace, optional
        Namespace of the result; default NumPy (or torch for a torch dtype).
    device : device, optional
        Device of the result.

    Returns
    -------
    array, shape (F, C, C)
        Unitary blocks.

    Raises
    ------
    TypeError
        If `channels` is not an integer, or `dtype` or `rng` is not supported.
    ValueError
        If `channels` is negative (or `rng` is a negative seed).

    See Also
    --------
    identity_blocks, unitary_lowrank.random_unitary

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank import conv
    >>> layout = conv.FourierLayout(5)
    >>> W = conv.random_blocks(4, layout, dtype="float64", rng=0)
    >>> from unitary_lowrank.testing import rounded_unitarity_bound
    >>> float(conv.orthogonality_error(W, layout)) <= rounded_unitarity_bound(4, "complex128")
    True
    >>> K = conv.blocks_to_kernel(W, layout)   # a real kernel
    >>> K.dtype
    dtype('float64')
    """
    _check_layout(layout)
    C = as_int(channels, "channels", 0)
    name, xp = _block_dtype(dtype, xp)
    gen = as_generator(rng)
    S, F = layout.n_real_blocks, layout.n_blocks
    real_part = haar_samples((S, C, C), False, gen)
    complex_part = haar_samples((F - S, C, C), True, gen)
    host = np.ascontiguousarray(np.concatenate([real_part, complex_part]).astype(name))
    return xp.asarray(host, dtype=getattr(xp, name), device=device)


def orthogonality_error(W: Array, layout: FourierLayout, /, *,
                        xp: Namespace | None = None) -> Array:
    r"""Distance ``‖OᴴO − I‖₂`` of the whole convolution operator O from the unitary group.

    Measures the operator actually applied by :func:`convolve`, not just the
    stored blocks: for real layouts the conjugate partners use the conjugate
    block and the self-conjugate frequencies the real part of theirs.

    Parameters
    ----------
    W : array, shape (F, C, C)
        Complex frequency blocks.
    layout : FourierLayout
        Grid and storage of the layer.
    xp : array namespace, optional
        Namespace of `W`; inferred by default.

    Returns
    -------
    array, shape ()
        The largest ``‖W_fᴴW_f − I‖₂`` over the blocks in effect, a real 0-d
        array of `W`'s precision.

    Raises
    ------
    TypeError
        If `W` is not complex.
    ValueError
        If `W` does not have ``layout.n_blocks`` square blocks.

    See Also
    --------
    unitary_lowrank.unitarity_error : The same measure per matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank import conv
    >>> layout = conv.FourierLayout(4)
    >>> W = conv.identity_blocks(2, layout, dtype="complex128")
    >>> float(conv.orthogonality_error(W, layout))
    0.0
    >>> W[0] = 1j * np.eye(2)   # unitary, but a real layer applies only Re W there
    >>> float(conv.orthogonality_error(W, layout))
    1.0
    """
    _check_layout(layout)
    xp = get_namespace(("W", W), xp=xp)
    _check_blocks(W, layout, xp, square=True)
    err = unitarity_error(_conv.effective_blocks(W, layout.n_real_blocks, xp), xp=xp)
    return xp.max(err)


# ---------------------------------------------------------------------------
# gradients and the projUNN step


def gradient_factors(x: Array, dy: Array, layout: FourierLayout, /, *,
                     xp: Namespace | None = None) -> tuple[Array, Array]:
    r"""Per-frequency factors of the gradient of a loss with respect to the frequency blocks.

    For a layer ``y = convolve(W, x, layout)`` and the gradient ``dy`` of a
    real loss with respect to `y`, returns ``A``, ``B`` with
    ``G_f = A_f B_fᴴ = Σ_batch δ̂_f x̂_fᴴ`` (orthonormal DFTs of `dy` and `x`),
    of rank at most the batch size, without forming ``G_f``.

    Parameters
    ----------
    x : array, shape (..., C_in, H, W)
        The layer's input.
    dy : array, shape (..., C_out, H, W)
        Gradient of the loss with respect to the layer's output (for complex
        outputs ``∂L/∂Re y + i ∂L/∂Im y``). Same leading axes as `x`.
    layout : FourierLayout
        Grid and storage of the layer.
    xp : array namespace, optional
        Namespace of the inputs; inferred by default.

    Returns
    -------
    A : array, shape (F, C_out, m)
        ``δ̂_f`` of each example (m = batch size, doubled for complex `x` on a
        real layout, whose real and imaginary parts are separate examples).
    B : array, shape (F, C_in, m)
        ``x̂_f`` of each example. Complex, in the precision of the inputs.

    Raises
    ------
    TypeError
        If an input is not floating, or the inputs come from different
        libraries.
    ValueError
        If the shapes do not match the layout or each other.

    See Also
    --------
    update : The projUNN step from these factors.

    Notes
    -----
    ``G_f`` is the gradient with respect to the operator in the Frobenius
    metric, ``dL = Re Σ_f tr(G_fᴴ dW_f)`` summed over all ``H·W`` frequencies,
    so a step ``−lr·G`` means what it means for a dense weight. For a real
    layout the value at a stored frequency equals the gradient symmetrised over
    its conjugate pair, ``(G_f + conj(G_{−f}))/2`` (the data are real, so the
    two halves agree), and the factors of the self-conjugate frequencies are
    real; the derivative along a change of the stored blocks is therefore
    ``Σ_r layout.multiplicity[r] · Re tr(G_rᴴ dW_r)``.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank import conv
    >>> layout = conv.FourierLayout(4, real=False)
    >>> rng = np.random.default_rng(0)
    >>> x, dy = rng.standard_normal((5, 3, 4, 4)), rng.standard_normal((5, 2, 4, 4))
    >>> A, B = conv.gradient_factors(x, dy, layout)
    >>> A.shape, B.shape
    ((16, 2, 5), (16, 3, 5))
    >>> xh = np.fft.fft2(x, norm="ortho").reshape(5, 3, 16)
    >>> dh = np.fft.fft2(dy, norm="ortho").reshape(5, 2, 16)
    >>> G = np.einsum("bof,bif->foi", dh, xh.conj())
    >>> bool(np.allclose(A @ B.conj().transpose(0, 2, 1), G))
    True
    """
    _check_layout(layout)
    xp = get_namespace(("x", x), ("dy", dy), xp=xp)
    check_dtype(x, "x", xp)
    check_dtype(dy, "dy", xp)
    if x.ndim < 3 or dy.ndim != x.ndim or tuple(x.shape[:-3]) != tuple(dy.shape[:-3]):
        raise ValueError(f"x and dy must have shapes (..., C_in, H, W) and (..., C_out, H, W) "
                         f"with the same leading axes, got {tuple(x.shape)} and "
                         f"{tuple(dy.shape)}")
    _check_images(x, "x", layout, x.shape[-3], "input", xp)
    _check_images(dy, "dy", layout, dy.shape[-3], "output", xp)
    check_same_device([("x", x), ("dy", dy)])
    ct = _complex_of(xp, xp.result_type(x.dtype, dy.dtype))
    rt = real_dtype(xp, ct)
    xf, _ = _flatten(x, xp)
    df, _ = _flatten(dy, xp)
    orbit, _, _ = layout._on(xp, x)
    if not layout.real:
        xf, df = xp.astype(xf, ct), xp.astype(df, ct)
    elif is_complex(xp, x.dtype):
        df = xp.astype(df, ct)
        xf = xp.concat([xp.real(xf), xp.imag(xf)], axis=0)
        df = xp.concat([xp.real(df), xp.imag(df)], axis=0)
    elif is_complex(xp, dy.dtype):
        df = xp.real(df)  # a real layer's output on real input is real: Im dy plays no part
    if layout.real:
        xf, df = xp.astype(xf, rt), xp.astype(df, rt)
    return _conv.gradient_factors(xf, df, layout.real, layout.n_real_blocks, orbit, xp)


def _gradient_arrays(grad: Any) -> list[tuple[str, Any]]:
    """The arrays of `grad` with their names: ``[("grad", G)]`` or ``[("A", A), ("B", B)]``."""
    if not isinstance(grad, tuple):
        return [("grad", grad)]
    if len(grad) != 2:
        raise ValueError(f"grad must be an array or a pair (A, B), got a tuple of {len(grad)}")
    return [("A", grad[0]), ("B", grad[1])]


def _check_gradient(named: list[tuple[str, Any]], F: int, C: int, xp: ModuleType) -> None:
    """Dtype, shape and values of a dense gradient (F, C, C) or of factors (F, C, m)."""
    dense = len(named) == 1
    for name, g in named:
        check_dtype(g, name, xp)
        want = f"(F, C, C) = {(F, C, C)}" if dense else f"(F, C, m) with F, C = {F}, {C}"
        if g.ndim != 3 or tuple(g.shape[:2]) != (F, C) or (dense and g.shape[2] != C):
            raise ValueError(f"{name} must have shape {want}, got {tuple(g.shape)}")
        check_finite(g, name, xp)
    if not dense and named[0][1].shape[2] != named[1][1].shape[2]:
        raise ValueError(f"A and B must have the same number of columns m, got "
                         f"{tuple(named[0][1].shape)} and {tuple(named[1][1].shape)}")


def _rows(grad: Any, rows: slice) -> Any:
    """The gradient of the blocks `rows`: dense, or a pair of factors."""
    if isinstance(grad, tuple):
        return (grad[0][rows, ...], grad[1][rows, ...])
    return grad[rows, ...]


def _retract_blocks(W, grad, S, lr, rank, method, sketch, xp):
    """The step of all F blocks, in one batched call per kind of block.

    One call for the S self-conjugate (real) blocks of a real layer, one for the
    others. The self-conjugate blocks are real orthogonal matrices updated with the real part of
    their gradient (``docs/theory.md``, orthogonal convolutions), so the real operator
    stays exactly orthogonal.
    """
    F = W.shape[0]
    parts = []
    if S:
        head = _conv.real_projection(_rows(grad, slice(None, S)), xp)
        new = _lowrank_step(xp.real(W[:S, ...]), head, lr, rank, method, sketch, xp)
        parts.append(xp.astype(new, W.dtype))
    if F > S:
        parts.append(_lowrank_step(W[S:, ...], _rows(grad, slice(S, None)), lr, rank, method,
                                   sketch, xp))
    return xp.concat(parts, axis=0) if len(parts) > 1 else parts[0] if parts else W


def _lowrank_step(U, grad, lr, rank, method, sketch, xp):
    """One batched retraction of ``U − lr·grad`` (grad a pair or dense), sketched to `rank`."""
    C = U.shape[-1]
    if isinstance(grad, tuple) and grad[0].shape[-1] <= rank:
        a, b = grad  # already of rank <= `rank`: the exact step, nothing to sketch
    elif not isinstance(grad, tuple) and rank >= C:
        # a dense C×C gradient has rank <= C: G = G·Iᴴ is exact
        a = grad
        b = xp.broadcast_to(xp.eye(C, dtype=grad.dtype, device=device_of(grad)), grad.shape)
    else:
        from .sketch import lowrank

        a, b = lowrank(grad, min(rank, C), **sketch)  # a rank above C means "all of it"
    a = xp.astype(a, U.dtype)
    b = xp.astype(b, U.dtype)
    return retract(U, a * (-lr), b, method, xp=xp)


def update(W: Array, grad: Array | tuple[Array, Array], layout: FourierLayout, /, *, lr: float,
           rank: int = 1, method: Method = "polar", sampler: Sampler = "randomized",
           oversample: int = 10, n_iter: int = 2, shared: bool = False, rng: Seed = None,
           out: Array | None = None, xp: Namespace | None = None) -> Array:
    r"""Take the projUNN step of every frequency block of a layer, in one batched call.

    Sketches the per-frequency gradient to rank `rank` (batched
    :func:`unitary_lowrank.lowrank`) and retracts ``W_f − lr·G_f`` onto
    the unitary group with the batched :func:`~unitary_lowrank.project`
    (``method="polar"``, projUNN-D) or :func:`~unitary_lowrank.transport`
    (``method="exp"``, projUNN-T). No Python loop over frequencies.

    Parameters
    ----------
    W : array, shape (F, C, C)
        Unitary frequency blocks of the layer.
    grad : tuple of arrays (A, B), or array of shape (F, C, C)
        The gradient ``G_f = A_f B_fᴴ`` with `A` (F, C, m) and `B` (F, C, m),
        e.g. from :func:`gradient_factors`, or dense ``G_f``.
    layout : FourierLayout
        Grid and storage of the layer.
    lr : float
        Learning rate: the Euclidean step is ``−lr·G_f``.
    rank : int, default: 1
        Rank k of the step at each frequency. Factors with at most `rank`
        columns, and dense gradients with ``rank >= C``, are used exactly,
        without a sketch.
    method : {"polar", "exp", "cayley"}, default: "polar"
        Retraction, see :func:`unitary_lowrank.retract`.
    sampler : str, default: "randomized"
        Sketching method of :func:`unitary_lowrank.lowrank`.
    oversample, n_iter : int
        Oversampling and power iterations of the sketch.
    shared : bool, default: False
        One Gaussian test matrix for all frequencies (as in the paper's CNN)
        instead of one per frequency.
    rng : None, int or numpy.random.Generator, optional
        Randomness of the sketch (drawn on the host).
    out : array, optional
        Where to write the new blocks (e.g. ``out=W``), once complete.
    xp : array namespace, optional
        Namespace of the inputs; inferred by default.

    Returns
    -------
    array, shape (F, C, C)
        The new blocks, unitary, in the namespace, device and dtype of `W`. For
        real layouts the self-conjugate blocks are updated as real orthogonal
        matrices with the real part of their gradient, so the real operator
        stays exactly orthogonal.

    Raises
    ------
    TypeError
        If an input is not floating, `W` is not complex, the inputs come from
        different libraries, `lr` is not a real number, `rank` is not an
        integer, `xp` is not an array namespace (or not the inputs'), or `out`
        is not an array of the inputs' library.
    ValueError
        If the shapes do not fit, `grad` is a tuple of other than two arrays,
        `lr` is not finite, `rank` is below 1, `method` is unknown, the
        gradient holds NaN or infinity, or `out` does not match `W` (shape,
        dtype, device) or is read-only.

    See Also
    --------
    gradient_factors : The factors of the gradient.
    unitary_lowrank.retract : The update of one batch of matrices.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank import conv
    >>> layout = conv.FourierLayout(8)
    >>> W = conv.random_blocks(4, layout, dtype="float32", rng=0)
    >>> rng = np.random.default_rng(1)
    >>> x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    >>> dy = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    >>> W = conv.update(W, conv.gradient_factors(x, dy, layout), layout, lr=0.1)
    >>> from unitary_lowrank.testing import unitarity_bound   # 30·C·eps
    >>> W.dtype, bool(conv.orthogonality_error(W, layout) <= unitarity_bound(4, "complex64"))
    (dtype('complex64'), True)
    """
    _check_layout(layout)
    named = _gradient_arrays(grad)
    xp = get_namespace(("W", W), *named, xp=xp)
    _check_blocks(W, layout, xp, square=True)
    if method not in METHODS:
        raise ValueError(f"method must be 'polar', 'exp' or 'cayley', got {method!r}")
    rank = as_int(rank, "rank", 1)
    lr = check_lr(lr)
    _check_gradient(named, W.shape[0], W.shape[1], xp)
    check_same_device([("W", W), *named])
    check_out(out, xp, tuple(W.shape), W.dtype, ("W", W))
    cast = [xp.astype(g, W.dtype) for _, g in named]
    grad = cast[0] if len(cast) == 1 else tuple(cast)
    sketch = {"sampler": sampler, "oversample": oversample, "n_iter": n_iter,
              "shared": shared, "rng": as_generator(rng)}
    result = _retract_blocks(W, grad, layout.n_real_blocks, lr, rank, method, sketch, xp)
    if out is None:
        return result
    out[...] = result
    return out
