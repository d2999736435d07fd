"""Namespace, device and dtype helpers shared by every public routine.

Nothing here imports an optional library: array-api-compat inspects
``sys.modules`` before it looks at an array, so a NumPy user never pays for
torch or CuPy.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

import array_api_compat
from array_api_compat import array_namespace
from array_api_compat import is_lazy_array as _compat_is_lazy_array

from ._tunables import MATMUL_BLOCK_BYTES

__all__ = [
    "DTYPE_NAMES",
    "adjoint_product",
    "align_factors",
    "basis_update",
    "broadcast_batch",
    "check_array_kind",
    "chunked_like",
    "core_dtype",
    "device_of",
    "dtype_name",
    "eye_like",
    "get_namespace",
    "herm",
    "in_one_task",
    "is_complex",
    "is_dask_array",
    "is_lazy_array",
    "is_numpy_namespace",
    "matmul_add",
    "namespace_library",
    "namespace_of",
    "no_fp_warnings",
    "real_dtype",
    "resolve_namespace",
    "splits_matrices",
    "square_tiles",
    "thin_product",
    "type_name",
    "whole_matrices",
]

#: The four dtypes every routine supports.
DTYPE_NAMES = ("float32", "float64", "complex64", "complex128")

device_of = array_api_compat.device
is_dask_array = array_api_compat.is_dask_array
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
    return {"builtins": type(x).__name__, "jaxlib": "jax"}.get(mod, mod)


def type_name(x: Any) -> str:
    """Qualified type of an object for messages: ``torch.Tensor``, ``numpy.ndarray``, ``list``."""
    mod = type(x).__module__.split(".")[0]
    mod = {"jaxlib": "jax"}.get(mod, mod)
    return type(x).__name__ if mod == "builtins" else f"{mod}.{type(x).__name__}"


def namespace_library(xp: Any) -> str:
    """Library of a namespace for messages: ``numpy`` for ``array_api_compat.numpy``."""
    name = getattr(xp, "__name__", type(xp).__name__)
    name = name.removeprefix("array_api_compat.")
    return {"jax.numpy": "jax", "dask.array": "dask"}.get(name, name)


#: Libraries whose plain module maps to array-api-compat's wrapper of the same name.
_COMPAT_WRAPPED = (
    ("numpy", array_api_compat.is_numpy_namespace),
    ("torch", array_api_compat.is_torch_namespace),
    ("cupy", array_api_compat.is_cupy_namespace),
    ("dask.array", array_api_compat.is_dask_namespace),
)
#: Namespaces that are Array-API namespaces themselves, accepted as they are.
_NATIVE = (
    array_api_compat.is_array_api_strict_namespace,
    array_api_compat.is_ndonnx_namespace,
    array_api_compat.is_pydata_sparse_namespace,
)
_RESOLVED: dict[ModuleType, ModuleType] = {}


def _bad_xp(xp: Any, why: str = "") -> TypeError:
    what = f"module {xp.__name__}" if isinstance(xp, ModuleType) else (
        f"{type_name(xp)} {xp!r}" if isinstance(xp, str | int | float) else type_name(xp)
    )
    return TypeError(
        "xp must be an array namespace: numpy, torch, cupy or jax.numpy, a namespace of "
        f"array_api_compat, or array_api_strict{why}, got {what}"
    )


def resolve_namespace(xp: Any) -> ModuleType:
    """The namespace to compute with for a user's ``xp=``, else a `TypeError` naming `xp`.

    A plain ``numpy``, ``torch``, ``cupy`` (or ``dask.array``) module becomes
    array-api-compat's wrapper of it, ``jax.numpy`` the namespace array-api-compat
    gives JAX arrays; array-api-compat's namespaces and array-api-strict are taken
    as they are. Anything else (a string, a number, an unrelated module) is refused.
    O(1): the answer is cached per module.
    """
    if not isinstance(xp, ModuleType):
        raise _bad_xp(xp)
    ns = _RESOLVED.get(xp)
    if ns is not None:
        return ns
    ns = _with_dask_linalg(_resolve_module(xp))
    _RESOLVED[xp] = ns
    return ns


def _resolve_module(xp: ModuleType) -> ModuleType:
    name = getattr(xp, "__name__", None)
    if not isinstance(name, str):
        raise _bad_xp(xp)
    for lib, is_lib in _COMPAT_WRAPPED:
        if is_lib(xp):
            if name.startswith("array_api_compat."):
                return xp
            return importlib.import_module(f"array_api_compat.{lib}")
    if array_api_compat.is_jax_namespace(xp):
        import jax.numpy as jnp  # already imported: xp is a module of it

        return array_namespace(jnp.empty(0))
    if any(is_ns(xp) for is_ns in _NATIVE):
        return xp
    raise _bad_xp(xp)


def check_array_kind(name: str, x: Any) -> None:
    """`TypeError` naming `name` for arrays that array-api-compat accepts but we cannot use.

    NumPy masked arrays (whose mask every routine would silently drop), ``numpy.matrix``
    (whose ``*`` is a matrix product and which is always 2-D) and torch ``meta``
    tensors (a shape without data). O(1): type and device checks only.
    """
    np_mod = sys.modules.get("numpy")
    if np_mod is not None and isinstance(x, np_mod.ndarray) and type(x) is not np_mod.ndarray:
        ma = sys.modules.get("numpy.ma")
        if ma is not None and isinstance(x, ma.MaskedArray):
            raise TypeError(
                f"{name} must be a plain numpy.ndarray, got a masked array "
                f"({type_name(x)}), whose mask would be ignored; pass "
                f"{name}.filled(value) or numpy.asarray({name}) to drop the mask explicitly"
            )
        if isinstance(x, np_mod.matrix):
            raise TypeError(
                f"{name} must be a plain numpy.ndarray, got numpy.matrix; pass "
                f"numpy.asarray({name})"
            )
    elif array_api_compat.is_torch_array(x) and x.is_meta:
        raise TypeError(
            f"{name} must be a torch tensor with data, got a torch.Tensor on the 'meta' "
            f"device (shape {tuple(x.shape)}, no values); materialise it first, e.g. with "
            "torch.empty_like(..., device='cpu')"
        )


def get_namespace(*named: tuple[str, Any], xp: Any = None) -> ModuleType:
    """Common array namespace of ``(name, array)`` pairs, checked against `xp` if given.

    Raises a `TypeError` naming the arguments when they come from different
    libraries, are not arrays at all or are arrays we refuse (see
    :func:`check_array_kind`), and naming `xp` when it is not an array namespace
    (:func:`resolve_namespace`) or not the one of the arrays.
    """
    for name, x in named:
        try:
            array_namespace(x)
        except TypeError:
            raise TypeError(
                f"{name} must be an array of an Array-API library (NumPy, CuPy, "
                f"PyTorch, JAX, array-api-strict), got {type_name(x)}"
            ) from None
        check_array_kind(name, x)
    if not named:
        return resolve_namespace(xp)
    try:
        inferred = _with_dask_linalg(array_namespace(*(x for _, x in named)))
    except TypeError:
        libs = ", ".join(f"{name}: {_library_name(x)}" for name, x in named)
        raise TypeError(
            f"{', '.join(n for n, _ in named)} must come from one array library, got {libs}"
        ) from None
    if xp is None or xp is inferred:
        return inferred
    ns = resolve_namespace(xp)
    if ns is not inferred:
        names = ", ".join(n for n, _ in named)
        raise TypeError(
            f"xp must be the namespace of {names}, {namespace_library(inferred)} arrays, "
            f"got {getattr(xp, '__name__', xp)} (pass xp=None to infer it)"
        )
    return ns


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
    """Double-precision dtype of the same kind: the precision of the small cores.

    JAX without ``jax_enable_x64`` has no double precision (asking for it warns and
    truncates): there the cores run in the dtype itself.
    """
    if array_api_compat.is_jax_namespace(xp) and not _jax_x64():
        return dtype
    return xp.complex128 if is_complex(xp, dtype) else xp.float64


def _jax_x64() -> bool:
    jax = sys.modules.get("jax")
    return bool(jax is not None and jax.config.jax_enable_x64)


def herm(x: Any, xp: ModuleType) -> Any:
    """Conjugate transpose of the last two axes (plain transpose for real dtypes)."""
    xt = xp.matrix_transpose(x)
    return xp.conj(xt) if is_complex(xp, x.dtype) else xt


def _torch_cpu(xp: ModuleType, x: Any) -> bool:
    return array_api_compat.is_torch_namespace(xp) and x.device.type == "cpu"


def thin_product(M: Any, Z: Any, xp: ModuleType) -> Any:
    """``M @ Z`` for a large M (...×m×n) and a thin Z (...×n×k, k small).

    On the CPU, torch's matrix multiply (MKL) is slow for a square matrix times
    a few columns: 2–4× slower than the same product computed as
    ``(Zᵀ Mᵀ)ᵀ`` (a few rows times the transposed view of M, no copy) at
    n = 1024–2048, k = 2–4. The same numbers in another summation order.
    Other libraries take ``M @ Z``.
    """
    if _torch_cpu(xp, M):
        return xp.matrix_transpose(xp.matrix_transpose(Z) @ xp.matrix_transpose(M))
    return M @ Z


def adjoint_product(M: Any, Z: Any, xp: ModuleType) -> Any:
    """``Mᴴ @ Z`` for a large M (...×m×n) and a thin Z (...×m×k).

    Computed as ``(Zᴴ M)ᴴ`` for torch on the CPU: only thin arrays are
    conjugated (``Mᴴ`` of a complex M would be a copy of M), and MKL's product
    of a transposed square matrix and a few columns is 10–30× slower than this
    form at n = 1024–2048, k = 2–4. Also for JAX: for a Z of one column, XLA on
    the CPU copies M (or each device's rows of an M sharded by rows) into its
    transpose, and the sharded product with 4 columns is slower too (n = 4096,
    float32: one column 16× this form's time on one device, 29× on 4 host
    devices; 4 columns on 4 host devices 10×). Other libraries take
    ``herm(M) @ Z``.
    """
    if _torch_cpu(xp, M) or array_api_compat.is_jax_namespace(xp):
        return herm(herm(Z, xp) @ M, xp)
    return herm(M, xp) @ Z


def matmul_add(C: Any, A: Any, B: Any, xp: ModuleType) -> Any:
    """``C + A @ B`` (A: ...×n×r, B: ...×r×m, C: ...×n×m of the same dtype).

    For torch tensors of matching shapes, one fused ``addmm`` / ``baddbmm`` call:
    the product is accumulated into a copy of C by the matrix multiply itself,
    so the n×m product never exists as a temporary (a third less memory
    traffic, and one allocation instead of two). For Dask arrays of matching
    shapes, one task per chunk of C (:func:`_dask_matmul_add`). Everything else
    (and a call whose batch axes would broadcast) takes the plain expression.
    """
    same_batch = A.shape[:-2] == C.shape[:-2] == B.shape[:-2]
    if array_api_compat.is_torch_namespace(xp) and same_batch:
        torch = sys.modules["torch"]
        if C.ndim == 2:
            if 0 < A.shape[-1] <= 2 and C.dtype == torch.float32 and _torch_cpu(xp, C):
                # MKL's sgemm is slow with an inner dimension of 1 or 2 (the rank-1
                # update's r = 2): rank-one updates take a quarter of its time at
                # n = 512–2048 (float64 and complex gain nothing, so keep addmm)
                out = torch.addr(C, A[:, 0], B[0])
                for j in range(1, A.shape[-1]):
                    out.addr_(A[:, j], B[j])
                return out
            return torch.addmm(C, A, B)
        if C.ndim == 3:
            return torch.baddbmm(C, A, B)
    if same_batch and array_api_compat.is_dask_array(C):
        return _dask_matmul_add(C, A, B)
    return C + A @ B


# MATMUL_BLOCK_BYTES (_tunables.py): bytes of the product block that
# _chunk_matmul_add keeps in cache.


def _chunk_matmul_add(c: Any, a: Any, b: Any) -> Any:
    """``c + a @ b`` of one chunk; for NumPy by blocks of rows, so c is read once.

    Each block's product stays in cache and is added into the result, which is
    written once: one pass over the chunk, where ``c + a @ b`` makes three.
    """
    np = sys.modules["numpy"]
    if type(c) is not np.ndarray:  # another chunk library (CuPy): its own expression
        return c + a @ b
    out = np.empty(np.broadcast_shapes(c.shape, a.shape[:-1] + b.shape[-1:]), dtype=c.dtype)
    rows = max(1, MATMUL_BLOCK_BYTES // max(1, out.shape[-1] * out.itemsize))
    tmp = np.empty((*out.shape[:-2], min(rows, out.shape[-2]), out.shape[-1]), dtype=c.dtype)
    for s in range(0, out.shape[-2], rows):
        e = min(out.shape[-2], s + rows)
        t = tmp[..., : e - s, :]
        np.matmul(a[..., s:e, :], b, out=t)
        np.add(c[..., s:e, :], t, out=out[..., s:e, :])
    return out


def basis_update(U: Any, Q: Any, K: Any, xp: ModuleType) -> Any:
    """``U + (U Q) K`` (U: ...×n×p, Q: ...×p×r, K: ...×r×p), the left basis formed in it.

    For a Dask U with its columns in one chunk, one task per chunk of rows, which
    reads the chunk once (:func:`_chunk_basis_update`): the update then reads U
    twice in all (``Uᴴ A``, this) and writes it once. Otherwise
    ``matmul_add(U, thin_product(U, Q), K)``, the arithmetic of the separate steps.
    """
    if (array_api_compat.is_dask_array(U) and len(U.chunks[-1]) == 1
            and Q.shape[:-2] == K.shape[:-2] == U.shape[:-2]):
        import dask.array as da

        nd = U.ndim
        Q = Q.rechunk({nd - 2: -1, nd - 1: -1})
        K = K.rechunk({nd - 2: -1, nd - 1: -1})
        batch = tuple(range(nd - 2))
        i, j, r = nd, nd + 1, nd + 2
        return da.blockwise(_chunk_basis_update, (*batch, i, j), U, (*batch, i, j), Q,
                            (*batch, j, r), K, (*batch, r, j), dtype=U.dtype,
                            concatenate=True)
    return matmul_add(U, thin_product(U, Q, xp), K, xp)


def _chunk_basis_update(u: Any, q: Any, k: Any) -> Any:
    """``u + (u q) k`` of one chunk; for NumPy by blocks of rows that stay in cache."""
    np = sys.modules["numpy"]
    if type(u) is not np.ndarray:
        return u + (u @ q) @ k
    out = np.empty(u.shape, dtype=u.dtype)
    rows = max(1, MATMUL_BLOCK_BYTES // max(1, u.shape[-1] * u.itemsize))
    m = min(rows, u.shape[-2])
    left = np.empty((*u.shape[:-2], m, q.shape[-1]), dtype=u.dtype)
    tmp = np.empty((*u.shape[:-2], m, u.shape[-1]), dtype=u.dtype)
    for s in range(0, u.shape[-2], rows):
        e = min(u.shape[-2], s + rows)
        block = u[..., s:e, :]
        np.matmul(block, q, out=left[..., : e - s, :])
        np.matmul(left[..., : e - s, :], k, out=tmp[..., : e - s, :])
        np.add(block, tmp[..., : e - s, :], out=out[..., s:e, :])
    return out


def _dask_matmul_add(C: Any, A: Any, B: Any) -> Any:
    """``C + A @ B`` of Dask arrays, each chunk of the result by one task.

    A takes C's row chunks, B C's column chunks, and the r axis one chunk. Dask's
    ``C + A @ B`` would write each chunk of C's size three times (the product, a
    sum over the one chunk of r, the addition); here the product is written once
    and C added into it.
    """
    import dask.array as da

    nd = C.ndim
    A = A.rechunk({nd - 2: C.chunks[-2], nd - 1: -1})
    B = B.rechunk({nd - 2: -1, nd - 1: C.chunks[-1]})
    batch = tuple(range(nd - 2))
    i, j, r = nd, nd + 1, nd + 2
    return da.blockwise(_chunk_matmul_add, (*batch, i, j), C, (*batch, i, j), A,
                        (*batch, i, r), B, (*batch, r, j), dtype=C.dtype, concatenate=True)


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


def no_fp_warnings(xp: ModuleType):
    """Silence NumPy's overflow warnings in a block whose results are checked instead."""
    if is_numpy_namespace(xp):
        import numpy as np

        return np.errstate(over="ignore", invalid="ignore")
    import contextlib

    return contextlib.nullcontext()


