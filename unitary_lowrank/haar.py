"""Haar-distributed unitary, orthogonal and Stiefel matrices."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ._array_api import DTYPE_NAMES, dtype_name, resolve_namespace
from ._validation import as_int

__all__ = ["as_generator", "random_unitary", "resolve_dtype"]


def as_generator(rng: Any) -> np.random.Generator:
    """``numpy.random.Generator`` from None, an int seed or a Generator."""
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool) and rng < 0:
        raise ValueError(f"rng must be a non-negative int seed, got {rng}")
    if rng is None or isinstance(rng, int | np.integer | np.random.SeedSequence):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(
        f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}"
    )


def resolve_dtype(dtype: Any, xp: ModuleType | None) -> tuple[str, ModuleType]:
    """Name of a supported dtype given as a string or a dtype object, and its namespace.

    A given `xp` is checked and mapped to the namespace to compute with, as every
    ``xp=`` argument is (``resolve_namespace``: `TypeError` naming `xp`).
    """
    if xp is not None:
        xp = resolve_namespace(xp)
    elif type(dtype).__module__.split(".")[0] == "torch":
        import torch

        xp = resolve_namespace(torch)
    else:
        xp = resolve_namespace(np)
    name = dtype if isinstance(dtype, str) else dtype_name(xp, dtype)
    if name not in DTYPE_NAMES:
        raise TypeError(
            f"dtype must be float32, float64, complex64 or complex128 (a name or a dtype "
            f"of {xp.__name__}), got {dtype!r}"
        )
    return name, xp


def haar_samples(shape: tuple[int, ...], complex_: bool, rng: np.random.Generator) -> np.ndarray:
    """Haar samples of shape ``(..., n, p)`` on the host, in double precision.

    The QR factorisation of a Gaussian with the phases of diag(R) fixed (see
    :func:`random_unitary`); shared with :func:`unitary_lowrank.conv.random_blocks`.
    """
    Z = rng.standard_normal(shape)
    if complex_:
        Z = (Z + 1j * rng.standard_normal(shape)) / np.sqrt(2.0)
    Q, R = np.linalg.qr(Z)
    d = np.diagonal(R, axis1=-2, axis2=-1)
    absd = np.abs(d)
    phase = np.where(absd > 0, d / np.where(absd > 0, absd, 1), 1)
    return Q * phase[..., None, :]


def random_unitary(n, p=None, *, dtype, batch_shape=(), rng=None, xp=None, device=None):
    r"""Haar-distributed unitary or orthogonal matrices, or their first `p` columns.

    Parameters
    ----------
    n : int
        Number of rows.
    p : int, optional
        Number of columns, ``p <= n``; default `n` (square). For ``p < n`` the
        result is uniformly (Haar) distributed on the Stiefel manifold.
    dtype : str or dtype
        ``"float32"``, ``"float64"`` (orthogonal group), ``"complex64"`` or
        ``"complex128"`` (unitary group), or the matching dtype object of `xp`.
    batch_shape : tuple of int, default: ()
        Leading batch axes of independent samples.
    rng : None, int or numpy.random.Generator, optional
        Source of randomness. Samples are drawn on the host in double
        precision, so a seed gives the same matrices on every backend.
    xp : array namespace, optional
        Namespace of the result; default NumPy (or torch when `dtype` is a torch
        dtype).
    device : device, optional
        Device of the result, in the sense of `xp`.

    Returns
    -------
    array, shape (*batch_shape, n, p)
        Haar-distributed matrices with orthonormal columns.

    Raises
    ------
    TypeError
        If `dtype` is not one of the four supported dtypes, `rng` is not a
        seed or Generator, or `xp` is not an array namespace.
    ValueError
        If `n` or `p` is negative or ``p > n``.

    See Also
    --------
    unitary_lowrank.testing.strategies.unitaries : Hypothesis strategy.

    Notes
    -----
    The QR factorisation of a Gaussian matrix is made unique by scaling each
    column of Q with the phase (sign, if real) of the matching diagonal entry of
    R; without this the distribution is not Haar (Mezzadri 2007).

    Examples
    --------
    >>> import numpy as np
    >>> import unitary_lowrank as ul
    >>> U = ul.random_unitary(4, dtype="complex64", batch_shape=(3,), rng=0)
    >>> U.shape, U.dtype
    ((3, 4, 4), dtype('complex64'))
    >>> from unitary_lowrank.testing import rounded_unitarity_bound   # ≈ eps·√n
    >>> bool(np.all(ul.unitarity_error(U) <= rounded_unitarity_bound(4, "complex64")))
    True
    """
    n = as_int(n, "n")
    p = n if p is None else as_int(p, "p")
    if n < 0 or p < 0 or p > n:
        raise ValueError(f"need 0 <= p <= n, got n={n}, p={p}")
    if not isinstance(batch_shape, tuple | list):
        raise TypeError(f"batch_shape must be a tuple of ints, got {batch_shape!r}")
    batch_shape = tuple(as_int(b, "batch_shape entry") for b in batch_shape)
    if any(b < 0 for b in batch_shape):
        raise ValueError(f"batch_shape must hold non-negative sizes, got {batch_shape}")
    name, xp = resolve_dtype(dtype, xp)
    gen = as_generator(rng)
    Q = haar_samples((*batch_shape, n, p), name.startswith("complex"), gen)
    host = np.ascontiguousarray(Q.astype(name))
    target = getattr(xp, name)
    return xp.asarray(host, dtype=target, device=device)
