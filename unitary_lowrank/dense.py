"""Dense references: the SVD polar factor and the distance from the unitary group."""

from __future__ import annotations

from ._array_api import core_dtype, device_of, get_namespace, herm, real_dtype
from ._validation import check_matrix

__all__ = ["polar", "unitarity_error"]


def polar(M, /, *, xp=None):
    r"""Dense polar factor of `M`: the nearest matrix with orthonormal columns.

    For ``M = W Σ Vᴴ`` (thin SVD) returns ``W Vᴴ``, the minimiser of
    ``‖X − M‖_F`` over matrices with orthonormal columns (rows, if `M` is wide).
    It costs a full SVD, :math:`O(n^3)`: it is the reference that the
    low-rank :func:`project` is compared against.

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
        If `M` is not a floating array.
    ValueError
        If `M` has fewer than two dimensions.

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
    W, _, Vh = xp.linalg.svd(M, full_matrices=False)
    return W @ Vh


def unitarity_error(U, /, *, xp=None):
    r"""Distance ``‖Uᴴ U − I‖₂`` of each matrix from having orthonormal columns.

    Parameters
    ----------
    U : array, shape (..., n, p)
        Real or complex floating matrices (``p <= n`` for the measure to be
        able to reach zero).
    xp : array namespace, optional
        Namespace of `U`; inferred by default.

    Returns
    -------
    array, shape (...)
        The spectral norm of ``Uᴴ U − I`` per matrix, as a real array of the
        precision of `U` (float32 for float32 and complex64). The Gram matrix is
        formed in double precision, so the figure measures the stored matrix,
        not the rounding of the check.

    Raises
    ------
    TypeError
        If `U` is not a floating array.
    ValueError
        If `U` has fewer than two dimensions.

    See Also
    --------
    polar : Repairs a matrix that has drifted.

    Examples
    --------
    >>> import numpy as np
    >>> import unitary_lowrank as ul
    >>> float(ul.unitarity_error(np.eye(3)))
    0.0
    >>> float(ul.unitarity_error(np.diag([1.0, 1.0, 1.1])))  # doctest: +ELLIPSIS
    0.210...
    """
    xp = get_namespace(("U", U), xp=xp)
    check_matrix(U, "U", xp, "(..., n, p)")
    X = xp.astype(U, core_dtype(xp, U.dtype))
    G = herm(X, xp) @ X
    G = G - xp.eye(G.shape[-1], dtype=G.dtype, device=device_of(G))
    G = 0.5 * (G + herm(G, xp))
    ev = xp.linalg.eigvalsh(G)
    err = xp.max(xp.abs(ev), axis=-1) if ev.shape[-1] else xp.sum(ev, axis=-1)
    return xp.astype(err, real_dtype(xp, U.dtype))
