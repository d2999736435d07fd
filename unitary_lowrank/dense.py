"""Dense routines: the SVD polar factor and the distance from the unitary group."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ._agnostic import _drift, _updates
from ._array_api import (
    core_dtype,
    device_of,
    eye_like,
    get_namespace,
    herm,
    is_complex,
    is_lazy_array,
    real_dtype,
    splits_matrices,
)
from ._random import as_generator, check_rng_library, host_normal, jax_normal, rng_library
from ._validation import as_int, check_finite, check_matrix
from .typing import Array, Namespace, Seed

__all__ = ["polar", "unitarity_error"]


def polar(M: Array, /, *, xp: Namespace | None = None) -> Array:
    r"""Dense polar factor of `M`: the nearest matrix with orthonormal columns.

    For ``M = W Σ Vᴴ`` (thin SVD) returns ``W Vᴴ``, the minimiser of
    ``‖X − M‖_F`` over matrices with orthonormal columns (rows, if `M` is wide).
    It costs a full SVD, :math:`O(n^3)`; :func:`project` computes the same
    factor for ``M = U + A Bᴴ`` in :math:`O(n^2 k)`.

    Parameters
    ----------
    M : array, shape (..., m, n)
        Real or complex floating matrices; leading axes are batch axes.
    xp : array namespace, optional
        Namespace of `M`; inferred by default.

    Returns
    -------
    array, shape (..., m, n)
        The unitary (orthogonal for real `M`) polar factor, same namespace,
        device and dtype as `M`. For singular `M` it is one of the (then
        non-unique) nearest matrices.

    Raises
    ------
    TypeError
        If `M` is not a floating array (or is a masked array, a
        ``numpy.matrix`` or a torch ``meta`` tensor), or `xp` is not an array
        namespace (or not that of `M`).
    ValueError
        If `M` has fewer than two dimensions or holds NaN or infinity.

    See Also
    --------
    project : The same factor for ``M = U + A Bᴴ`` in O(n²k).

    Examples
    --------
    >>> import numpy as np
    >>> import unitary_lowrank as ul
    >>> M = np.array([[2.0, 0.0], [0.0, 0.5]])
    >>> ul.polar(M)
    array([[1., 0.],
           [0., 1.]])
    """
    xp = get_namespace(("M", M), xp=xp)
    check_matrix(M, "M", xp)
    check_finite(M, "M", xp)  # O(n²) next to the O(n³) SVD, which would fail obscurely
    W, _, Vh = xp.linalg.svd(M, full_matrices=False)
    return W @ Vh


def unitarity_error(U: Array, /, *, method: Literal["exact", "probe"] = "exact", probes: int = 4,
                    depth: int = 4, rng: Seed = None, xp: Namespace | None = None) -> Array:
    r"""Distance ``‖Uᴴ U − I‖₂`` of each matrix from having orthonormal columns.

    Parameters
    ----------
    U : array, shape (..., n, p)
        Real or complex floating matrices (``p <= n`` for the measure to be
        able to reach zero).
    method : {"exact", "probe"}, default: "exact"
        ``"exact"``: eigenvalues of the Gram matrix, :math:`O(np^2 + p^3)`.
        ``"probe"``: a randomized lower estimate from ``probes · depth``
        products with `U` and ``Uᴴ``, :math:`O(np \cdot probes \cdot depth)`,
        never more than the exact value (up to rounding) and, in our tests,
        within a factor 2 of it for more than 99 % of drifted matrices
        (see Notes).
    probes : int, default: 4
        Number of random start vectors (``method="probe"`` only).
    depth : int, default: 4
        Number of Krylov blocks: each block multiplies `probes` vectors by
        ``UᴴU − I`` once (``method="probe"`` only).
    rng : None, int, numpy.random.Generator or JAX PRNG key, optional
        Randomness of the probe vectors: drawn on the host in double precision
        and moved to the device of `U`, so a seed gives the same estimate on
        every backend; for JAX arrays a JAX key draws them with ``jax.random``
        (traceable: under ``jax.jit`` a key argument gives fresh vectors at
        every call, where a seed is a constant of the compiled function).
    xp : array namespace, optional
        Namespace of `U`; inferred by default.

    Returns
    -------
    array, shape (...)
        The spectral norm of ``Uᴴ U − I`` (or its estimate) per matrix, as a
        real array of the precision of `U` (float32 for float32 and
        complex64). The computation is in double precision, so the figure
        measures the stored matrix, not the rounding of the check. A matrix
        holding NaN or infinity gets ``inf``, so that ``err > tol`` flags it.

    Raises
    ------
    TypeError
        If `U` is not a floating array (or is a masked array, a
        ``numpy.matrix`` or a torch ``meta`` tensor), `probes`/`depth` are not
        integers, `rng` is not a seed, a generator or a JAX key (or is a JAX
        key for another library's `U`), or `xp` is not an array namespace (or
        not that of `U`).
    ValueError
        If `U` has fewer than two dimensions, `method` is unknown, `probes`
        or `depth` is below 1, or ``method="exact"`` is asked of a Dask array
        whose matrices are split over several chunks (use ``"probe"``, which
        works chunk by chunk; ``docs/dask.md``).

    See Also
    --------
    polar : Repairs a matrix that has drifted.
    reunitarize : Cheap repair (Newton–Schulz) of a matrix that has drifted.
    DriftGuard : Checks with the probe estimate every K steps, repairs when needed.

    Notes
    -----
    The probe estimate runs block Lanczos on ``E = UᴴU − I`` (applied as
    ``Uᴴ(U V) − V``, never formed) from `probes` random vectors, and returns
    ``‖E V‖₂ / ‖V‖₂`` for the orthonormal Krylov basis V. Since that ratio is
    at most ``‖E‖₂`` for any V, the estimate is a lower bound; a random
    start makes it close to ``‖E‖₂`` with high probability. With the
    defaults its cost is that of about 6 rank-1 updates of `U`;
    ``docs/reliability.md`` reports its accuracy.

    Examples
    --------
    >>> import numpy as np
    >>> import unitary_lowrank as ul
    >>> float(ul.unitarity_error(np.eye(3)))
    0.0
    >>> float(ul.unitarity_error(np.diag([1.0, 1.0, 1.1])))  # doctest: +ELLIPSIS
    0.210...
    >>> rng = np.random.default_rng(0)
    >>> U = ul.random_unitary(200, dtype="float64", rng=rng)
    >>> U = U + 1e-6 * rng.standard_normal((200, 200))  # drift
    >>> exact = float(ul.unitarity_error(U))
    >>> est = float(ul.unitarity_error(U, method="probe", rng=1))

    The estimate is a lower bound up to the rounding of the double-precision
    check (:func:`unitary_lowrank.testing.unitarity_bound` of float64), and
    here within a factor 2:

    >>> from unitary_lowrank.testing import unitarity_bound
    >>> bool(exact / 2 <= est <= exact + unitarity_bound(200, "float64"))
    True
    """
    xp = get_namespace(("U", U), xp=xp)
    check_matrix(U, "U", xp, "(..., n, p)")
    if method not in ("exact", "probe"):
        raise ValueError(f"method must be 'exact' or 'probe', got {method!r}")
    if method == "exact":
        if splits_matrices(U):
            raise ValueError(
                "unitarity_error(method='exact') needs each matrix of U in one chunk (a "
                "p×p Gram matrix and its eigenvalues), got a Dask array with chunks "
                f"{' × '.join(str(tuple(c)) for c in U.chunks[-2:])} along its last two "
                "axes; use method='probe', which works on U's chunks as they are"
            )
        return _cast_error(_drift.exact_error(U, xp), U, xp)
    probes = as_int(probes, "probes", 1)
    depth = as_int(depth, "depth", 1)
    jax_key = rng_library(rng) == "jax"
    if jax_key:
        check_rng_library("jax", xp, "U is")
    else:
        gen = as_generator(rng)
    batch, p = tuple(U.shape[:-2]), U.shape[-1]
    rdt = real_dtype(xp, U.dtype)
    if p == 0 or 0 in batch:  # static shape branch: nothing to probe
        return xp.zeros(batch, dtype=rdt, device=device_of(U))
    shape = (*batch, p, min(probes, p))
    if jax_key:
        X0 = jax_normal(rng, shape, core_dtype(xp, U.dtype), U)
    else:
        X0 = host_normal(gen, shape, is_complex(xp, U.dtype))
        X0 = xp.asarray(X0, dtype=core_dtype(xp, U.dtype), device=device_of(U))
    return _cast_error(_drift.probe_error(U, X0, depth, xp), U, xp)


def _cast_error(err, U, xp):
    """Cast a double-precision error to the real dtype of `U`.

    Values beyond its range become ``inf`` explicitly (a plain cast would warn
    about the overflow).
    """
    rdt = real_dtype(xp, U.dtype)
    if rdt == err.dtype:
        return err
    big = err > float(xp.finfo(rdt).max)
    err = xp.where(big, xp.full_like(err, float("inf")), err)
    return xp.astype(err, rdt)


def full_retraction(U: Any, S: Any, method: str, xp: Any) -> Any:
    """The dense retraction of a finite Euclidean step `S` at a unitary `U` (internal).

    ``"polar"``: the SVD polar factor of ``U + S`` (any shape); ``"exp"``:
    ``U expm(Ω)``, ``"cayley"``: ``U (I − Ω/2)⁻¹(I + Ω/2)``, with
    ``Ω = (UᴴS − SᴴU)/2`` (square U), then one Newton–Schulz step, so that the
    rounding of successive steps does not accumulate. `ValueError` unless
    ``‖UᴴU − I‖₂ <= √eps`` (one O(n²p) product next to the O(n³) retraction).
    For ``unitary_lowrank.step`` with ``rank="full"``.
    """
    tol = float(xp.finfo(real_dtype(xp, U.dtype)).eps) ** 0.5
    E = herm(U, xp) @ U - eye_like(U.shape[-1], U, xp)
    # ‖E‖₂ <= ‖E‖_F: the Frobenius norm passes a unitary U at O(p²); only a U that
    # fails it gets the exact norm (from a p×p eigvalsh in double precision)
    if not is_lazy_array(E) and not bool(xp.all(xp.linalg.matrix_norm(E) <= tol)):
        check_finite(U, "U", xp)
        err = _updates.gram_error(U, xp)
        if not bool(xp.all(err <= tol)):
            worst = float(xp.max(xp.where(xp.isnan(err), xp.full_like(err, float("inf")),
                                          err)))
            raise ValueError(
                f"U is not unitary (orthonormal columns): ‖UᴴU − I‖₂ = {worst:.2e} exceeds "
                f"sqrt(eps) = {tol:.1e}; repair it first with reunitarize(U)"
            )
    if method == "polar":
        W, _, Vh = xp.linalg.svd(U + S, full_matrices=False)
        X = W @ Vh
    else:
        W = herm(U, xp) @ S
        Om = (W - herm(W, xp)) / 2
        if method == "exp":
            X = U @ _expm_skew(Om, xp)
        else:
            eye = eye_like(Om.shape[-1], Om, xp)
            X = U @ xp.linalg.solve(eye - Om / 2, eye + Om / 2)
    # One Newton–Schulz step X(3I − XᴴX)/2 (two products, O(np²)): it squares the
    # distance of X from the group, so the rounding of earlier steps does not add up
    # over a run; what remains is the rounding of this one.
    return X - X @ ((herm(X, xp) @ X - eye_like(X.shape[-1], X, xp)) / 2)


def _expm_skew(Om: Any, xp: Any) -> Any:
    """``expm(Ω)`` of a skew-Hermitian `Ω`: the library's own routine where it has one.

    torch's ``matrix_exp``, JAX's and SciPy's ``expm`` (a diagonal Padé
    approximant with scaling and squaring, unitary up to rounding for a
    skew-Hermitian argument); elsewhere ``V exp(−iΛ) Vᴴ`` from ``eigh(iΩ)``.
    """
    import array_api_compat

    if array_api_compat.is_torch_namespace(xp):
        import torch

        return torch.linalg.matrix_exp(Om)
    if array_api_compat.is_jax_namespace(xp):
        import jax.scipy.linalg

        return jax.scipy.linalg.expm(Om)
    if array_api_compat.is_numpy_namespace(xp) and type(Om) is np.ndarray:
        try:
            from scipy.linalg import expm
        except ImportError:  # scipy is optional: the eigendecomposition below
            pass
        else:
            return expm(Om)
    cdt = xp.complex128 if real_dtype(xp, Om.dtype) == xp.float64 else xp.complex64
    H = xp.astype(Om, cdt) * 1j  # Hermitian
    lam, V = xp.linalg.eigh((H + herm(H, xp)) / 2)
    phase = xp.exp(xp.astype(lam, cdt) * (-1j))
    E = (V * phase[..., None, :]) @ herm(V, xp)
    return E if is_complex(xp, Om.dtype) else xp.real(E)
