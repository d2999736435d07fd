"""Haar-distributed unitary, orthogonal and Stiefel matrices."""

from __future__ import annotations

import math
import sys
from types import ModuleType
from typing import Any

import numpy as np

from ._array_api import DTYPE_NAMES, dtype_name, namespace_library, resolve_namespace
from ._validation import as_int

__all__ = ["as_generator", "random_unitary", "resolve_dtype", "rng_library"]


def rng_library(rng: Any) -> str | None:
    """``"jax"`` for a JAX PRNG key, ``"torch"`` for a ``torch.Generator``, else None.

    A JAX key is a typed key array (``jax.random.key``) or a raw ``uint32`` key of
    shape (2,) (``jax.random.PRNGKey``), concrete or traced. None means a seed or
    NumPy generator (or anything else, which :func:`as_generator` then refuses).
    Neither library is imported: a key or generator exists only once it is.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(rng, torch.Generator):
        return "torch"
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(rng, jax.Array):
        if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
            return "jax"
        if rng.dtype == np.uint32 and tuple(rng.shape) == (2,):
            return "jax"
    return None


def _rng_kind(library: str) -> str:
    return {"jax": "a JAX PRNG key", "torch": "a torch.Generator"}[library]


def check_rng_library(rng_lib: str, xp: ModuleType, what: str) -> None:
    """`TypeError` naming `rng` when a key or generator of `rng_lib` meets another library."""
    have = namespace_library(xp)
    if have != rng_lib:
        raise TypeError(
            f"rng is {_rng_kind(rng_lib)}, which draws {rng_lib} arrays only, but {what} "
            f"a {have} array; pass an int seed or a numpy.random.Generator instead"
        )


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
    library = type(dtype).__module__.split(".")[0]
    if xp is not None:
        xp = resolve_namespace(xp)
    elif library == "torch":
        import torch

        xp = resolve_namespace(torch)
    elif library in ("jax", "jaxlib"):  # jnp.float32 (equal to np.float32, but JAX's)
        import jax.numpy as jnp

        xp = resolve_namespace(jnp)
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


def _fix_phases(Q: Any, R: Any, xp: ModuleType) -> Any:
    """``Q`` with each column scaled by the phase of the matching diagonal entry of R."""
    d = xp.linalg.diagonal(R)
    absd = xp.abs(d)
    one = xp.ones_like(d)
    phase = xp.where(absd > 0, d / xp.where(absd > 0, xp.astype(absd, d.dtype), one), one)
    return Q * xp.expand_dims(phase, axis=-2)


def _haar_jax(shape: tuple[int, ...], name: str, key: Any, device: Any) -> Any:
    """Haar samples drawn with ``jax.random`` from `key`, in double precision under x64."""
    import jax
    import jax.numpy as jnp

    from ._array_api import get_namespace

    complex_ = name.startswith("complex")
    wide = name
    if jax.config.jax_enable_x64:
        wide = "complex128" if complex_ else "float64"
    Z = jax.random.normal(key, shape, dtype=getattr(jnp, wide))
    xp = get_namespace(("rng", Z))
    Q, R = xp.linalg.qr(Z)
    Q = xp.astype(_fix_phases(Q, R, xp), getattr(jnp, name))
    return Q if device is None else jax.device_put(Q, device)


def _haar_torch(shape: tuple[int, ...], name: str, gen: Any, device: Any) -> Any:
    """Haar samples drawn with torch from `gen`, in double precision on its device."""
    import torch

    from ._array_api import get_namespace

    wide = torch.complex128 if name.startswith("complex") else torch.float64
    Z = torch.randn(shape, generator=gen, dtype=wide, device=gen.device)
    xp = get_namespace(("rng", Z))
    Q, R = xp.linalg.qr(Z)
    Q = _fix_phases(Q, R, xp)
    return Q.to(dtype=getattr(torch, name), device=gen.device if device is None else device)


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
            return _haar_jax(shape, name, rng, device)
        return _haar_torch(shape, name, rng, device)
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
