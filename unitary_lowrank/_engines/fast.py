"""The whole-update kernels' gate: when one compiled call does a small update or sketch.

:func:`update` (for :func:`unitary_lowrank.project`, ``transport``, ``retract``) and
:func:`sketch` (for :func:`unitary_lowrank.step`) decide, in O(1), whether a call fits
the one-call Numba kernels of :mod:`.small` — a 2-D square NumPy array, or a CPU torch
tensor that needs no autograd (read through a zero-copy NumPy view), of one supported
dtype, inside the window of ``_tunables`` (``SMALL_MAX_ENTRIES``, ``SMALL_MAX_RANK``,
``SMALL_MAX_WORK``) — and run it; they return None for everything else, and the public
functions then take their general path. Every engine decision of the library lives in
this package: these two gates, :func:`unitary_lowrank._engines.select` for the two-pass
engines, and :mod:`.chunked` for Dask arrays.
"""

from __future__ import annotations

import sys
from types import ModuleType

import numpy as np

from .. import _pool
from .._random import as_generator, host_gaussian
from .._tunables import SMALL_MAX_ENTRIES, SMALL_MAX_RANK, SMALL_MAX_WORK
from . import load_small

__all__ = ["sketch", "takes_namespace", "update"]

# Square matrices of fewer than SMALL_MAX_ENTRIES entries (n < 512), with a step of rank at
# most SMALL_MAX_RANK (and n·k <= SMALL_MAX_WORK for k >= 2), take the one-call Numba update
# (_engines/small.py) under engine="auto"; larger ones the two-pass engines. The window and
# its measurements: _tunables.py.
#: The tolerance of the unitarity check, sqrt(eps), per supported (native) NumPy dtype.
#: (numpy's stub types finfo for real dtypes only; it takes complex ones, giving their parts')
_SMALL_TOL = {np.dtype(name): float(np.finfo(np.dtype(name)).eps) ** 0.5  # type: ignore[type-var]
              for name in ("float32", "float64", "complex64", "complex128")}

def update(U, A, B, method, check_finite_U, check_unitary, out):
    """The update by the one-call kernel of ``_engines/small.py``, or None when not for it.

    Taken for 2-D square NumPy arrays (or CPU torch tensors that need no autograd,
    read through zero-copy NumPy views) of one supported dtype, n < 512, and
    k = 1, or k <= 4 with n·k <= 512.
    Every other call, and every call whose values the kernel refuses (non-finite
    A, B, U or core, U not unitary along the step), returns None: the general
    path then runs and raises the documented error, so messages and checks are
    those of the general path. Nothing of the caller's is written unless the
    result is returned.
    """
    kernel = load_small()
    if kernel is None:
        return None
    if isinstance(U, np.ndarray):
        plain = [_plain_ndarray(x) for x in (U, A, B)]
        if any(x is None for x in plain):
            return None
        result = _numpy_update(kernel, *plain, method, check_finite_U, check_unitary, out)
        if result is None or out is not None or type(U) is np.ndarray:
            return result
        return result.view(type(U))  # as the general path's ``U + ...``
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    return _torch_update(torch, kernel, U, A, B, method, check_finite_U, check_unitary, out)

def _plain_ndarray(x):
    """`x` as a plain ndarray (a view for a subclass that keeps NumPy's arithmetic), else None.

    None for masked arrays and ``numpy.matrix`` (which the general path refuses)
    and for subclasses that override ufuncs or array functions.
    """
    if type(x) is np.ndarray:
        return x
    if not isinstance(x, np.ndarray) or isinstance(x, np.matrix | np.ma.MaskedArray):
        return None
    cls = type(x)
    if (cls.__array_ufunc__ is not np.ndarray.__array_ufunc__
            or cls.__array_function__ is not np.ndarray.__array_function__):
        return None
    return x.view(np.ndarray)