# --- Dask: small dense decompositions of chunked arrays -----------------------------------
#
# dask.array's own linalg factors only 2-D matrices whose columns lie in one chunk (tsqr,
# svd) and has no eigh at all. Every decomposition this library takes is of small
# matrices (a p×k panel, a k×k core) or of a batch of them, so for Dask arrays the
# namespace's ``linalg`` decomposes each matrix of the batch in one task: its last two
# axes are gathered into one chunk (O(nk) numbers for an n×k panel, never an n×n
# matrix, which no routine decomposes), batch axes keep their chunks, and the chunk's own
# library (NumPy, CuPy) does the work through array-api-compat, as on an eager array.


class _Namespace(ModuleType):
    """The module `base`, with some of its names replaced by `overrides`."""

    def __init__(self, base: ModuleType, **overrides: Any):
        super().__init__(base.__name__, base.__doc__)
        self.__dict__.update(overrides)
        self._base = base

    def __getattr__(self, name: str) -> Any:  # names not overridden
        return getattr(self._base, name)


def _chunk_linalg(x: Any) -> Any:
    return array_namespace(x).linalg


def _blockwise(func: Any, signature: str, x: Any, dtypes: Any, sizes: dict[str, int]) -> Any:
    """`func` on each matrix of the Dask array `x` (core axes in one chunk), lazily.

    `dtypes` are those of the outputs (a tuple for several), `sizes` the lengths
    of the output core axes that the input does not have.
    """
    import dask.array as da

    x = x.rechunk({x.ndim - 2: -1, x.ndim - 1: -1})
    chunk_xp = array_namespace(x._meta)
    outs = signature.split("->")[1].split("),(")
    several = isinstance(dtypes, tuple)
    metas = tuple(chunk_xp.empty((0,) * (x.ndim - 2 + out.count(",") + 1), dtype=dt)
                  for out, dt in zip(outs, dtypes if several else (dtypes,), strict=True))
    return da.apply_gufunc(func, signature, x, output_sizes=sizes,
                           meta=metas if several else metas[0])


