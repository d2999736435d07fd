r"""Dense O(n³) references of the updates, for tests: SVD polar factor, ``expm``, Cayley solve.

What the low-rank updates compute without forming anything n×n, computed here
the direct way, on the host with SciPy's LAPACK routines (one matrix at a time
over leading batch axes):

- ``"polar"``: the polar factor of ``U + D`` from a thin SVD, ``W Vᴴ``
  (:func:`scipy.linalg.svd`, :func:`reference_polar`);
- ``"exp"``: ``U expm(Ω)`` with ``Ω = skew(Uᴴ D) = (Uᴴ D − Dᴴ U)/2``
  (:func:`scipy.linalg.expm`);
- ``"cayley"``: ``U (I − Ω/2)⁻¹ (I + Ω/2)`` by a dense solve
  (:func:`scipy.linalg.solve`).

By default the inputs are widened to double precision (float64/complex128)
first, so the reference is exact to about ``eps₆₄``; ``double=False`` keeps
their (promoted) dtype instead, to time the dense update at the precision of
the low-rank one (``benchmarks/``).

Compare a low-rank result with these at :func:`~unitary_lowrank.testing.compare_tol`
(for ``"polar"``, with ``condition`` the inverse of the smallest singular value
of ``U + D``, the polar factor's condition number).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..methods import METHODS, Method, needs_square
from . import to_numpy

__all__ = ["METHODS", "reference_polar", "reference_retract", "reference_step"]



def _host(x: Any, double: bool) -> np.ndarray:
    """`x` as a NumPy array (NumPy input is not copied), widened to double precision if asked."""
    x = np.asarray(x) if isinstance(x, np.ndarray) else to_numpy(x)
    if double:
        return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64, copy=False)
    return x


def _herm(x: np.ndarray) -> np.ndarray:
    return np.conj(np.swapaxes(x, -1, -2))


def _check_method(method: str, U: np.ndarray) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be 'polar', 'exp' or 'cayley', got {method!r}")
    if needs_square(method) and U.shape[-1] != U.shape[-2]:
        raise ValueError(f"method {method!r} needs a square U, got shape {U.shape}")


def _per_matrix(func: Any, signature: str, dtype: np.dtype) -> Any:
    """`func` of 2-D arrays applied to every matrix of a batch (SciPy < 1.15 has no batches)."""
    return np.vectorize(func, signature=signature, otypes=[dtype])


def _polar_2d(M: np.ndarray) -> np.ndarray:
    from scipy.linalg import svd

    W, _, Vh = svd(M, full_matrices=False)
    return W @ Vh


def _cayley_2d(Om: np.ndarray) -> np.ndarray:
    from scipy.linalg import solve

    eye = np.eye(Om.shape[-1], dtype=Om.dtype)
    return solve(eye - Om / 2, eye + Om / 2)


def _tangent_update(U: np.ndarray, S: np.ndarray, method: str) -> np.ndarray:
    """``U expm(Ω)`` or ``U (I − Ω/2)⁻¹ (I + Ω/2)`` for ``Ω = skew(S)``, ``S = Uᴴ D``."""
    from scipy.linalg import expm

    Om = (S - _herm(S)) / 2
    rotation = _per_matrix(expm if method == "exp" else _cayley_2d, "(n,n)->(n,n)", Om.dtype)
    return U @ rotation(Om)


def reference_polar(M: Any, /, *, double: bool = True) -> np.ndarray:
    """Polar factor ``W Vᴴ`` of `M` from its thin SVD ``M = W Σ Vᴴ``.

    Parameters
    ----------
    M : array, shape (..., m, n)
        Matrices of any supported library (copied to the host).
    double : bool, default: True
        Compute in double precision; False keeps the dtype of `M`.

    Returns
    -------
    numpy.ndarray, shape (..., m, n)
        The polar factor (for singular `M` one of the nearest matrices with
        orthonormal columns, which are then not unique).

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank.testing.reference import reference_polar
    >>> reference_polar(np.diag([2.0, -0.5]))
    array([[ 1.,  0.],
           [ 0., -1.]])
    """
    M = _host(M, double)
    return _per_matrix(_polar_2d, "(m,n)->(m,n)", M.dtype)(M)


def reference_step(U: Any, D: Any, /, method: Method = "polar", *,
                   double: bool = True) -> np.ndarray:
    """Dense reference of the update of `U` by the step `D` (n×p).

    Parameters
    ----------
    U : array, shape (..., n, p)
        Matrix with orthonormal columns (square for ``"exp"`` and ``"cayley"``),
        of any supported library (copied to the host).
    D : array, shape (..., n, p)
        The Euclidean step (for gradient descent ``-lr * G``).
    method : {"polar", "exp", "cayley"}, default: "polar"
        Which update.
    double : bool, default: True
        Compute in double precision; False keeps the promoted dtype of `U`
        and `D`.

    Returns
    -------
    numpy.ndarray, shape (..., n, p)
        float64 or complex128 (with ``double=False``, the promoted dtype),
        leading axes broadcast.

    Raises
    ------
    ValueError
        If `method` is unknown, or `U` is not square for ``"exp"``/``"cayley"``.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank.testing.reference import reference_step
    >>> X = reference_step(np.eye(3), np.diag([0.5, 0.0, 0.0]), "polar")
    >>> bool(np.allclose(X, np.eye(3)))
    True
    """
    U, D = _host(U, double), _host(D, double)
    _check_method(method, U)
    wide = np.result_type(U.dtype, D.dtype)
    U, D = U.astype(wide, copy=False), D.astype(wide, copy=False)
    if method == "polar":
        return reference_polar(U + D, double=double)
    return _tangent_update(U, _herm(U) @ D, method)


def reference_retract(U: Any, A: Any, B: Any, /, method: Method = "polar", *,
                      double: bool = True) -> np.ndarray:
    """Dense reference of ``retract(U, A, B, method)``: :func:`reference_step` of ``A @ Bᴴ``.

    ``Uᴴ A Bᴴ`` is formed as ``(Uᴴ A) Bᴴ``, in O(n²k): timing this times the
    dense O(n³) update itself, not the forming of its argument.

    Parameters
    ----------
    U : array, shape (..., n, p)
        Matrix with orthonormal columns (square for ``"exp"`` and ``"cayley"``).
    A : array, shape (..., n, k)
        Left factor of the step.
    B : array, shape (..., p, k)
        Right factor of the step.
    method : {"polar", "exp", "cayley"}, default: "polar"
        Which update.
    double : bool, default: True
        Compute in double precision; False keeps the promoted dtype of the
        inputs.

    Returns
    -------
    numpy.ndarray, shape (..., n, p)
        The dense update, in float64 or complex128 (with ``double=False``, the
        promoted dtype), leading axes broadcast.

    Raises
    ------
    ValueError
        If `method` is unknown, or `U` is not square for ``"exp"``/``"cayley"``.

    Examples
    --------
    >>> import numpy as np
    >>> import unitary_lowrank as ul
    >>> from unitary_lowrank.testing.reference import reference_retract
    >>> rng = np.random.default_rng(0)
    >>> U = ul.random_unitary(20, dtype="float64", rng=rng)
    >>> A = 0.1 * rng.standard_normal((20, 2)); B = rng.standard_normal((20, 2))
    >>> all(bool(np.allclose(ul.retract(U, A, B, m), reference_retract(U, A, B, m)))
    ...     for m in ("polar", "exp", "cayley"))
    True
    """
    U, A, B = _host(U, double), _host(A, double), _host(B, double)
    _check_method(method, U)
    wide = np.result_type(U.dtype, A.dtype, B.dtype)
    U, A, B = (x.astype(wide, copy=False) for x in (U, A, B))
    Bh = _herm(B)
    if method == "polar":
        return reference_polar(U + A @ Bh, double=double)
    return _tangent_update(U, (_herm(U) @ A) @ Bh, method)
