"""Haar-distributed unitary, orthogonal and Stiefel matrices."""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from ._random import (
    as_generator,
    check_rng_library,
    haar_jax,
    haar_samples,
    haar_torch,
    resolve_dtype,
    rng_library,
)
from ._validation import as_int
from .typing import Array, DType, Namespace, Seed

__all__ = ["random_unitary"]


def random_unitary(n: int, p: int | None = None, *, dtype: DType,
                   batch_shape: tuple[int, ...] = (), rng: Seed = None,
                   xp: Namespace | None = None, device: Any = None) -> Array:
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
    rng : None, int, numpy.random.Generator, JAX PRNG key or torch.Generator, optional
        Source of randomness. Seeds and NumPy generators draw on the host in
        double precision, so a seed gives the same matrices on every backend.
        A JAX key (``jax.random.key``, or ``jax.random.PRNGKey``) draws with
        ``jax.random`` (in double precision when ``jax_enable_x64`` is on, else
        in the dtype's own precision), also under ``jax.jit``; a
        ``torch.Generator`` draws with torch in double precision on its own
        device. Each is for results of its own library only.
    xp : array namespace, optional
        Namespace of the result; by default that of `dtype` (NumPy for a name or
        a NumPy dtype, torch for a torch dtype, JAX for ``jax.numpy`` dtypes)
        or, for a dtype given by name, that of a JAX key or torch generator.
    device : device, optional
        Device of the result, in the sense of `xp` (with a ``torch.Generator``,
        by default the generator's device).

    Returns
    -------
    array, shape (*batch_shape, n, p)
        Haar-distributed matrices with orthonormal columns.

    Raises
    ------
    TypeError
        If `dtype` is not one of the four supported dtypes, `rng` is not a
        seed or generator (or is a JAX key or torch generator for another
        library's result), or `xp` is not an array namespace.
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

    With ``jax_enable_x64`` off, a JAX key draws and factors in single
    precision: the result is then unitary to ``unitarity_bound`` (a backward
    stable QR), not to the rounding of its dtype.

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

    With a ``jax.numpy`` dtype the result is a JAX array, and
    ``rng=jax.random.key(0)`` draws it with JAX:
    ``ul.random_unitary(4, dtype=jnp.float32, rng=jax.random.key(0))``.
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
    rng_lib = rng_library(rng)
    if rng_lib is not None and xp is None and isinstance(dtype, str):
        xp = sys.modules["jax.numpy" if rng_lib == "jax" else "torch"]
    name, xp = resolve_dtype(dtype, xp)
    shape = (*batch_shape, n, p)
    if rng_lib is not None:
        check_rng_library(rng_lib, xp, "the result would be")
        if rng_lib == "jax":
            return haar_jax(shape, name, rng, device)
        return haar_torch(shape, name, rng, device)
    gen = as_generator(rng)
    try:
        Q = haar_samples(shape, name.startswith("complex"), gen)
        host = np.ascontiguousarray(Q.astype(name))
    except MemoryError as exc:
        raise MemoryError(_memory_message(shape, name)) from exc
    target = getattr(xp, name)
    return xp.asarray(host, dtype=target, device=device)


def _memory_message(shape: tuple[int, ...], name: str) -> str:
    """What a Haar sample of `shape` needs on the host, for the MemoryError of a failed draw."""
    entries = math.prod(shape)
    double = entries * (16 if name.startswith("complex") else 8)  # one array in double precision
    result = entries * np.dtype(name).itemsize
    return (
        f"random_unitary: not enough memory for a Haar sample of shape {shape} ({entries:,} "
        f"entries): it is drawn on the host in double precision, about 3 arrays of "
        f"{_bytes(double)} at once (the Gaussian draw and its QR factors), "
        f"{_bytes(3 * double)} in all, and the {name} result takes {_bytes(result)}"
    )


def _bytes(count: int) -> str:
    """A byte count in binary units: ``7.28 TiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024:
            return f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g} EiB"
