"""Namespace, device and dtype helpers shared by every public routine.

Nothing here imports an optional library: array-api-compat inspects
``sys.modules`` before it looks at an array, so a NumPy user never pays for
torch or CuPy.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat
from array_api_compat import array_namespace
from array_api_compat import is_lazy_array as _compat_is_lazy_array

__all__ = [
    "DTYPE_NAMES",
    "broadcast_batch",
    "core_dtype",
    "device_of",
    "dtype_name",
    "get_namespace",
    "herm",
    "is_complex",
    "is_lazy_array",
    "is_numpy_namespace",
    "real_dtype",
]

#: The four dtypes every routine supports.
DTYPE_NAMES = ("float32", "float64", "complex64", "complex128")

device_of = array_api_compat.device
is_numpy_namespace = array_api_compat.is_numpy_namespace


def is_lazy_array(x: Any) -> bool:
    """Whether reading the values of `x` is impossible or would force a computation.

    As ``array_api_compat.is_lazy_array`` (Dask, ndonnx, unknown lazy types), except
    that a concrete JAX array is not lazy: only JAX tracers (inside ``jax.jit``,
    ``jax.grad``, ``vmap``) are. array-api-compat answers True for every JAX array,
    which would skip the NaN, finiteness and unitarity checks on ordinary JAX input.
    """
    if array_api_compat.is_jax_array(x):
        import jax  # already imported: x is a JAX array

        tracer = getattr(jax.core, "Tracer", None)
        return True if tracer is None else isinstance(x, tracer)
    return _compat_is_lazy_array(x)


def _library_name(x: Any) -> str:
    """Short human name of the library an object comes from (for messages)."""
    mod = type(x).__module__.split(".")[0]
    return {"builtins": type(x).__name__}.get(mod, mod)


def get_namespace(*named: tuple[str, Any], xp: ModuleType | None = None) -> ModuleType:
    """Common array namespace of ``(name, array)`` pairs, or `xp` if given.

    Raises a `TypeError` naming the arguments when they come from different
    libraries or are not arrays at all.
    """
    if xp is not None:
        return xp
    for name, x in named:
        try:
            array_namespace(x)
        except TypeError:
            raise TypeError(
                f"{name} must be an array of an Array-API library (NumPy, CuPy, "
                f"PyTorch, JAX, array-api-strict), got {type(x).__name__}"
            ) from None
    try:
        return array_namespace(*(x for _, x in named))
    except TypeError:
        libs = ", ".join(f"{name}: {_library_name(x)}" for name, x in named)
        raise TypeError(
            f"{', '.join(n for n, _ in named)} must come from one array library, got {libs}"
        ) from None


def dtype_name(xp: ModuleType, dtype: Any) -> str:
    """Canonical name of a supported dtype, or ``str(dtype)`` for any other."""
    for name in DTYPE_NAMES:
        if dtype == getattr(xp, name):
            return name
    return str(dtype)


def is_complex(xp: ModuleType, dtype: Any) -> bool:
    """Whether `dtype` is a complex floating dtype."""
    return bool(xp.isdtype(dtype, "complex floating"))


def real_dtype(xp: ModuleType, dtype: Any) -> Any:
    """Real floating dtype of the same precision (complex64 -> float32)."""
    name = dtype_name(xp, dtype)
    return {"complex64": xp.float32, "complex128": xp.float64}.get(name, dtype)


def core_dtype(xp: ModuleType, dtype: Any) -> Any:
    """Double-precision dtype of the same kind: the precision of the small cores."""
    return xp.complex128 if is_complex(xp, dtype) else xp.float64


def herm(x: Any, xp: ModuleType) -> Any:
    """Conjugate transpose of the last two axes (plain transpose for real dtypes)."""
    xt = xp.matrix_transpose(x)
    return xp.conj(xt) if is_complex(xp, x.dtype) else xt


def broadcast_batch(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """Broadcast batch shapes with NumPy's rules; `ValueError` when incompatible."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        sizes = {s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0}
        sizes.discard(1)
        if len(sizes) > 1:
            raise ValueError(f"batch shapes {', '.join(map(str, shapes))} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)
