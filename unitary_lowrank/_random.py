"""Randomness of the library: seeds and generators, Haar samples, the draws of a sketch.

Every random number the library draws comes from here, so that a seed means the same
thing everywhere:

- ``rng`` arguments: :func:`rng_library` tells a JAX key or a torch generator from a
  seed or NumPy generator, :func:`check_rng_library` refuses one meant for another
  library, :func:`as_generator` turns a seed into a ``numpy.random.Generator``;
- dtypes given by name or object: :func:`resolve_dtype`;
- Haar samples (:func:`unitary_lowrank.random_unitary`, the Fourier blocks of
  :func:`unitary_lowrank.conv.random_blocks`): :func:`haar_samples` on the host, and
  :func:`haar_jax`, :func:`haar_torch` with a key or generator;
- the test matrices of the sketches (``sketch.py``, the one-call sketch of
  ``training.py``): :func:`host_gaussian`, and :func:`draws`, which picks
  :class:`HostDraws`, :class:`JaxDraws` or :class:`TorchDraws` for an ``rng``;
- the start block of the probe of ``unitarity_error``: :func:`host_normal`, or
  :func:`jax_normal` with a JAX key.

Seeds and NumPy generators draw on the host in double precision, so a seed gives the same
numbers on every backend; a JAX key or torch generator draws with its own library.
"""

from __future__ import annotations

import math
import sys
from types import ModuleType
from typing import Any

import numpy as np

from ._array_api import (
    DTYPE_NAMES,
    device_of,
    dtype_name,
    get_namespace,
    is_lazy_array,
    namespace_library,
    real_dtype,
    resolve_namespace,
)

__all__ = [
    "HostDraws",
    "JaxDraws",
    "TorchDraws",
    "as_generator",
    "check_rng_library",
    "draws",
    "haar_jax",
    "haar_samples",
    "haar_torch",
    "host_gaussian",
    "host_normal",
    "jax_normal",
    "resolve_dtype",
    "rng_library",
]


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


# --- Haar samples ---------------------------------------------------------------------------


def haar_samples(shape: tuple[int, ...], complex_: bool, rng: np.random.Generator) -> np.ndarray:
    """Haar samples of shape ``(..., n, p)`` on the host, in double precision.

    The QR factorisation of a Gaussian with the phases of diag(R) fixed (see
    :func:`unitary_lowrank.random_unitary`); shared with
    :func:`unitary_lowrank.conv.random_blocks`.
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


def haar_jax(shape: tuple[int, ...], name: str, key: Any, device: Any) -> Any:
    """Haar samples drawn with ``jax.random`` from `key`, in double precision under x64."""
    import jax
    import jax.numpy as jnp

    complex_ = name.startswith("complex")
    wide = name
    # jax's stub of Config lacks the flags, which are attributes defined at run time
    if jax.config.jax_enable_x64:  # type: ignore[attr-defined]
        wide = "complex128" if complex_ else "float64"
    Z = jax.random.normal(key, shape, dtype=getattr(jnp, wide))
    xp = get_namespace(("rng", Z))
    Q, R = xp.linalg.qr(Z)
    Q = xp.astype(_fix_phases(Q, R, xp), getattr(jnp, name))
    return Q if device is None else jax.device_put(Q, device)


def haar_torch(shape: tuple[int, ...], name: str, gen: Any, device: Any) -> Any:
    """Haar samples drawn with torch from `gen`, in double precision on its device."""
    import torch

    wide = torch.complex128 if name.startswith("complex") else torch.float64
    Z = torch.randn(shape, generator=gen, dtype=wide, device=gen.device)
    xp = get_namespace(("rng", Z))
    Q, R = xp.linalg.qr(Z)
    Q = _fix_phases(Q, R, xp)
    return Q.to(dtype=getattr(torch, name), device=gen.device if device is None else device)


# --- Gaussian and uniform draws of the sketches and probes ----------------------------------


def host_gaussian(gen: np.random.Generator, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Standard (complex) Gaussian test matrix drawn in double precision, cast on the host.

    The test matrix of every host-drawn sketch (``sketch.py``, and the one-call sketch
    of ``training.py``, which must draw exactly the same numbers for a seed).
    """
    Z = gen.standard_normal(shape)
    if name.startswith("complex"):
        Z = (Z + 1j * gen.standard_normal(shape)) / math.sqrt(2.0)
    return np.ascontiguousarray(Z.astype(name))


