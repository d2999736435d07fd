"""Hypothesis strategies for unitary, Stiefel and low-rank-step inputs.

Strategies draw *parameters* (sizes, dtypes, seeds, norms, degenerate kinds)
and build the matrices with NumPy, so every example is reproducible from its
seed and the matrices have exactly the structure asked for (Haar distribution,
spectral norm, rank, singularity). Needs the ``test`` extra (hypothesis).

Importing this module loads the library's compiled kernels
(:func:`~unitary_lowrank.testing.load_engines`), so that the first example of
a test does not pay for them and tests pass under Hypothesis's default
``deadline``.

Examples
--------
>>> from hypothesis import given, settings
>>> import unitary_lowrank as ul
>>> from unitary_lowrank.testing import assert_unitary
>>> from unitary_lowrank.testing.strategies import update_cases
>>> @settings(max_examples=5, database=None)
... @given(update_cases(max_n=8))
... def test_project_is_unitary(case):
...     assert_unitary(ul.project(case.U, case.A, case.B))
>>> test_project_is_unitary()
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st

from .._array_api import DTYPE_NAMES
from .._random import as_generator
from ..haar import random_unitary
from . import load_engines, lowrank_factors

__all__ = [
    "STEP_KINDS",
    "UpdateCase",
    "dtypes",
    "seeds",
    "stiefel_matrices",
    "unitaries",
    "update_cases",
]

# Before any example runs: the first update of a process loads numba and the kernels
# (about a second), which would exceed Hypothesis's default deadline of 200 ms.
load_engines()

#: Kinds of step drawn by :func:`update_cases`.
#: ``generic``: random factors of a given norm; ``zero``: A = 0;
#: ``singular``: ``U + ABᴴ`` singular (``A = −U B (BᴴB)⁻¹ ...`` along one direction);
#: ``normal``: ``A = U B`` (a step normal to the manifold, ``[B, UᴴA]`` rank deficient);
#: ``repeated``: repeated columns in A and B; ``lowrank``: rank(ABᴴ) < k;
#: ``large``: steps of norm up to 10.
STEP_KINDS = ("generic", "zero", "singular", "normal", "repeated", "lowrank", "large")


def seeds() -> st.SearchStrategy[int]:
    """Seeds for ``numpy.random.default_rng``."""
    return st.integers(0, 2**32 - 1)


def dtypes(names: tuple[str, ...] = DTYPE_NAMES) -> st.SearchStrategy[str]:
    """Dtype names among `names` (default: all four supported dtypes)."""
    return st.sampled_from(names)


@st.composite
def unitaries(draw: st.DrawFn, n: st.SearchStrategy[int] = st.integers(1, 32),
              dtype: st.SearchStrategy[str] = dtypes(),
              batch_shape: st.SearchStrategy[tuple[int, ...]] = st.just(())) -> np.ndarray:
    """Haar-distributed unitary (complex) or orthogonal (real) NumPy matrices.

    Parameters
    ----------
    draw : callable
        Supplied by hypothesis.
    n, dtype, batch_shape : hypothesis strategies
        Size, dtype name and batch shape.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(*batch_shape, n, n)``.
    """
    size = draw(n)
    name = draw(dtype)
    return random_unitary(size, dtype=name, batch_shape=draw(batch_shape), rng=draw(seeds()))


@st.composite
def stiefel_matrices(draw: st.DrawFn, n: st.SearchStrategy[int] = st.integers(1, 32),
                     dtype: st.SearchStrategy[str] = dtypes()) -> np.ndarray:
    """Haar-distributed n×p NumPy matrices with orthonormal columns, ``1 <= p <= n``.

    Parameters
    ----------
    draw : callable
        Supplied by hypothesis.
    n, dtype : hypothesis strategies
        Number of rows and dtype name.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(n, p)``.
    """
    size = draw(n)
    p = draw(st.integers(1, size))
    return random_unitary(size, p, dtype=draw(dtype), rng=draw(seeds()))


class UpdateCase(NamedTuple):
    """One input of a low-rank update: ``U + A @ Bᴴ`` and how it was built."""

    U: np.ndarray
    A: np.ndarray
    B: np.ndarray
    dtype: str
    kind: str
    norm: float
    seed: int


def _step(kind: str, U: np.ndarray, k: int, dtype: str, norm: float, gen) -> tuple[Any, Any]:
    n, p = U.shape[-2:]
    cdt = "complex128" if dtype.startswith("complex") else "float64"
    U64 = U.astype(cdt)
    if kind in ("generic", "large"):
        return lowrank_factors(n, p, k, dtype, gen, norm=norm)
    if kind == "zero":
        _, B = lowrank_factors(n, p, k, dtype, gen, norm=1.0)
        return np.zeros((n, k), dtype), B
    if kind == "lowrank":
        rank = int(gen.integers(0, min(k, n, p)))
        return lowrank_factors(n, p, k, dtype, gen, norm=norm, rank=rank)
    _, B = lowrank_factors(n, p, k, cdt, gen, norm=1.0)
    if kind == "normal":  # A = U B S with S Hermitian: ABᴴ = U (B S Bᴴ), normal to the group
        S = gen.standard_normal((k, k)) * norm
        return (U64 @ B @ (S + S.T) / 2).astype(dtype), B.astype(dtype)
    if kind == "repeated":
        A = lowrank_factors(n, p, 1, cdt, gen, norm=norm)[0]
        return np.repeat(A, k, axis=1).astype(dtype), np.repeat(B[:, :1], k, axis=1).astype(dtype)
    # singular: M x = 0 for x = B[:, 0] (unit norm) with A[:, 0] = −U x, other columns generic
    A = lowrank_factors(n, p, k, cdt, gen, norm=norm)[0]
    B[:, 1:] = B[:, 1:] - np.outer(B[:, 0], B[:, 0].conj() @ B[:, 1:])  # Bᴴx = e_1
    A[:, 0] = -U64 @ B[:, 0]
    return A.astype(dtype), B.astype(dtype)


@st.composite
def update_cases(
    draw: st.DrawFn,
    *,
    max_n: int = 24,
    max_k: int = 8,
    dtype: st.SearchStrategy[str] = dtypes(),
    kinds: tuple[str, ...] = STEP_KINDS,
    square: bool | None = True,
    min_norm: float = 1e-8,
    max_norm: float = 0.5,
) -> UpdateCase:
    """Inputs ``(U, A, B)`` of a low-rank update, degenerate cases included.

    Parameters
    ----------
    draw : callable
        Supplied by hypothesis.
    max_n : int, default: 24
        Largest size n.
    max_k : int, default: 8
        Largest rank k (k may exceed n/2, and n, to reach ``n < 2k``).
    dtype : hypothesis strategy
        Dtype names.
    kinds : tuple of str
        Step kinds to draw from, see :data:`STEP_KINDS`.
    square : bool or None, default: True
        True: U is n×n; False: n×p with p < n where possible; None: either.
    min_norm, max_norm : float
        Range (log-uniform) of the spectral norm of ``A Bᴴ`` for the
        ``generic``, ``lowrank``, ``normal`` and ``repeated`` kinds; ``large`` draws
        norms in ``[1, 10]``.

    Returns
    -------
    UpdateCase
        NumPy arrays ``U`` (n×p), ``A`` (n×k), ``B`` (p×k) and how they were made.
    """
    n = draw(st.integers(1, max_n))
    if square is None:
        square = draw(st.booleans())
    p = n if square or n == 1 else draw(st.integers(1, n - 1))
    k = draw(st.integers(1, max_k))
    name = draw(dtype)
    kind = draw(st.sampled_from(kinds))
    if kind == "large":
        norm = draw(st.floats(1.0, 10.0))
    else:
        norm = 10 ** draw(st.floats(np.log10(min_norm), np.log10(max_norm)))
    seed = draw(seeds())
    gen = as_generator(seed)
    U = random_unitary(n, p, dtype=name, rng=gen)
    A, B = _step(kind, U, k, name, norm, gen)
    return UpdateCase(U, A, B, name, kind, float(norm), seed)