def _numpy_update(kernel, U, A, B, method, check_finite_U, check_unitary, out):
    """:func:`update` of NumPy arrays (O(1) checks, then one kernel call)."""
    if U.ndim != 2 or A.ndim != 2 or B.ndim != 2:
        return None
    n, p = U.shape
    k = A.shape[1]
    if (n != p or n * n >= SMALL_MAX_ENTRIES or not 0 < k <= SMALL_MAX_RANK or n == 0
            or (k > 1 and n * k > SMALL_MAX_WORK)):
        return None
    code = kernel.METHOD_CODES.get(method)
    if code is None:  # a retraction the kernel has no code for: the general path
        return None
    if A.shape[0] != n or B.shape != (n, k):
        return None
    dt = U.dtype
    tol = _SMALL_TOL.get(dt)
    if tol is None or A.dtype != dt or B.dtype != dt or not U.flags.c_contiguous:
        return None
    if out is None:
        result = np.empty((n, n), dtype=dt)
    else:
        if (type(out) is not np.ndarray or out.shape != (n, n) or out.dtype != dt
                or not out.flags.c_contiguous or not out.flags.writeable):
            return None
        if out is not U and np.may_share_memory(out, U):
            return None
        result = out
    _pool.check_environment()
    status = kernel.update(U, np.ascontiguousarray(A), np.ascontiguousarray(B), result,
                           code, bool(check_finite_U),
                           tol if check_unitary else -1.0)
    return result if status == kernel.OK else None

def _torch_update(torch, kernel, U, A, B, method, check_finite_U, check_unitary, out):
    """:func:`update` of CPU torch tensors, through zero-copy NumPy views.

    Only when autograd is not involved (grad mode off, or no input requires grad):
    the result is a new tensor, and `out` receives it by one ``copy_`` (which
    bumps its version counter like any in-place write).
    """
    kinds = (torch.Tensor, torch.nn.Parameter)
    if type(U) not in kinds or type(A) not in kinds or type(B) not in kinds:
        return None
    tensors = (U, A, B) if out is None else (U, A, B, out)
    if out is not None and type(out) not in kinds:
        return None
    if any(t.device.type != "cpu" or t.layout != torch.strided for t in tensors):
        return None
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return None
    unpack = torch.autograd.forward_ad.unpack_dual  # a forward-mode tangent: no NumPy view
    if any(unpack(t).tangent is not None for t in (U, A, B)):
        return None
    if out is not None and (out.shape != U.shape or out.dtype != U.dtype):
        return None
    try:  # conjugate or negative views, functorch wrappers: no zero-copy view
        Un, An, Bn = U.detach().numpy(), A.detach().numpy(), B.detach().numpy()
    except (RuntimeError, TypeError):
        return None
    result = _numpy_update(kernel, Un, An, Bn, method, check_finite_U, check_unitary, None)
    if result is None:
        return None
    result = torch.from_numpy(result)
    if out is None:
        return result
    out.copy_(result)  # one call: wholly old or wholly new
    return out

def takes_namespace(xp, U) -> bool:
    """Whether a given ``xp=`` lets :func:`update` run: None, or U's own library.

    Anything else (another namespace, a bad value) goes to the general path, which
    checks it.
    """
    if xp is None:
        return True
    if not isinstance(xp, ModuleType):
        return False
    ours = ("numpy", "array_api_compat.numpy") if type(U) is np.ndarray else (
        "torch", "array_api_compat.torch")
    return xp.__name__ in ours


# A dense G of fewer than SMALL_MAX_ENTRIES entries (n < 512) with a rank of at most
# SMALL_MAX_RANK (_tunables.py, the window of the one-call update, without its n·k bound) is
# sketched by one compiled call (_engines/small.py) when U and G are 2-D NumPy arrays (or CPU
# torch tensors that need no autograd) of one dtype.
_SMALL_DTYPES = {np.dtype(name): name for name in ("float32", "float64", "complex64",
                                                    "complex128")}


