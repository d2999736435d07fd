"""Argument checks shared by the public routines.

Every message names the argument and shows what it got, so that a user can
fix the call without reading our source.
"""

from __future__ import annotations

import math
import numbers
import operator
from types import ModuleType
from typing import Any, NamedTuple

from array_api_compat import array_namespace, is_jax_namespace

from . import _pool
from ._array_api import (
    DTYPE_NAMES,
    broadcast_batch,
    check_array_kind,
    device_of,
    dtype_name,
    is_lazy_array,
    namespace_library,
    namespace_of,
    type_name,
)
from .methods import METHODS

__all__ = [
    "METHODS",
    "Step",
    "as_int",
    "as_real",
    "check_dtype",
    "check_finite",
    "check_lr",
    "check_matrix",
    "check_method",
    "check_out",
    "check_same_device",
    "validate_checked_step",
    "validate_step",
]


def as_int(value: Any, name: str, low: int | None = None, high: int | None = None,
           what: str = "") -> int:
    """An integer (not a bool) in ``[low, high]``, else a `TypeError`/`ValueError` naming `name`."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an integer, got {type(value).__name__} {value!r}"
        ) from None
    if high is not None and (v > high or (low is not None and v < low)):
        raise ValueError(f"{name} must satisfy {low} <= {name} <= {high}{what}, got {v}")
    if low is not None and v < low:
        raise ValueError(f"{name} must be at least {low}, got {v}")
    return v


def as_real(value: Any, name: str, *, positive: bool = False) -> float:
    """A finite real number (not a bool) as a float, else a `TypeError`/`ValueError` naming `name`.

    With ``positive=True`` it must also be > 0. NaN and infinities are refused.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type_name(value)} {value!r}")
    v = float(value)
    if positive and not (0.0 < v < math.inf):  # also refuses NaN
        raise ValueError(f"{name} must be a positive number (finite and > 0), got {v!r}")
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v!r} ({name} must be a finite real number)")
    return v