def _rows_like(L: Any, x: Any) -> Any:
    """The left factor `L` of `x` (its rows gathered by :func:`_blockwise`) in `x`'s row chunks.

    A tall panel's Q then multiplies row-chunked matrices block by block (``Q @ C``
    is formed one block of rows at a time, never as one n×n chunk).
    """
    return L.rechunk({L.ndim - 2: x.chunks[-2]})


def _real_of(dtype: Any) -> Any:
    import numpy as np

    return np.empty(0, dtype=dtype).real.dtype


def _dask_qr(x: Any, mode: str = "reduced") -> Any:
    if mode != "reduced":
        raise ValueError("dask arrays only support mode='reduced'")
    k = min(x.shape[-2:])
    Q, R = _blockwise(lambda a: tuple(_chunk_linalg(a).qr(a)), "(m,n)->(m,k),(k,n)", x,
                      (x.dtype, x.dtype), {"k": k})
    return _DASK_BASE.linalg.QRResult(_rows_like(Q, x), R)


def _dask_svd(x: Any, full_matrices: bool = True) -> Any:
    if full_matrices:
        raise ValueError("full_matrices=True is not supported for dask arrays")
    k = min(x.shape[-2:])
    parts = _blockwise(lambda a: tuple(_chunk_linalg(a).svd(a, full_matrices=False)),
                       "(m,n)->(m,k),(k),(k,n)", x, (x.dtype, _real_of(x.dtype), x.dtype),
                       {"k": k})
    return _DASK_BASE.linalg.SVDResult(_rows_like(parts[0], x), *parts[1:])


