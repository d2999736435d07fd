r"""Dense O(n³) references of the updates, for tests: SVD polar factor, ``expm``, Cayley solve.

What the low-rank updates compute without forming anything n×n, computed here
the direct way in double precision on the host (NumPy and SciPy), batched over
leading axes:

- ``"polar"``: the polar factor of ``U + D`` from a thin SVD, ``W Vᴴ``;
- ``"exp"``: ``U expm(Ω)`` with ``Ω = skew(Uᴴ D) = (Uᴴ D − Dᴴ U)/2``
  (:func:`scipy.linalg.expm`);
- ``"cayley"``: ``U (I − Ω/2)⁻¹ (I + Ω/2)`` by a dense solve.

Compare a low-rank result with these at :func:`~unitary_lowrank.testing.compare_tol`
(for ``"polar"``, with ``condition`` the inverse of the smallest singular value
of ``U + D``, the polar factor's condition number).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import to_numpy

__all__ = ["METHODS", "reference_retract", "reference_step"]

#: The updates a reference exists for.
METHODS = ("polar", "exp", "cayley")


def _double(x: np.ndarray) -> np.ndarray:
    return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)


def _herm(x: np.ndarray) -> np.ndarray:
    return np.conj(np.swapaxes(x, -1, -2))


def reference_step(U: Any, D: Any, /, method: str = "polar") -> np.ndarray:
    """Dense reference of the update of `U` by the step `D` (n×p), in double precision.

    Parameters
    ----------
    U : array, shape (..., n, p)
        Matrix with orthonormal columns (square for ``"exp"`` and ``"cayley"``),
        of any supported library (copied to the host).
    D : array, shape (..., n, p)
        The Euclidean step (for gradient descent ``-lr * G``).
    method : {"polar", "exp", "cayley"}, default: "polar"
        Which update.

    Returns
    -------
    numpy.ndarray, shape (..., n, p)
        float64 or complex128, leading axes broadcast.

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
    if method not in METHODS:
        raise ValueError(f"method must be 'polar', 'exp' or 'cayley', got {method!r}")
    U, D = _double(to_numpy(U)), _double(to_numpy(D))
    wide = np.result_type(U.dtype, D.dtype)
    U, D = U.astype(wide), D.astype(wide)
    if method == "polar":
        W, _, Vh = np.linalg.svd(U + D, full_matrices=False)
        return W @ Vh
    if U.shape[-1] != U.shape[-2]:
        raise ValueError(f"method {method!r} needs a square U, got shape {U.shape}")
    S = _herm(U) @ D
    Om = (S - _herm(S)) / 2
    if method == "exp":
        from scipy.linalg import expm

        return U @ np.vectorize(expm, signature="(n,n)->(n,n)")(Om)
    eye = np.eye(U.shape[-1], dtype=wide)
    return U @ np.linalg.solve(eye - Om / 2, eye + Om / 2)


def reference_retract(U: Any, A: Any, B: Any, /, method: str = "polar") -> np.ndarray:
    """Dense reference of ``retract(U, A, B, method)``: :func:`reference_step` of ``A @ Bᴴ``.

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

    Returns
    -------
    numpy.ndarray, shape (..., n, p)
        The dense update in float64 or complex128.

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
    A, B = _double(to_numpy(A)), _double(to_numpy(B))
    return reference_step(U, A @ _herm(B), method)
