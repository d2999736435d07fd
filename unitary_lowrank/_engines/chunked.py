"""The Numba engine on a Dask U, chunk by chunk (one matrix chunked by rows, k <= 2).

:func:`update` builds the graph of the two passes of the two-pass engines over the
chunks of rows of U; it returns None when the call is not for it (then the portable
body runs on the Dask array).
"""

from __future__ import annotations

import numpy as np

from .._agnostic import _updates
from .._array_api import get_namespace
from . import load_numba

__all__ = ["update"]


def update(U, A, B, method):
    """The square update of a Dask U by the Numba engine, chunk by chunk; None if not for it.

    For one matrix of NumPy chunks, chunked by rows only, k <= 2 (the engine's
    ``"auto"`` range) and numba installed. The graph has one task per chunk of
    rows for each pass and one for the core, as the two passes of
    :func:`_two_pass_update`: ``Uᴴ A`` (a partial per chunk) with ``U B`` in one read,
    the core on the summed ``Uᴴ A``, then ``U + L (F − I) Qᴴ`` with
    ``L = [U B, A] R⁻¹`` (or ``U Q``) in one read and one write. The engine gets
    only NumPy chunks, each result written into a new array (no result pool).
    """
    k = A.shape[-1]
    if (U.ndim != 2 or A.ndim != 2 or B.ndim != 2 or len(U.chunks[-1]) != 1 or k > 2
            or type(U._meta) is not np.ndarray or load_numba() is None):
        return None
    import dask
    import dask.array as da

    n = U.shape[-1]
    u_parts = U.to_delayed().ravel()
    a_parts = A.rechunk({0: U.chunks[0], 1: -1}).to_delayed().ravel()
    b = B.rechunk((n, k)).to_delayed().ravel()[0]
    firsts = [dask.delayed(_chunk_products, pure=True, nout=2)(u, a, b)
              for u, a in zip(u_parts, a_parts, strict=True)]
    core = dask.delayed(_chunk_core, pure=True)([f[0] for f in firsts], b, method)
    blocks = [da.from_delayed(dask.delayed(_chunk_write, pure=True)(u, a, f[1], core),
                              (rows, n), dtype=U.dtype, meta=U._meta)
              for u, a, f, rows in zip(u_parts, a_parts, firsts, U.chunks[0], strict=True)]
    return da.concatenate(blocks, axis=0)


def _chunk_products(u, a, b):
    """Pass 1 on a chunk of rows: ``(uᴴ a, u b)`` (a partial of ``Uᴴ A``, rows of ``U B``)."""
    return load_numba().adjoint_products(u, a, b, ())


def _chunk_core(partials, b, method):
    """``(Q, β, α, F − I)`` from the partials of ``Uᴴ A`` (NumPy, on one worker)."""
    xp = get_namespace(("B", b))
    Q, beta, alpha = _updates.step_subspace(sum(partials[1:], partials[0]), b, (), xp)
    return Q, beta, alpha, _updates.core_minus_identity(alpha, beta, method, xp)


def _chunk_write(u, a, ub, core):
    """Pass 2 on a chunk of rows: ``u + L (F − I) Qᴴ``, L its rows of ``U Q``."""
    engine = load_numba()
    Q, beta, alpha, D = core
    L = engine.basis_from_products(u, a, ub, Q, beta, alpha, ())
    return engine.write_update(u, L, D, Q, (), out=np.empty(u.shape, dtype=u.dtype))