def _dask_svdvals(x: Any) -> Any:
    return _blockwise(lambda a: _chunk_linalg(a).svdvals(a), "(m,n)->(k)", x,
                      _real_of(x.dtype), {"k": min(x.shape[-2:])})


def _dask_eigh(x: Any) -> Any:
    w, V = _blockwise(lambda a: tuple(_chunk_linalg(a).eigh(a)), "(m,n)->(m),(m,n)", x,
                      (_real_of(x.dtype), x.dtype), {})
    return _DASK_BASE.linalg.EighResult(w, V)


def _dask_eigvalsh(x: Any) -> Any:
    return _blockwise(lambda a: _chunk_linalg(a).eigvalsh(a), "(m,n)->(m)", x,
                      _real_of(x.dtype), {})


_DASK_BASE: Any = None
_DASK: ModuleType | None = None


def namespace_of(x: Any) -> ModuleType:
    """The namespace :func:`get_namespace` gives `x` (`TypeError` if `x` is not an array)."""
    return _with_dask_linalg(array_namespace(x))


def _with_dask_linalg(ns: ModuleType) -> ModuleType:
    """`ns`, or for Dask our namespace: array-api-compat's with the decompositions above.

    One module object per process, so that namespaces compare with ``is``.
    """
    global _DASK_BASE, _DASK
    if not array_api_compat.is_dask_namespace(ns):
        return ns
    if _DASK is None:
        base = importlib.import_module("array_api_compat.dask.array")
        _DASK_BASE = base
        linalg = _Namespace(base.linalg, qr=_dask_qr, svd=_dask_svd, svdvals=_dask_svdvals,
                            eigh=_dask_eigh, eigvalsh=_dask_eigvalsh)
        _DASK = _Namespace(base, linalg=linalg)
    return _DASK


