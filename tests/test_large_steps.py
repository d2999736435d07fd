"""Tangent steps of any finite size give unitary results (exp and Cayley).

``retract(U, U[:, :k]·S, e₁..e_k)`` with S a k×k skew(-Hermitian) matrix is the
step ``U expm(S ⊕ 0)`` (or its Cayley transform). The real core's eigenvalues come
in pairs ±λ, and for odd k one of them is zero; the eigensolver returns that zero,
and the zeros of a rank-deficient [B, Â], as noise of size eps·‖S‖ whose
eigenvectors are not conjugate pairs. Once ‖S‖ reached about 1e12 the result stopped
being orthogonal (float64, k = 3: ‖XᵀX − I‖₂ 1.5e-8 at 1e12, 2.5e-4 at 1e14, up to 8
beyond), with no error. Every result must be unitary to ``30·n·eps`` (the bound of
``docs/theory.md``), for every rank, every size up to the dtype's range, both
methods, every dtype, through the one-call kernel (``engine="auto"``) and the
portable path; for moderate steps it must also match the dense reference.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import unitary_lowrank as ul
from unitary_lowrank.testing import DTYPE_NAMES, assert_close, assert_unitary, compare_tol
from unitary_lowrank.testing.reference import reference_retract


def _tangent_step(n, k, dtype, norm, rng):
    """``(U, A, B)`` with ``A Bᴴ = U[:, :k] S`` on the first k columns, ‖S‖_F = norm."""
    U = ul.random_unitary(n, dtype=dtype, rng=rng)
    S = rng.standard_normal((k, k))
    if dtype.startswith("complex"):
        S = S + 1j * rng.standard_normal((k, k))
    S = S - S.conj().T
    if k == 1 and not dtype.startswith("complex"):
        S = np.ones((1, 1))  # a real 1×1 skew matrix is zero: the step is then not tangent
    S = S / np.linalg.norm(S) * norm
    A = (U.astype(S.dtype if S.dtype.kind == "c" else np.float64)[:, :k] @ S).astype(dtype)
    return U, A, np.eye(n, k, dtype=dtype)


def _exponents(dtype):
    """Powers of ten from 1 to 1e300, or to a hundredth of the dtype's largest value."""
    top = min(300, int(math.log10(np.finfo(dtype).max)) - 2)
    return range(0, top + 1, 2)


@pytest.mark.parametrize("engine", ["auto", "array_api"])
@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("method", ["exp", "cayley"])
@pytest.mark.parametrize("k", range(1, 7))
def test_tangent_steps_of_any_size_are_unitary(k, method, dtype, engine):
    rng = np.random.default_rng(k)
    for n in (8, 13):  # r = min(n, 2k): below and at 2k
        for e in _exponents(dtype):
            U, A, B = _tangent_step(n, k, dtype, 10.0**e, rng)
            X = ul.retract(U, A, B, method=method, engine=engine)
            try:
                assert_unitary(X)
            except AssertionError as exc:
                raise AssertionError(f"n = {n}, ‖S‖ = 1e{e}: {exc}") from None


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("method", ["exp", "cayley"])
@pytest.mark.parametrize("k", range(1, 7))
def test_moderate_tangent_steps_match_the_reference(k, method, dtype):
    """Where the core switches to real planes (odd k), it is as accurate as the dense oracle."""
    rng = np.random.default_rng(10 + k)
    for n in (8, 13):
        for norm in (1e-3, 1.0, 10.0):
            U, A, B = _tangent_step(n, k, dtype, norm, rng)
            X = ul.retract(U, A, B, method=method, engine="array_api")
            assert_close(X, reference_retract(U, A, B, method), compare_tol(n, dtype),
                         what=f"n = {n}, ‖S‖ = {norm}")