def check_method(method: Any) -> str:
    """The name of a retraction, else a `ValueError`.

    One of :data:`METHODS`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    return method


def check_lr(lr: Any) -> Any:
    """The learning rate of a step ``−lr·G``: a finite real number (any sign).

    A real 0-d array (NumPy, torch, JAX, ...) is taken as its value; a traced one
    (under ``jax.jit``, where a schedule's learning rate is a tracer) is returned
    as it is, since its value is not known yet, and so is a torch tensor that
    requires grad (its value checked), so that the step is differentiable in `lr`.
    """
    if isinstance(lr, numbers.Real) or getattr(lr, "shape", None) is None:
        return as_real(lr, "lr")
    if tuple(lr.shape) != ():
        raise ValueError(f"lr must be a real number or a 0-d array, got shape {tuple(lr.shape)}")
    xp = array_namespace(lr)
    if not xp.isdtype(lr.dtype, ("real floating", "signed integer", "unsigned integer")):
        raise TypeError(f"lr must be a real number, got a 0-d array of dtype {lr.dtype}")
    if is_lazy_array(lr):
        return lr
    if getattr(lr, "requires_grad", False):  # a torch tensor on the autograd tape: kept, so
        as_real(float(lr.detach()), "lr")     # that d/d(lr) flows (its value checked)
        return lr
    return as_real(float(lr), "lr")


def check_out(out: Any, xp: ModuleType, shape: tuple[int, ...], dtype: Any,
              like: tuple[str, Any]) -> None:
    """Check an ``out=`` argument against the result it is to receive. O(1).

    `TypeError` unless `out` is an array of the namespace `xp` of the inputs (``like``
    names one of them, e.g. ``("U", U)``), and a refused kind of array
    (:func:`~unitary_lowrank._array_api.check_array_kind`); `ValueError` when
    its shape or dtype differ from the result's, it lies on another device than
    the input, or it is read-only (or a torch leaf tensor that requires grad,
    with grad mode on: autograd refuses to write it in place).
    """
    if out is None:
        return
    like_name, like_array = like
    lib = namespace_library(xp)
    try:
        same = namespace_of(out) is xp
    except TypeError:
        same = False
    if not same:
        raise TypeError(f"out must be a {lib} array like {like_name}, got {type_name(out)}")
    check_array_kind("out", out)
    if is_jax_namespace(xp):
        raise TypeError("out cannot be a JAX array: JAX arrays are immutable; use the "
                        "returned array instead")
    shape = tuple(shape)
    if tuple(out.shape) != shape or out.dtype != dtype:
        raise ValueError(
            f"out must have shape {shape} and dtype {dtype_name(xp, dtype)}, got "
            f"{tuple(out.shape)} and {dtype_name(xp, out.dtype)}"
        )
    if device_of(out) != device_of(like_array):
        raise ValueError(
            f"out is on device {device_of(out)!r} but {like_name} is on "
            f"{device_of(like_array)!r}; pass an out on the device of the result"
        )
    if not getattr(getattr(out, "flags", None), "writeable", True):
        raise ValueError("out is read-only")
    if getattr(out, "requires_grad", False) and getattr(out, "is_leaf", False):
        import torch  # out is a torch tensor

        if torch.is_grad_enabled():
            raise ValueError(
                "out is a leaf tensor that requires grad (e.g. a Parameter), which autograd "
                "does not let be written in place; pass out=weight.data, or call under "
                "torch.no_grad()"
            )


def check_dtype(x: Any, name: str, xp: ModuleType) -> None:
    """`TypeError` unless `x` has one of the four supported floating dtypes."""
    if dtype_name(xp, x.dtype) not in DTYPE_NAMES:
        raise TypeError(
            f"{name} must have dtype float32, float64, complex64 or complex128, "
            f"got {dtype_name(xp, x.dtype)}"
        )


def check_matrix(x: Any, name: str, xp: ModuleType, layout: str = "(..., m, n)") -> None:
    """Dtype check plus `ValueError` unless `x` has at least two dimensions."""
    if getattr(x, "ndim", 0) < 2:
        raise ValueError(
            f"{name} must have at least 2 dimensions {layout}, got shape {tuple(x.shape)}"
        )
    check_dtype(x, name, xp)


def _placement(dev: Any) -> Any:
    """What two arrays must share: the device, or for a sharded JAX array its set of devices.

    A sharded JAX array's "device" is its sharding; two shardings over the same
    devices (U by rows, A replicated, or the same layout spelled ``P("rows")``
    and ``P("rows", None)``) are one placement, and JAX moves the data itself.
    """
    devices = getattr(dev, "device_set", None)
    if devices is None:
        return dev
    return next(iter(devices)) if len(devices) == 1 else frozenset(devices)


def check_same_device(named: list[tuple[str, Any]]) -> None:
    """`ValueError` when arrays live on different devices (never copy between them)."""
    # A traced array (under jax.grad or jax.jit) has no device, None: nothing to compare.
    placed = [(name, dev) for name, dev in ((name, device_of(x)) for name, x in named)
              if dev is not None]
    if not placed:
        return
    (first_name, first_dev), *rest = placed
    for name, dev in rest:
        if _placement(dev) != _placement(first_dev):
            raise ValueError(
                f"{name} is on device {dev!r} but {first_name} is on {first_dev!r}; "
                "move them to one device first"
            )


def check_finite(x: Any, name: str, xp: ModuleType) -> None:
    """`ValueError` when `x` holds NaN or infinity (skipped for lazy arrays under jit)."""
    if is_lazy_array(x):
        return
    ok = xp.all(xp.isfinite(x))
    if is_lazy_array(ok):  # a constant x inside jax.jit: the test itself is traced
        return
    if not bool(ok):
        raise ValueError(f"{name} contains NaN or infinity")


class Step(NamedTuple):
    """Validated inputs of a low-rank update, cast to their common dtype."""

    U: Any
    A: Any
    B: Any
    batch: tuple[int, ...]


def validate_step(
    U: Any,
    A: Any,
    B: Any,
    xp: ModuleType,
    *,
    square: bool,
    check_finite_U: bool,
    func: str,
) -> Step:
    """Check shapes, dtypes, devices and values of a step ``U + A @ B^H``.

    Every update passes here (or through :func:`validate_checked_step`) first, so
    this is also where a malformed ``UNITARY_LOWRANK_RESULT_POOL`` is reported
    (O(1) once read).
    """
    _pool.check_environment()
    check_matrix(U, "U", xp, "(..., n, p)")
    check_matrix(A, "A", xp, "(..., n, k)")
    check_matrix(B, "B", xp, "(..., p, k)")
    return _fit_step(U, A, B, xp, square=square, check_finite_U=check_finite_U, func=func)


def validate_checked_step(
    U: Any,
    A: Any,
    B: Any,
    xp: ModuleType,
    *,
    square: bool,
    check_finite_U: bool,
    func: str,
) -> Step:
    """:func:`validate_step` without the checks of the single arrays.

    For a U that passed :func:`check_matrix` and factors A, B that the library
    computed in `xp`.
    """
    _pool.check_environment()
    return _fit_step(U, A, B, xp, square=square, check_finite_U=check_finite_U, func=func)


def _fit_step(U: Any, A: Any, B: Any, xp: ModuleType, *, square: bool, check_finite_U: bool,
              func: str) -> Step:
    """The checks of :func:`validate_step` that relate U, A and B, the values, and the cast."""
    n, p = U.shape[-2:]
    if square and n != p:
        raise ValueError(f"{func} needs a square U of shape (..., n, n), got {tuple(U.shape)}")
    if p > n:
        raise ValueError(
            f"U must have shape (..., n, p) with p <= n (orthonormal columns), "
            f"got {tuple(U.shape)}"
        )
    if A.shape[-2] != n:
        raise ValueError(
            f"A must have shape (..., n, k) with n = {n} rows like U, got {tuple(A.shape)}"
        )
    if B.shape[-2] != p:
        raise ValueError(
            f"B must have shape (..., p, k) with p = {p} rows (the columns of U), "
            f"got {tuple(B.shape)}"
        )
    if A.shape[-1] != B.shape[-1]:
        raise ValueError(
            f"A and B must have the same number of columns k, got A {tuple(A.shape)} "
            f"and B {tuple(B.shape)}"
        )
    try:
        batch = broadcast_batch(U.shape[:-2], A.shape[:-2], B.shape[:-2])
    except ValueError:
        raise ValueError(
            f"the batch axes of U {tuple(U.shape)}, A {tuple(A.shape)} and "
            f"B {tuple(B.shape)} do not broadcast"
        ) from None
    check_same_device([("U", U), ("A", A), ("B", B)])
    check_finite(A, "A", xp)
    check_finite(B, "B", xp)
    if check_finite_U:
        check_finite(U, "U", xp)
    dtype = xp.result_type(U.dtype, A.dtype, B.dtype)
    U, A, B = (x if x.dtype == dtype else xp.astype(x, dtype) for x in (U, A, B))
    return Step(U, A, B, batch)