def splits_matrices(x: Any) -> bool:
    """Whether `x` is a Dask array whose matrices (last two axes) span several chunks."""
    return array_api_compat.is_dask_array(x) and (len(x.chunks[-2]) > 1
                                                  or len(x.chunks[-1]) > 1)


def align_factors(U: Any, A: Any, B: Any) -> tuple[Any, Any]:
    """``(A, B)`` of a step ``U + A Bᴴ`` chunked to fit U's chunks (Dask; others unchanged).

    A's rows take U's row chunks, B's rows U's column chunks, and their k columns
    one chunk, so that the low-rank products of the update keep U's chunks (the
    result is chunked like U, and no product spans more than a chunk of U).
    """
    if not array_api_compat.is_dask_array(U):
        return A, B
    return (A.rechunk({A.ndim - 2: U.chunks[-2], A.ndim - 1: -1}),
            B.rechunk({B.ndim - 2: U.chunks[-1], B.ndim - 1: -1}))


def square_tiles(x: Any) -> Any:
    """A Dask `x` split by rows, with its columns split like its rows (others unchanged).

    The Gram matrix ``xᴴx`` of a row-chunked x is then formed tile by tile instead
    of as one p×p chunk.
    """
    if not splits_matrices(x):
        return x
    return x.rechunk({x.ndim - 1: max(x.chunks[-2])})