def host_normal(gen: np.random.Generator, shape: tuple[int, ...], complex_: bool) -> np.ndarray:
    """Gaussian block in double precision on the host: the start of a probe.

    A complex block has real and imaginary parts of variance 1 each (the scale does not
    matter where the block is orthonormalised first, as the probe of
    ``unitarity_error`` does).
    """
    X0 = gen.standard_normal(shape)
    if complex_:
        X0 = X0 + 1j * gen.standard_normal(X0.shape)
    return X0


def jax_normal(key: Any, shape: tuple[int, ...], dtype: Any, like: Any) -> Any:
    """A Gaussian block drawn from a JAX key, placed like the array `like`.

    A complex dtype draws real and imaginary parts of variance 1/2 each. Traced under
    a jit, placement is the jit's; a concrete block goes to `like`'s device or
    sharding, as a host-drawn one does.
    """
    import jax  # already imported: key is a JAX key

    X0 = jax.random.normal(key, shape, dtype=dtype)
    return X0 if is_lazy_array(X0) else jax.device_put(X0, device_of(like))


# The draw sources take `op`, any object with the attributes ``xp``, ``dtype`` and
# ``device`` of the arrays to draw for (``sketch._Operator``).


def _to_device(op: Any, host: np.ndarray, dtype: Any = None) -> Any:
    """Move a host array once to the operator's namespace and device."""
    dtype = op.dtype if dtype is None else dtype
    return op.xp.asarray(host, dtype=dtype, device=op.device)


class HostDraws:
    """Random numbers of a NumPy generator, drawn on the host and moved once to the device."""

    def __init__(self, gen: np.random.Generator):
        self.gen = gen

    def gaussian(self, op: Any, shape: tuple[int, ...]) -> Any:
        """Standard (complex) normal numbers of `shape` in ``op.dtype``."""
        return _to_device(op, host_gaussian(self.gen, shape, dtype_name(op.xp, op.dtype)))

    def uniform(self, op: Any, shape: tuple[int, ...]) -> Any:
        """Uniform numbers in [0, 1) of `shape`, in double precision."""
        return _to_device(op, self.gen.random(shape), op.xp.float64)


class JaxDraws:
    """Random numbers of a JAX PRNG key, split at every draw (traceable under ``jax.jit``)."""

    def __init__(self, key: Any):
        self.key = key

    def _subkey(self) -> Any:
        import jax

        self.key, sub = jax.random.split(self.key)
        return sub

    def _place(self, op: Any, x: Any) -> Any:
        if is_lazy_array(x):  # traced: placement is the jit's
            return x
        import jax

        return jax.device_put(x, op.device)

    def gaussian(self, op: Any, shape: tuple[int, ...]) -> Any:
        """Standard (complex) normal numbers of `shape` in ``op.dtype``."""
        import jax

        # a complex dtype draws real and imaginary parts of variance 1/2 each
        return self._place(op, jax.random.normal(self._subkey(), shape, dtype=op.dtype))

    def uniform(self, op: Any, shape: tuple[int, ...]) -> Any:
        """Uniform numbers in [0, 1) of `shape`, in the real dtype of ``op.dtype``."""
        import jax

        dtype = real_dtype(op.xp, op.dtype)
        return self._place(op, jax.random.uniform(self._subkey(), shape, dtype=dtype))


class TorchDraws:
    """Random numbers of a ``torch.Generator``, drawn on its device, moved to G's."""

    def __init__(self, gen: Any):
        self.gen = gen

    def gaussian(self, op: Any, shape: tuple[int, ...]) -> Any:
        """Standard (complex) normal numbers of `shape` in ``op.dtype``."""
        import torch

        # a complex dtype draws real and imaginary parts of variance 1/2 each
        Z = torch.randn(shape, generator=self.gen, dtype=op.dtype, device=self.gen.device)
        return Z.to(op.device)

    def uniform(self, op: Any, shape: tuple[int, ...]) -> Any:
        """Uniform numbers in [0, 1) of `shape`, in double precision."""
        import torch

        u = torch.rand(shape, generator=self.gen, dtype=torch.float64, device=self.gen.device)
        return u.to(op.device)


def draws(rng: Any, xp: ModuleType, what: str) -> HostDraws | JaxDraws | TorchDraws:
    """The source of a sketch's random numbers for `rng` and arrays of namespace `xp`.

    None, an int seed or a NumPy generator draw on the host (the same numbers on
    every backend); a JAX key draws with ``jax.random`` for JAX arrays, a
    ``torch.Generator`` with torch for torch tensors. A key or generator of another
    library than `xp`'s is a `TypeError` naming `rng` (`what`: ``"G is"``).
    """
    lib = rng_library(rng)
    if lib is None:
        return HostDraws(as_generator(rng))
    check_rng_library(lib, xp, what)
    return JaxDraws(rng) if lib == "jax" else TorchDraws(rng)