#: G is used as it is when ``max |G|`` lies in [2^-400, 2^400], in single precision
#: [2^-40, 2^40] (else the general path scales it first, as
#: ``sketch._finite_and_scaled`` does).
_SAFE_RANGE = {"float64": (2.0 ** -400, 2.0 ** 400), "complex128": (2.0 ** -400, 2.0 ** 400),
               "float32": (2.0 ** -40, 2.0 ** 40), "complex64": (2.0 ** -40, 2.0 ** 40)}


def sketch(U, G, rank, tol, max_rank, sampler, oversample, n_iter, rng, return_info, xp):
    """``(A, B)`` of a small dense G by one compiled call, or None for the general path.

    Only for arguments that the general path accepts as they are: a square 2-D
    NumPy U (or CPU torch tensor without autograd) and a finite G of its shape and
    dtype, in the safe range, a fixed integer rank <= 4, sampler ``"randomized"``
    or ``"lsi"``, integer `oversample` and `n_iter`, no `tol`/`max_rank`/
    ``return_info``. It draws the same Gaussian test matrix from `rng` and does the
    same products, QRs and SVD as :func:`unitary_lowrank.lowrank`; it declines
    (returns None) before drawing anything, so the general path sees the same
    random stream.
    """
    if tol is not None or max_rank is not None or return_info or sampler not in (
            "randomized", "lsi"):
        return None
    if type(rank) is not int or type(oversample) is not int or type(n_iter) is not int:
        return None
    if oversample < 0 or n_iter < 0:
        return None
    kernel = load_small()
    if kernel is None:
        return None
    torch = None
    if type(U) is np.ndarray:
        if type(G) is not np.ndarray or not (xp is None or getattr(xp, "__name__", None) in (
                "numpy", "array_api_compat.numpy")):
            return None
        Un, Gn = U, G
    else:
        torch = sys.modules.get("torch")
        Un, Gn = _torch_views(torch, U, G, xp)
        if Un is None:
            return None
    if Un.ndim != 2 or Gn.shape != Un.shape or Gn.dtype != Un.dtype:
        return None
    n, p = Un.shape
    name = _SMALL_DTYPES.get(Gn.dtype)
    if name is None or n != p or n * n >= SMALL_MAX_ENTRIES or not 1 <= rank <= min(
            n, SMALL_MAX_RANK):
        return None
    if name.startswith("complex"):
        m = float(np.max(np.abs(Gn)))
    else:  # two reading passes, no |G| temporary; both propagate NaN
        m = max(float(Gn.max()), -float(Gn.min()))
    low, high = _SAFE_RANGE[name]
    if not (m == 0.0 or low <= m <= high):  # NaN, infinity, or to be scaled
        return None
    gen = as_generator(rng)
    Gc = np.ascontiguousarray(Gn)
    if sampler == "lsi":
        A, B = kernel.lsi(Gc, host_gaussian(gen, (n, rank), name))
    else:
        size = min(rank + oversample, n)
        sketch = kernel.randomized_complex if name.startswith("complex") else (
            kernel.randomized_real)
        A, B = sketch(Gc, host_gaussian(gen, (n, size), name), n_iter, rank)
    if torch is not None:
        return torch.from_numpy(A), torch.from_numpy(B)
    return A, B


def _torch_views(torch, U, G, xp):
    """Zero-copy NumPy views of CPU torch tensors U and G, or ``(None, None)``."""
    kinds = () if torch is None else (torch.Tensor, torch.nn.Parameter)
    if type(U) not in kinds or type(G) not in kinds:
        return None, None
    if xp is not None and getattr(xp, "__name__", None) not in ("torch",
                                                                 "array_api_compat.torch"):
        return None, None
    if any(t.device.type != "cpu" or t.layout != torch.strided for t in (U, G)):
        return None, None
    if torch.is_grad_enabled() and (U.requires_grad or G.requires_grad):
        return None, None
    try:  # conjugate or negative views, functorch wrappers: no zero-copy view
        return U.detach().numpy(), G.detach().numpy()
    except (RuntimeError, TypeError):
        return None, None