def chunked_like(x: Any, like: Any) -> Any:
    """A Dask `x` in the chunks of `like` (others unchanged)."""
    if not array_api_compat.is_dask_array(x) or x.chunks == like.chunks:
        return x
    return x.rechunk(like.chunks)


def eye_like(p: int, like: Any, xp: ModuleType) -> Any:
    """The p×p identity in `like`'s dtype, on its device; for Dask, in its last axis's chunks.

    `like` is (..., p, p): a Gram matrix formed tile by tile gets an identity of the
    same tiles, not one p×p chunk.
    """
    if not array_api_compat.is_dask_array(like):
        return xp.eye(p, dtype=like.dtype, device=device_of(like))
    import dask.array as da

    c = like.chunks[-1]
    return da.eye(p, chunks=max(c, default=1), dtype=like.dtype).rechunk((c, c))


def in_one_task(func: Any, outputs: list[tuple[tuple[int, ...], Any]], *arrays: Any,
                xp: ModuleType) -> tuple[Any, ...]:
    """``func(*arrays, xp=xp)``, a tuple; for Dask arrays, computed by one task.

    For arrays small enough for one worker (n×k panels, k×k cores), whose
    arithmetic as Dask arrays would be dozens of tiny tasks, each a round trip to
    the scheduler: here the arrays are gathered (O(nk) numbers), `func` runs on
    them with their chunks' own namespace, and the results come back as Dask
    arrays of the `outputs` shapes and dtypes.
    """
    if not any(array_api_compat.is_dask_array(a) for a in arrays):
        return tuple(func(*arrays, xp=xp))
    import dask
    import dask.array as da

    meta_xp = array_namespace(next(a for a in arrays if array_api_compat.is_dask_array(a))._meta)
    task = dask.delayed(_one_task, nout=len(outputs), pure=True)(func, *arrays)
    return tuple(
        da.from_delayed(task[i], shape, dtype=dtype,
                        meta=meta_xp.empty((0,) * len(shape), dtype=dtype))
        for i, (shape, dtype) in enumerate(outputs)
    )


def _one_task(func: Any, *arrays: Any) -> tuple[Any, ...]:
    return tuple(func(*arrays, xp=array_namespace(*arrays)))


def whole_matrices(x: Any) -> Any:
    """A Dask `x` with each matrix (its last two axes) in one chunk; others unchanged.

    For thin arrays only (n×k factors), whose numbers one task can hold.
    """
    if not array_api_compat.is_dask_array(x) or not splits_matrices(x):
        return x
    return x.rechunk({x.ndim - 2: -1, x.ndim - 1: -1})
