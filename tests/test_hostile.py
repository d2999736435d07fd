"""Hostile inputs for every public function.

Shapes (zero-size batch axes, n = 1, k = n, k > n, large batches of tiny
matrices), layouts (Fortran order, negative strides, non-contiguous views,
read-only and stride-0 arrays, non-contiguous torch tensors), values (zeros,
subnormals, scales of 1e±150 and beyond, NaN, ±inf), dtypes (integers,
booleans, float16, long double, float32 mixed with float64) and mixed array
libraries and devices.

The contract checked by :func:`outcome`: each call either returns a correct
result (finite, of the promoted dtype, unitary where it should be, and equal
to the dense oracle :mod:`unitary_lowrank.testing.reference` in double
precision where the problem is well-conditioned) or raises a
`ValueError`/`TypeError` whose message names the offending argument. Any
other exception, any warning (the suite runs with ``filterwarnings=error``) or
a change to an input fails the test, and a watchdog fails a call that hangs.

A bug of the core or of the sketching routines that this suite finds is kept
as an ``xfail(strict=True)`` test with the reason ``"core bug: ..."`` /
``"sketch bug: ..."`` until it is fixed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import threading

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import unitary_lowrank as ul
from unitary_lowrank.testing import (
    assert_close,
    assert_unitary,
    compare_tol,
    eps_of,
    lowrank_factors,
    rounded_unitarity_bound,
    to_numpy,
    unitarity_bound,
)
from unitary_lowrank.testing.reference import reference_polar, reference_retract
from unitary_lowrank.testing.strategies import seeds

torch = pytest.importorskip("torch")
xps = pytest.importorskip("array_api_strict")
pytest.importorskip("scipy.linalg")  # the dense oracle's expm

#: A call that takes longer than this is a hang (the slowest calls here take ~0.1 s).
HANG_SECONDS = 30


# ------------------------------------------------------------------ harness


@contextlib.contextmanager
def watchdog(seconds: int = HANG_SECONDS):
    """Fail a call that does not return (SIGALRM; a no-op off the main thread)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "SIGALRM"
    ):
        yield
        return

    def on_alarm(signum, frame):
        raise TimeoutError(f"call did not return within {seconds} s (hang)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _arrays(obj):
    """Arrays inside an argument (a pair (X, Y) counts as two)."""
    if isinstance(obj, tuple | list):
        return [a for x in obj for a in _arrays(x)]
    return [obj] if hasattr(obj, "shape") and hasattr(obj, "dtype") else []


def _host(a):
    """A host copy for comparisons (torch dtypes NumPy lacks are widened first)."""
    if type(a).__module__.split(".")[0] == "torch" and a.dtype in (torch.bfloat16,):
        a = a.detach().to(torch.float32)
    return np.array(to_numpy(a), copy=True)


def _snapshot(args):
    return [(_host(a), getattr(getattr(a, "flags", None), "writeable", None))
            for a in _arrays(args)]


def _unchanged(args, snap):
    for a, (before, writeable) in zip(_arrays(args), snap, strict=True):
        after = _host(a)
        nan = before.dtype.kind in "fc"
        assert after.shape == before.shape and np.array_equal(after, before, equal_nan=nan), \
            "an input was modified"
        if writeable is not None:
            assert a.flags.writeable == writeable, "an input's writeable flag changed"


def outcome(fn, *args, names=(), **kwargs):
    """Call ``fn(*args, **kwargs)``: ``("ok", result)`` or ``("error", exception)``.

    Errors must be ValueError/TypeError naming one of `names` (when given); any
    other exception propagates and fails the test. Inputs must be left unchanged.
    """
    inputs = (args, tuple(v for k, v in kwargs.items() if k != "out"))  # out is written
    snap = _snapshot(inputs)
    try:
        with watchdog():
            result = fn(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        assert msg, f"{type(exc).__name__} without a message"
        if names:
            assert any(re.search(rf"(^|\W){re.escape(n)}(\W|$)", msg) for n in names), (
                f"error message does not name any of {names}: {msg!r}"
            )
        _unchanged(inputs, snap)
        return "error", exc
    _unchanged(inputs, snap)
    return "ok", result


def expect_error(exc_type, fn, *args, names=(), **kwargs):
    kind, res = outcome(fn, *args, names=names, **kwargs)
    assert kind == "error", f"expected {exc_type}, got a result"
    assert isinstance(res, exc_type), f"expected {exc_type}, got {res!r}"
    return res


def expect_ok(fn, *args, **kwargs):
    kind, res = outcome(fn, *args, **kwargs)
    assert kind == "ok", f"expected a result, got {type(res).__name__}: {res}"
    return res


def _wide(dtype) -> str:
    return "complex128" if np.dtype(dtype).kind == "c" else "float64"


def _herm(x):
    return np.swapaxes(x, -1, -2).conj()


# ------------------------------------------------------------------ oracles


def step_norm(A, B) -> float:
    """‖A Bᴴ‖₂ (largest over the batch), inf when it overflows."""
    A, B = (np.asarray(to_numpy(x)).astype(_wide(np.asarray(to_numpy(x)).dtype)) for x in (A, B))
    if A.size == 0 or B.size == 0:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        P = A @ _herm(B)
        if not np.all(np.isfinite(P)):
            return float("inf")
        return float(np.max(np.linalg.norm(P, ord=2, axis=(-2, -1)), initial=0.0))


def check_update(method, U, A, B, X, *, compare=True):
    """X is finite, of the promoted dtype and shape, unitary and equal to the oracle."""
    Xn = to_numpy(X)
    Un, An, Bn = (to_numpy(v) for v in (U, A, B))
    dtype = np.result_type(Un.dtype, An.dtype, Bn.dtype)
    batch = np.broadcast_shapes(Un.shape[:-2], An.shape[:-2], Bn.shape[:-2])
    assert Xn.shape == (*batch, *Un.shape[-2:]) and Xn.dtype == dtype
    assert np.all(np.isfinite(Xn)), "non-finite result"
    if Xn.size == 0:
        return
    n = Un.shape[-2]
    assert_unitary(Xn, factor=100)  # backward-stable: c·n·eps with a generous c
    if not compare:
        return
    ref = reference_retract(Un, An, Bn, method)
    if method == "polar":
        s = np.linalg.svd((Un + An @ _herm(Bn)).astype(ref.dtype), compute_uv=False)
        smin = float(np.min(s))
        if smin < 1e-6 * max(float(np.max(s)), 1.0):
            # singular M: the polar factor is not unique, but its distance to M is
            # (distances in units of max(1, max |M|), so that nothing overflows)
            M = (Un + An @ _herm(Bn)).astype(ref.dtype)
            scale = max(float(np.max(np.abs(M))), 1.0)
            d_ref = np.linalg.norm((ref - M) / scale, axis=(-2, -1))
            d_x = np.linalg.norm((Xn.astype(ref.dtype) - M) / scale, axis=(-2, -1))
            assert np.all(d_x <= d_ref + compare_tol(n, dtype) * n)  # entrywise tol -> Frobenius
            return
        cond = max(float(np.max(s)), 1.0) / smin
        assert_close(Xn, ref, compare_tol(n, dtype, condition=cond))
    else:
        # Rounding of the step (relative eps) moves the rotation angles by eps·‖step‖.
        assert_close(Xn, ref, compare_tol(n, dtype, condition=max(1.0, step_norm(An, Bn))))


def parity_tol(n, dtype) -> float:
    """Tolerance between two code paths of the library on the same inputs.

    Another layout, out=, batch or library: each is documented within 100·n·eps
    of the dense oracle (compare_tol).
    """
    return compare_tol(n, dtype)


def engine_parity_tol(dtype) -> float:
    """Tolerance between a NumPy engine and the array-agnostic body.

    docs/theory.md documents that they "agree with the portable path to a few
    eps" (as tests/test_engines.py).
    """
    return compare_tol(1, dtype, 20)


UPDATES = {
    "project": (ul.project, "polar"),
    "transport": (ul.transport, "exp"),
    "cayley": (lambda U, A, B, **kw: ul.retract(U, A, B, method="cayley", **kw), "cayley"),
}


def _case(n, k, dtype, seed, *, p=None, norm=0.3, batch=()):
    rng = np.random.default_rng(seed)
    p = n if p is None else p
    U = ul.random_unitary(n, p, dtype=dtype, batch_shape=batch, rng=rng)
    size = int(np.prod(batch))
    AB = [lowrank_factors(n, p, k, dtype, rng, norm=norm) for _ in range(size)]
    A = np.stack([a for a, _ in AB]).reshape(*batch, n, k)
    B = np.stack([b for _, b in AB]).reshape(*batch, p, k)
    return U, A, B


@pytest.fixture(autouse=True)
def _numpy_errors_are_warnings():
    """NumPy floating-point errors must surface (as warnings -> errors), not pass silently."""
    with np.errstate(all="warn", under="ignore"):
        yield


# ================================================================== shapes


@pytest.mark.parametrize("name", list(UPDATES))
@pytest.mark.parametrize("dtype", ["float32", "complex128"])
@pytest.mark.parametrize(
    ("n", "k", "batch"),
    [(1, 1, ()), (1, 3, ()), (4, 4, ()), (3, 7, ()), (5, 2, (2, 3)), (2, 1, (3000,)),
     (1, 1, (5000,))],
    ids=["n1", "n1k3", "k=n", "k>n", "batch2x3", "3000x2x2", "5000x1x1"],
)
def test_update_shapes(name, dtype, n, k, batch):
    fn, method = UPDATES[name]
    U, A, B = _case(n, k, dtype, 0, batch=batch)
    check_update(method, U, A, B, expect_ok(fn, U, A, B))


@pytest.mark.parametrize("name", list(UPDATES))
def test_update_empty_shapes(name):
    fn, method = UPDATES[name]
    U, A, B = _case(4, 2, "float64", 1)
    for args in [
        (np.zeros((0, 4, 4)), np.zeros((0, 4, 2)), np.zeros((0, 4, 2))),  # empty batch
        (U, np.zeros((0, 4, 2)), B),                                      # broadcasts to it
        (np.zeros((2, 0, 4, 4)), A, B),
        (U, np.zeros((4, 0)), np.zeros((4, 0))),                          # k = 0
        (np.zeros((0, 0)), np.zeros((0, 2)), np.zeros((0, 2))),           # n = 0
    ]:
        X = expect_ok(fn, *args)
        check_update(method, *args, X)
        if args[1].shape[-1] == 0:
            np.testing.assert_array_equal(X, args[0])


def test_stiefel_shapes():
    U, A, B = _case(7, 3, "complex64", 2, p=3)
    check_update("polar", U, A, B, expect_ok(ul.project, U, A, B))
    U, A, B = _case(6, 9, "float64", 3, p=1)  # k > p and k > n
    check_update("polar", U, A, B, expect_ok(ul.project, U, A, B))
    expect_error(ValueError, ul.project, np.ones((2, 3)), np.ones((2, 1)), np.ones((3, 1)),
                 names=["U"])
    for name in ("transport", "cayley"):
        expect_error(ValueError, UPDATES[name][0], U, A, B, names=["U"])


@pytest.mark.parametrize("name", list(UPDATES))
def test_update_bad_shapes(name):
    fn, _ = UPDATES[name]
    U, A, B = _case(4, 2, "float64", 4)
    expect_error(ValueError, fn, U, A[:3], B, names=["A"])
    expect_error(ValueError, fn, U, A, B[:3], names=["B"])
    expect_error(ValueError, fn, U, A, B[:, :1], names=["A", "B"])
    expect_error(ValueError, fn, U[None].repeat(2, 0), A[None].repeat(3, 0), B, names=["U", "A"])
    expect_error(ValueError, fn, U, A[:, 0], B, names=["A"])
    expect_error(ValueError, fn, np.asarray(U[0, 0]), A, B, names=["U"])
    expect_error(ValueError, fn, U, A, B, out=np.empty((4, 3)), names=["out"])


# ================================================================== layouts


def _layout(x: np.ndarray, kind: str) -> np.ndarray:
    """The same values in another memory layout (a view where possible)."""
    if kind == "C":
        return np.ascontiguousarray(x)
    if kind == "F":
        return np.asfortranarray(x)
    if kind == "negstride":  # reversed twice: same values, negative strides
        return np.ascontiguousarray(x[..., ::-1, ::-1])[..., ::-1, ::-1]
    if kind == "noncontig":  # every other element of a bigger buffer
        big = np.zeros((*x.shape[:-1], 2 * x.shape[-1]), dtype=x.dtype)
        big[..., ::2] = x
        return big[..., ::2]
    if kind == "readonly":
        y = x.copy()
        y.flags.writeable = False
        return y
    if kind == "broadcast":  # stride-0 batch axis, read-only
        return np.broadcast_to(x, (2, *x.shape))[1]
    raise ValueError(kind)


LAYOUTS = ["C", "F", "negstride", "noncontig", "readonly", "broadcast"]


@settings(max_examples=40)
@given(name=st.sampled_from(list(UPDATES)), lu=st.sampled_from(LAYOUTS),
       la=st.sampled_from(LAYOUTS), lb=st.sampled_from(LAYOUTS),
       dtype=st.sampled_from(["float32", "float64", "complex64", "complex128"]),
       n=st.integers(1, 9), k=st.integers(1, 4), seed=seeds())
def test_update_layouts(name, lu, la, lb, dtype, n, k, seed):
    fn, method = UPDATES[name]
    U, A, B = _case(n, k, dtype, seed)
    ref = fn(U, A, B)
    Ul, Al, Bl = _layout(U, lu), _layout(A, la), _layout(B, lb)
    X = expect_ok(fn, Ul, Al, Bl)
    check_update(method, U, A, B, X, compare=False)
    # the layout must not change the answer beyond rounding (another kernel may run)
    assert_close(X, ref, parity_tol(n, dtype))


@pytest.mark.parametrize("name", list(UPDATES))
@pytest.mark.parametrize("kind", ["F", "noncontig", "negstride"])
def test_update_out_layouts(name, kind):
    fn, _ = UPDATES[name]
    U, A, B = _case(6, 2, "float64", 5)
    ref = fn(U, A, B)
    out = _layout(np.zeros_like(U), kind)
    assert expect_ok(fn, U, A, B, out=out) is out
    assert_close(out, ref, parity_tol(6, "float64"))
    # in place, into a Fortran-ordered U
    Uf = np.asfortranarray(U.copy())
    fn(Uf, A, B, out=Uf)
    assert_close(Uf, ref, parity_tol(6, "float64"))
    # out aliasing a factor of the same shape (k = n)
    U, A, B = _case(3, 3, "float64", 6)
    ref = fn(U, A, B)
    A2 = A.copy()
    fn(U, A2, B, out=A2)
    assert_close(A2, ref, parity_tol(3, "float64"))


#: Explicit NumPy engines of the core (the set changes as the lead adds engines).
ENGINES = [e for e in getattr(ul.updates, "ENGINES", ("array_api",)) if e != "auto"]


@pytest.mark.parametrize("name", list(UPDATES))
@pytest.mark.parametrize(("engine", "n"), [(e, 6) for e in ENGINES] + [("auto", 512)])
def test_update_readonly_out(name, engine, n):
    fn, _ = UPDATES[name]
    U, A, B = _case(n, 1, "float64", 7)
    out = _layout(np.zeros_like(U), "readonly")
    expect_error(ValueError, fn, U, A, B, out=out, engine=engine, names=["out", "read-only"])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", list(UPDATES))
def test_update_engines_on_hostile_layouts(name, engine):
    """The NumPy engines (numba, blocked BLAS, ...) against the array-agnostic body.

    On every layout, an out= view and a stride-0 batch.
    """
    fn, method = UPDATES[name]
    U, A, B = _case(7, 2, "float64", 33, batch=(2,))
    ref = fn(U, A, B, engine="array_api")
    for kind in LAYOUTS:
        X = expect_ok(fn, _layout(U, kind), _layout(A, kind), _layout(B, kind), engine=engine)
        check_update(method, U, A, B, X, compare=False)
        assert_close(X, ref, engine_parity_tol("float64"))
        out = _layout(np.zeros_like(U), "noncontig" if kind == "readonly" else kind) \
            if kind != "broadcast" else np.zeros_like(U)
        assert expect_ok(fn, U, A, B, out=out, engine=engine) is out
        assert_close(out, ref, engine_parity_tol("float64"))
    X = expect_ok(fn, np.broadcast_to(U[0], (3, 7, 7)), A[0], B[0], engine=engine)
    assert_close(X, np.broadcast_to(fn(U[0], A[0], B[0], engine="array_api"), (3, 7, 7)),
                 engine_parity_tol("float64"))
    for where in range(3):
        args = [U, A, B]
        args[where] = _special(args[where], np.nan, where)
        expect_error(ValueError, fn, *args, engine=engine, names=["UAB"[where]])


@pytest.mark.parametrize("name", list(UPDATES))
def test_update_stride_zero_batch(name):
    fn, method = UPDATES[name]
    U, A, B = _case(5, 2, "float32", 32)
    Ub = np.broadcast_to(U, (4, 5, 5))  # stride 0 over the batch, read-only
    Ab = np.broadcast_to(A, (4, 5, 2))
    X = expect_ok(fn, Ub, Ab, B)
    check_update(method, Ub, Ab, B, X)
    assert_close(X, np.broadcast_to(fn(U, A, B), (4, 5, 5)), parity_tol(5, "float32"))


def test_torch_layouts():
    U, A, B = _case(6, 2, "float64", 8)
    ref = ul.project(U, A, B)
    Ut = torch.asarray(np.ascontiguousarray(U.T)).T  # non-contiguous (transposed) view
    At = torch.asarray(A).expand(3, 6, 2)  # stride-0 batch
    Bt = torch.asarray(_layout(B, "noncontig"))  # strided columns
    X = expect_ok(ul.project, Ut, At, Bt)
    assert isinstance(X, torch.Tensor) and X.shape == (3, 6, 6)
    assert_close(X, np.broadcast_to(ref, (3, 6, 6)), parity_tol(6, "float64"))


def test_torch_weight_that_requires_grad():
    # check_unitary reads its scalar without converting a tensor that requires grad
    # (torch would warn, and warnings are errors here)
    U, A, B = _case(6, 2, "float64", 8)
    # a tensor that requires grad is used, not converted (no .numpy() behind the scenes)
    Ug = torch.asarray(U).requires_grad_()
    X = expect_ok(ul.transport, Ug, torch.asarray(A), torch.asarray(B))
    assert_close(X.detach(), ul.transport(U, A, B), parity_tol(6, "float64"))


# ================================================================== values


def _special(x: np.ndarray, value: float, seed: int) -> np.ndarray:
    y = x.copy()
    rng = np.random.default_rng(seed)
    idx = tuple(int(rng.integers(0, s)) for s in y.shape)
    y[idx] = value
    return y


@settings(max_examples=40)
@given(name=st.sampled_from(list(UPDATES)),
       dtype=st.sampled_from(["float32", "float64", "complex64", "complex128"]),
       n=st.integers(1, 8), k=st.integers(1, 3), seed=seeds(),
       log_a=st.floats(-300, 300), log_b=st.floats(-300, 300))
@example(name="project", dtype="float64", n=4, k=2, seed=0, log_a=150, log_b=150)
@example(name="cayley", dtype="float64", n=4, k=2, seed=0, log_a=150, log_b=150)
@example(name="project", dtype="float64", n=4, k=2, seed=0, log_a=-310, log_b=0)
@example(name="transport", dtype="float32", n=3, k=1, seed=0, log_a=-40, log_b=0)
def test_update_step_scales(name, dtype, n, k, seed, log_a, log_b):
    """Steps of any representable size.

    A unitary result (and the oracle's when the step is moderate), or a
    ValueError naming the step.
    """
    fn, method = UPDATES[name]
    big = float(np.finfo(dtype).max)
    rng = np.random.default_rng(seed)
    U = ul.random_unitary(n, dtype=dtype, rng=rng)
    A, B = lowrank_factors(n, n, k, _wide(dtype), rng, norm=1.0)
    with np.errstate(all="ignore"):
        A, B = (A * 10.0**log_a), (B * 10.0**log_b)
    if not (np.all(np.abs(A) < big) and np.all(np.abs(B) < big)):
        return  # not representable in this dtype
    A, B = A.astype(dtype), B.astype(dtype)
    kind, res = outcome(fn, U, A, B, names=["A", "B", "step", "A @ B^H"])
    if kind == "error":
        # only a step whose product overflows may be refused
        assert isinstance(res, ValueError)
        assert abs(log_a + log_b) > np.log10(big) / 2, res
        return
    norm = step_norm(A, B)
    moderate = norm < 10 or (method == "polar" and norm < 1e300)
    check_update(method, U, A, B, res, compare=moderate)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_transport_huge_real_step_is_unitary(dtype):
    # the real core is re-orthogonalised: without that the error would be 1.5e-11 at
    # step norm 1e10 and 0.56 at 1e50
    rng = np.random.default_rng(9)
    U = ul.random_unitary(8, dtype=dtype, rng=rng)
    for scale in (1e10, 1e30):
        A = (scale * rng.standard_normal((8, 2))).astype(dtype)
        B = rng.standard_normal((8, 2)).astype(dtype)
        X = expect_ok(ul.transport, U, A, B)
        check_update("exp", U, A, B, X, compare=False)


def test_transport_largest_representable_step():
    # a result or a ValueError naming the step, never numpy.linalg.LinAlgError
    rng = np.random.default_rng(10)
    U = ul.random_unitary(5, dtype="float64", rng=rng)
    A, B = 1e150 * rng.standard_normal((5, 2)), 1e150 * rng.standard_normal((5, 2))
    kind, res = outcome(ul.transport, U, A, B, names=["A", "B", "step"])
    if kind == "ok":
        check_update("exp", U, A, B, res, compare=False)


@pytest.mark.parametrize("name", list(UPDATES))
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["U", "A", "B"])
def test_update_non_finite(name, value, where):
    fn, _ = UPDATES[name]
    args = dict(zip("UAB", _case(5, 2, "complex64", 11), strict=True))
    args[where] = _special(args[where], value, 0)
    expect_error(ValueError, fn, args["U"], args["A"], args["B"], names=[where])
    if where == "U":
        expect_error(ValueError, fn, args["U"], args["A"], args["B"], check_finite=True,
                     names=["U"])


@pytest.mark.parametrize("name", list(UPDATES))
def test_update_zero_and_subnormal_values(name):
    fn, method = UPDATES[name]
    U, A, B = _case(6, 2, "float64", 12)
    for A2, B2 in [(np.zeros_like(A), B), (A, np.zeros_like(B)), (A * 1e-310, B),
                   (A * 1e-160, B * 1e-160)]:
        X = expect_ok(fn, U, A2, B2)
        check_update(method, U, A2, B2, X)
        assert_close(X, U, compare_tol(6, "float64"))
    # a unitary U with subnormal entries (exactly representable rounding noise)
    Us = np.eye(6) + np.diag(np.full(5, 5e-320), 1)
    check_update(method, Us, A, B, expect_ok(fn, Us, A, B))
    # float32 subnormal steps
    U32, A32, B32 = _case(6, 2, "float32", 13)
    X = expect_ok(fn, U32, (A32 * np.float32(1e-41)).astype(np.float32), B32)
    assert_close(X, U32, compare_tol(6, "float32"))


@pytest.mark.parametrize("name", list(UPDATES))
@pytest.mark.parametrize("U_kind", ["zeros", "scaled 1e150", "scaled 1e-150", "scaled 2"])
def test_update_rejects_a_U_far_from_unitary(name, U_kind):
    # check_unitary refuses such a U (an update of it would be ‖XᴴX − I‖ = 1 … 1e300
    # from unitary); a result, if any, must be unitary
    fn, method = UPDATES[name]
    U, A, B = _case(5, 1, "float64", 14)
    U = {"zeros": np.zeros_like(U), "scaled 1e150": 1e150 * U, "scaled 1e-150": 1e-150 * U,
         "scaled 2": 2 * U}[U_kind]
    kind, res = outcome(fn, U, A, B, names=["U"])
    if kind == "ok":
        check_update(method, U, A, B, res, compare=False)


# ================================================================== dtypes


BAD_DTYPES = [np.int64, np.int8, np.bool_, np.float16, np.longdouble, np.uint8, object]


@pytest.mark.parametrize("name", list(UPDATES))
@pytest.mark.parametrize("bad", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("where", ["U", "A", "B"])
def test_update_bad_dtypes(name, bad, where):
    fn, _ = UPDATES[name]
    args = dict(zip("UAB", _case(3, 1, "float64", 15), strict=True))
    args[where] = args[where].astype(bad)
    expect_error(TypeError, fn, args["U"], args["A"], args["B"], names=[where])


@pytest.mark.parametrize("name", list(UPDATES))
@pytest.mark.parametrize(("du", "da", "db"), [
    ("float32", "float64", "float32"), ("float64", "float32", "float32"),
    ("complex64", "float64", "float32"), ("float32", "complex64", "float64"),
])
def test_update_mixed_precision_promotes(name, du, da, db):
    fn, method = UPDATES[name]
    rng = np.random.default_rng(16)
    U = ul.random_unitary(6, dtype=du, rng=rng)
    A = lowrank_factors(6, 6, 2, _wide(da), rng)[0].astype(da)
    B = lowrank_factors(6, 6, 2, _wide(db), rng)[1].astype(db)
    X = expect_ok(fn, U, A, B)
    assert X.dtype == np.result_type(U, A, B)
    # the result is exact for the rounded inputs, so it is as unitary as U is (float32)
    assert float(np.max(ul.unitarity_error(X))) <= unitarity_bound(6, "float32")
    assert_close(X, reference_retract(U, A, B, method), compare_tol(6, "float32"))


def test_torch_bad_dtypes():
    U, A, B = (torch.asarray(x) for x in _case(3, 1, "float64", 17))
    for bad in (torch.float16, torch.bfloat16, torch.int32, torch.bool):
        expect_error(TypeError, ul.project, U.to(bad), A, B, names=["U"])
        expect_error(TypeError, ul.transport, U, A.to(bad), B, names=["A"])


# ================================================================== libraries and devices


def _libraries():
    U, A, B = _case(4, 1, "float64", 18)
    yield "numpy+torch", (U, torch.asarray(A), B), TypeError, ["A", "torch"]
    yield "numpy+strict", (U, A, xps.asarray(B)), TypeError, ["B", "array_api_strict"]
    yield "torch+strict", (torch.asarray(U), xps.asarray(A), torch.asarray(B)), TypeError, ["U"]
    dev1 = xps.Device("device1")
    yield "strict devices", (xps.asarray(U), xps.asarray(A, device=dev1), xps.asarray(B)), \
        ValueError, ["A", "device"]
    yield "list", (U.tolist(), A, B), TypeError, ["U"]
    yield "python float", (U, 1.0, B), TypeError, ["A"]
    yield "numpy scalar", (U, A, np.float64(1.0)), (TypeError, ValueError), ["B"]


@pytest.mark.parametrize("name", list(UPDATES))
@pytest.mark.parametrize("case", list(_libraries()), ids=lambda c: c[0])
def test_update_mixed_libraries(name, case):
    fn, _ = UPDATES[name]
    _, args, exc, names = case
    expect_error(exc, fn, *args, names=names)


def test_out_from_another_library():
    U, A, B = _case(4, 1, "float64", 19)
    kind, res = outcome(ul.project, U, A, B, out=torch.zeros(4, 4, dtype=torch.float64),
                        names=["out"])
    assert kind == "error"


# ======================================================= polar, unitarity_error, random_unitary


@pytest.mark.parametrize("M", [
    np.zeros((3, 3)), np.zeros((0, 3, 3)), np.zeros((0, 3)), np.ones((2, 4)),
    1e300 * np.arange(1.0, 10.0).reshape(3, 3), 1e-310 * np.eye(3), np.ones((1, 1)),
    np.asfortranarray(np.arange(12.0).reshape(4, 3)), np.arange(12.0).reshape(4, 3)[::-1],
], ids=["zeros", "empty batch", "0x3", "wide", "1e300", "subnormal", "1x1", "F", "negstride"])
def test_polar_hostile_values(M):
    P = expect_ok(ul.polar, M)
    assert P.shape == M.shape and np.all(np.isfinite(P))
    if P.size and M.shape[-2] >= M.shape[-1]:
        assert_unitary(P, factor=100)
    elif P.size:
        assert_unitary(_herm(P), factor=100)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_polar_non_finite(value):
    expect_error(ValueError, ul.polar, _special(np.eye(3), value, 0), names=["M"])


@pytest.mark.parametrize("f", [ul.polar, ul.unitarity_error, ul.reunitarize])
@pytest.mark.parametrize("bad", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
def test_dense_bad_dtypes(f, bad):
    names = ["M"] if f is ul.polar else ["U"]
    expect_error(TypeError, f, np.eye(3).astype(bad), names=names)


@pytest.mark.parametrize("method", ["exact", "probe"])
@pytest.mark.parametrize("U", [
    np.zeros((0, 4, 4)), np.zeros((3, 0)), np.zeros((0, 3)), np.ones((1, 1)),
    np.asfortranarray(np.eye(5)), np.eye(6)[::-1, ::-1], _layout(np.eye(4), "readonly"),
    _layout(np.eye(4), "broadcast"), 1e-310 * np.eye(3), 1e150 * np.eye(3), 1e300 * np.eye(2),
    np.full((2, 2), np.nan), np.eye(3, dtype=np.float32) * np.float32(1e30),
    ul.random_unitary(2, dtype="complex64", batch_shape=(5000,), rng=0),
], ids=["empty batch", "3x0", "0x3", "1x1", "F", "negstride", "readonly", "broadcast",
        "subnormal", "1e150", "1e300", "nan", "f32 overflow", "5000x2x2"])
def test_unitarity_error_hostile(method, U):
    err = expect_ok(ul.unitarity_error, U, method=method, rng=0)
    assert err.shape == U.shape[:-2]
    assert not np.any(np.isnan(err))  # never NaN: inf flags a non-finite matrix
    exact = to_numpy(ul.unitarity_error(U))
    if method == "probe":
        # a lower bound up to rounding: the double-precision Gram products round relative
        # to ‖UᴴU‖₂ <= 1 + exact (c·n·eps₆₄), and both figures are cast to U's precision
        slack = unitarity_bound(U.shape[-2], "float64")
        with np.errstate(invalid="ignore", over="ignore"):
            assert np.all((err <= exact * (1 + 2 * eps_of(U.dtype)) + slack * (1 + exact))
                          | np.isinf(exact))


@pytest.mark.parametrize("U", [
    np.zeros((0, 4, 4)), np.zeros((3, 0)), np.ones((1, 1)), -np.ones((1, 1)),
    np.asfortranarray(np.eye(5) + 1e-3), np.eye(6)[::-1, ::-1] * 1.001,
    _layout(np.eye(4) * 1.01, "readonly"), _layout(np.eye(4) * 0.99, "broadcast"),
    1e-310 * np.eye(3), 1e150 * np.eye(3), np.zeros((3, 3)), np.ones((4, 2)),
    ul.random_unitary(2, dtype="complex64", batch_shape=(5000,), rng=0) * np.float32(1.001),
], ids=["empty batch", "3x0", "1x1", "-1x1", "F", "negstride", "readonly", "broadcast",
        "subnormal", "1e150", "zeros", "rank one", "5000x2x2"])
@pytest.mark.parametrize("method", ["auto", "polar"])
def test_reunitarize_hostile(U, method):
    X = expect_ok(ul.reunitarize, U, method=method)
    assert X.shape == U.shape and X.dtype == U.dtype and np.all(np.isfinite(X))
    if X.size:
        # computed in double precision and rounded once to U's dtype (its docstring)
        err = float(np.max(ul.unitarity_error(X)))
        assert err <= rounded_unitarity_bound(U.shape[-2], U.dtype), err
        if np.linalg.matrix_rank(U.reshape(-1, *U.shape[-2:])[0]) == U.shape[-1]:
            # the documented dense-oracle tolerance (these U are well conditioned)
            assert_close(X, reference_polar(U), compare_tol(U.shape[-2], U.dtype))


def test_drift_guard_hostile():
    guard = ul.DriftGuard(every=1, rng=0)
    for U in [np.zeros((0, 3, 3)), np.ones((1, 1)), _layout(np.eye(4) * 1.01, "readonly"),
              np.eye(3, dtype=np.float32)]:
        X = expect_ok(guard, U)
        assert X.shape == U.shape and np.all(np.isfinite(X))
    expect_error(ValueError, guard, _special(np.eye(3), np.inf, 1), names=["U"])
    expect_error(TypeError, guard, np.eye(3, dtype=int), names=["U"])
    expect_error(TypeError, guard, [[1.0]], names=["U"])


@pytest.mark.parametrize(("kwargs", "exc", "names"), [
    ({"n": -1}, ValueError, ["n"]),
    ({"n": 2.5}, TypeError, ["n"]),
    ({"n": "3"}, TypeError, ["n"]),
    ({"n": 3, "p": 4}, ValueError, ["p"]),
    ({"n": 3, "p": -1}, ValueError, ["p"]),
    ({"n": 3, "dtype": "int64"}, TypeError, ["dtype"]),
    ({"n": 3, "dtype": np.float16}, TypeError, ["dtype"]),
    ({"n": 3, "dtype": None}, TypeError, ["dtype"]),
    ({"n": 3, "batch_shape": (-1,)}, ValueError, ["batch_shape"]),
    ({"n": 3, "batch_shape": (2.5,)}, TypeError, ["batch_shape"]),
    ({"n": 3, "batch_shape": 3}, TypeError, ["batch_shape"]),
    ({"n": 3, "rng": 1.5}, TypeError, ["rng"]),
    ({"n": 3, "rng": -1}, ValueError, ["rng"]),
], ids=lambda v: repr(v) if isinstance(v, dict) else None)
def test_random_unitary_bad_arguments(kwargs, exc, names):
    kwargs = {"dtype": "float64", **kwargs}
    n = kwargs.pop("n")
    expect_error(exc, ul.random_unitary, n, names=names, **kwargs)


# ================================================================== sketching and training


def _gradient(m, n, dtype, seed, batch=()):
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((*batch, m, n))
    if "complex" in dtype:
        G = G + 1j * rng.standard_normal((*batch, m, n))
    return G.astype(dtype)


def _check_factors(G, res, k, *, exact=False):
    A, B = (to_numpy(x) for x in res[:2])
    Gn = to_numpy(G) if not isinstance(G, tuple) else None
    assert np.all(np.isfinite(A)) and np.all(np.isfinite(B))
    assert A.shape[-1] == B.shape[-1] == k
    if B.size:
        BhB = _herm(B) @ B
        # orthonormal columns, or zero columns past the rank of G; "unitary to
        # 100·n·eps" is this suite's contract (docs/reliability.md, hostile inputs)
        d = np.diagonal(BhB, axis1=-2, axis2=-1)
        tol = unitarity_bound(B.shape[-2], B.dtype, 100)
        assert np.all((np.abs(d - 1) <= tol) | (np.abs(d) <= tol)), d
    if exact and Gn is not None and A.size:
        scale = float(np.max(np.abs(Gn), initial=0.0))
        # full rank: exact up to the dense-oracle tolerance, relative to the scale of G
        assert_close(A @ _herm(B), Gn, compare_tol(max(Gn.shape[-2:]), Gn.dtype) * scale)


SKETCHES = {
    "range_finder": lambda G, k, **kw: ul.range_finder(G, k, rng=0, **kw),
    "lowrank": lambda G, k, **kw: ul.lowrank(G, k, rng=0, **kw),
    "lowrank-info": lambda G, k, **kw: ul.lowrank(G, k, rng=0, return_info=True, **kw),
    "lowrank-column": lambda G, k, **kw: ul.lowrank(G, k, sampler="column", rng=0, **kw),
    "lowrank-lsi": lambda G, k, **kw: ul.lowrank(G, k, sampler="lsi", rng=0, **kw),
    "lowrank-tol": lambda G, k, **kw: ul.lowrank(G, tol=1e-6, rng=0, return_info=True, **kw),
}


def _sketch_ok(name, G, k):
    res = expect_ok(SKETCHES[name], G, k)
    if name == "range_finder":
        Q = to_numpy(res)
        assert np.all(np.isfinite(Q))
        if Q.size:
            assert_unitary(Q, factor=100)
        return res
    kk = res.rank if name == "lowrank-tol" else k
    _check_factors(G, res, kk)
    if hasattr(res, "error"):
        err = to_numpy(res.error)
        assert np.all(np.isfinite(err)) and np.all(err >= 0), err
    return res


@pytest.mark.parametrize("name", list(SKETCHES))
@pytest.mark.parametrize(("shape", "k"), [
    ((1, 1), 1), ((1, 7), 1), ((7, 1), 1), ((5, 5), 5), ((3000, 2, 2), 1), ((0, 6, 5), 2),
    ((2, 0, 4, 3), 1),
], ids=["1x1", "1x7", "7x1", "k=min", "3000x2x2", "empty batch", "empty batch 2"])
def test_sketch_shapes(name, shape, k):
    G = _gradient(*shape[-2:], "float64", 20, batch=shape[:-2])
    res = _sketch_ok(name, G, k)
    if name != "range_finder" and 0 not in shape:
        kk = res.rank if name == "lowrank-tol" else k
        # full rank is exact, except for LSI (by design) and column sampling (its
        # draws with replacement may repeat columns and miss directions)
        if kk >= min(shape[-2:]) and name not in ("lowrank-lsi", "lowrank-column"):
            _check_factors(G, res, kk, exact=True)


@pytest.mark.parametrize("name", list(SKETCHES))
@pytest.mark.parametrize("kind", LAYOUTS)
def test_sketch_layouts(name, kind):
    G = _gradient(8, 6, "float32", 21)
    ref = SKETCHES[name](G, 2)
    res = _sketch_ok(name, _layout(G, kind), 2)
    first = (lambda r: r) if name == "range_finder" else (lambda r: r[0])
    assert_close(first(res), first(ref), parity_tol(8, "float32"))


@pytest.mark.parametrize("name", list(SKETCHES))
@pytest.mark.parametrize("scale", [0.0, 1e-310, 1e-150, 1e150])
def test_sketch_value_scales(name, scale):
    G = _gradient(8, 6, "float64", 22) * scale
    _sketch_ok(name, G, 2)


# Entries ~1e155 and up would overflow squared norms (error NaN, rank 1) and ~1e-155 and
# below underflow them (error 0.0): the sketch scales such gradients first.
@pytest.mark.parametrize(("name", "scale"), [
    ("range_finder", 1e300), ("lowrank", 1e300), ("lsi", 1e300), ("info", 1e200),
    ("tol", 1e200), ("column", 1e200), ("info", 1e-200), ("tol", 1e-200), ("column", 1e-200),
    ("info", 1e300), ("tol", 1e-300),
])
def test_sketch_extreme_scales(name, scale):
    G = _gradient(8, 6, "float64", 23)
    ref = ul.lowrank(G, tol=1e-6, rng=0, return_info=True)
    Gs = G * scale
    call = {"range_finder": lambda: ul.range_finder(Gs, 2, rng=0),
            "lowrank": lambda: ul.lowrank(Gs, 2, rng=0),
            "lsi": lambda: ul.lowrank(Gs, 2, sampler="lsi", rng=0),
            "info": lambda: ul.lowrank(Gs, 2, rng=0, return_info=True),
            "tol": lambda: ul.lowrank(Gs, tol=1e-6, rng=0, return_info=True),
            "column": lambda: ul.lowrank(Gs, 2, sampler="column", rng=0, return_info=True)}[name]
    res = expect_ok(call)
    if name == "range_finder":
        assert_unitary(res, factor=100)
        return
    _check_factors(Gs, res, res.rank if name == "tol" else 2)
    if hasattr(res, "error"):
        # the relative error does not depend on the scale of G
        info2 = ul.lowrank(G, res.rank, rng=0, return_info=True, sampler=(
            "column" if name == "column" else "randomized"))
        assert np.all(np.isfinite(res.error))
        # lowrank documents its error as "accurate to rounding (about n·eps)"
        np.testing.assert_allclose(res.error, info2.error, rtol=0,
                                   atol=compare_tol(8, "float64"))
        if name == "tol":
            assert res.rank == ref.rank


@pytest.mark.parametrize("sampler", ["randomized", "lsi", "info"])
def test_sketch_factored_extreme_scale(sampler):
    rng = np.random.default_rng(24)
    X, Y = 1e150 * rng.standard_normal((8, 3)), 1e150 * rng.standard_normal((6, 3))
    kw = {"return_info": True} if sampler == "info" else {"sampler": sampler}
    res = expect_ok(ul.lowrank, (X, Y), 2, rng=0, **kw)
    _check_factors((X, Y), res, 2)
    Q = expect_ok(ul.range_finder, (np.tile(X, (1, 4)), np.tile(Y, (1, 4))), 2, rng=0)
    assert_unitary(Q, factor=100)


@pytest.mark.parametrize("name", list(SKETCHES))
def test_sketch_bad_inputs(name):
    f = SKETCHES[name]
    G = _gradient(6, 5, "float64", 25)
    expect_error(ValueError, f, _special(G, np.nan, 0), 2, names=["G"])
    expect_error(ValueError, f, _special(G, -np.inf, 1), 2, names=["G"])
    for bad in BAD_DTYPES:
        expect_error(TypeError, f, G.astype(bad), 2, names=["G"])
    # a list is read as a pair (X, Y) when it has two items, so either error is clear
    expect_error((TypeError, ValueError), f, G.tolist(), 2, names=["G"])
    expect_error(ValueError, f, G[0], 1, names=["G"])
    X, Y = G[:, :3], G[:, 2:]
    expect_error(TypeError, f, (torch.asarray(X), Y), 2, names=["X", "Y"])
    expect_error(ValueError, f, (X, Y[:, :2]), 2, names=["X", "Y", "r"])
    expect_error(ValueError, f, (X, Y, Y), 2, names=["G"])
    expect_error(ValueError, f, (X, _special(Y, np.nan, 2)), 2, names=["Y"])
    if name not in ("lowrank-tol",):
        for k, exc in [(0, ValueError), (6, ValueError), (True, TypeError), (2.0, TypeError),
                       ("2", TypeError), (None, (TypeError, ValueError))]:
            kind, res = outcome(f, G, k, names=["size", "rank"])
            assert kind == "error" and isinstance(res, exc), (k, res)


@pytest.mark.parametrize("kwargs", [
    {"tol": float("nan")}, {"tol": -1.0}, {"tol": float("inf")}, {"tol": 0.0},
    {"tol": "0.1"}, {"tol": 1e-3, "max_rank": 0}, {"tol": 1e-3, "sampler": "lsi"},
    {"n_iter": -1}, {"oversample": -1}, {"sampler": "svd"}, {"n_iter": 1.5},
])
def test_lowrank_bad_options(kwargs):
    G = _gradient(6, 5, "float64", 26)
    kwargs = {"rank": None if "tol" in kwargs else 2, **kwargs}
    kind, res = outcome(ul.lowrank, G, names=list(kwargs) + ["tol=", "rank"], **kwargs)
    assert kind == "error"


def test_lowrank_tol_tiny_terminates():
    G = _gradient(20, 15, "float64", 27)
    info = expect_ok(ul.lowrank, G, tol=1e-300, rng=0, return_info=True)
    assert info.rank == 15  # no rank meets 1e-300: the largest one, not a hang


@pytest.mark.parametrize("method", ["exp", "polar", "cayley"])
def test_step_hostile(method):
    U = ul.random_unitary(6, dtype="float64", rng=28)
    G = _gradient(6, 6, "float64", 29)
    f = ul.step
    for lr, g in [(0.1, np.zeros_like(G)), (1e-300, G), (0.1, G * 1e-300),
                  (np.float32(0.1), G), (1, G), (-0.1, G),
                  (0.1, np.asfortranarray(G)), (0.1, _layout(G, "readonly"))]:
        X = expect_ok(f, U, g, lr, method=method, rng=0)
        assert np.all(np.isfinite(X)) and X.dtype == U.dtype
        assert_unitary(X, factor=100)
    X = expect_ok(f, np.zeros((0, 6, 6)), np.zeros((0, 6, 6)), 0.1, method=method)
    assert X.shape == (0, 6, 6)
    X = expect_ok(f, np.ones((1, 1)), np.ones((1, 1)), 0.5, method=method, rng=0)
    assert_unitary(X, factor=100)
    X = expect_ok(f, U.astype(np.float32), G, 0.1, method=method, rng=0)
    assert X.dtype == np.float64  # promoted
    expect_error(ValueError, f, U, _special(G, np.nan, 0), 0.1, method=method, names=["G"])
    expect_error(ValueError, f, _special(U, np.inf, 0), G, 0.1, method=method, names=["U"])
    expect_error(ValueError, f, U, G, float("nan"), method=method, names=["lr"])
    expect_error(ValueError, f, U, G, float("inf"), method=method, names=["lr"])
    expect_error(TypeError, f, U, G, "0.1", method=method, names=["lr"])
    expect_error(TypeError, f, U, G, True, method=method, names=["lr"])
    expect_error(TypeError, f, U, G, 1j, method=method, names=["lr"])
    expect_error(ValueError, f, U, G[:5], 0.1, method=method, names=["G"])
    expect_error(TypeError, f, U, torch.asarray(G), 0.1, method=method, names=["U", "G"])
    expect_error(TypeError, f, U, G.astype(np.float16), 0.1, method=method, names=["G"])
    expect_error(TypeError, f, U.astype(np.int64), G, 0.1, method=method, names=["U"])
    expect_error(ValueError, f, U, G, 0.1, method=method, rank=7, names=["rank"])


@pytest.mark.parametrize("method", ["exp", "polar", "cayley"])
def test_step_readonly_out(method):
    # n = 512: large enough for engine="auto" to take the numba/BLAS kernels
    U = ul.random_unitary(512, dtype="float64", rng=28)
    G = _gradient(512, 512, "float64", 29)
    expect_error(ValueError, ul.step, U, G, 0.1, method=method, rng=0,
                 out=_layout(np.zeros_like(U), "readonly"), names=["out", "read-only"])


@pytest.mark.parametrize("method", ["exp", "polar", "cayley"])
def test_step_huge_learning_rate(method):
    """A learning rate so large that the step overflows: a unitary result or a ValueError."""
    U = ul.random_unitary(6, dtype="float64", rng=30)
    G = _gradient(6, 6, "float64", 31)
    for lr in (1e150, 1e300):
        kind, res = outcome(ul.step, U, G, lr, method=method, rng=0,
                            names=["lr", "G", "step", "A", "B"])
        if kind == "ok":
            assert np.all(np.isfinite(res))
            if method != "exp":
                assert_unitary(res, factor=100)


# ------------------------------------------------------------------ interrupts

#: Run in a fresh interpreter: the engine's first import is interrupted by a Ctrl-C
#: (SIGINT sent to itself, or a KeyboardInterrupt raised outright) when it reaches the
#: module argv[1]; the caller catches it, and every later call must work.
_INTERRUPTED_IMPORT = r"""
import os, signal, sys
import numpy as np
import unitary_lowrank as ul
from unitary_lowrank import _engines
from unitary_lowrank.testing import assert_unitary

target, how = sys.argv[1], sys.argv[2]
fired = []

def hook(event, args):
    if event == "import" and args[0] == target and not fired:
        fired.append(True)
        if how == "signal":
            os.kill(os.getpid(), signal.SIGINT)
        else:
            raise KeyboardInterrupt

sys.addaudithook(hook)
U = ul.random_unitary(4, dtype="float64", rng=0)
A, B = np.full((4, 1), 1e-3), np.ones((4, 1))
try:
    ul.project(U, A, B)
except KeyboardInterrupt:
    interrupted = True
else:
    interrupted = False
assert fired and interrupted, (fired, interrupted)
for _ in range(2):
    assert_unitary(ul.project(U, A, B))
assert _engines.load_small() is not None and _engines.load_numba() is not None
M = ul.random_unitary(600, dtype="float64", rng=1)
assert_unitary(ul.project(M, np.full((600, 1), 1e-3), np.ones((600, 1)), engine="numba"))
print("ok")
"""


@pytest.mark.parametrize("how", ["signal", "raise"])
@pytest.mark.parametrize("target", ["numba.core.typing", "yaml"])
def test_interrupted_engine_import_leaves_a_working_process(target, how):
    """Ctrl-C during the lazy import of the Numba engine: the next call works.

    ``"signal"``: SIGINT lands while numba is being imported, is held back until the
    import is over and reaches the caller as KeyboardInterrupt. ``"raise"``: the
    import is aborted half-way (the modules it left half-initialised are forgotten,
    so that the retry imports them afresh instead of failing with
    ``module 'numba' has no attribute 'core'``).
    """
    import subprocess
    import sys

    pytest.importorskip("numba")
    pytest.importorskip("yaml")
    env = {k: v for k, v in os.environ.items() if k != "UNITARY_LOWRANK_DISABLE_NUMBA"}
    proc = subprocess.run([sys.executable, "-c", _INTERRUPTED_IMPORT, target, how],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


@pytest.mark.parametrize("name", ["transport", "cayley"])
def test_huge_step_with_widely_spread_singular_values(name):
    """A huge step with singular values 1e20 and 1e-14 in its factor stays unitary.

    The rank-5 sketch of a rank-2 G of size 1e20 gives such a step: the real skew
    core's noise-level eigenvalues once made the result far from unitary
    (‖XᴴX − I‖₂ ≈ 0.2 to 8).
    """
    U = ul.random_unitary(8, dtype="float64", rng=1)
    G = np.ones((8, 8))
    G[0, 1] = -1.0 / 3.0  # rank 2
    A, B = ul.lowrank(G, 5, rng=0)  # σ(A) ≈ [1, 0.15, 1e-34, 1e-35, 0]
    f = ul.transport if name == "transport" else functools.partial(ul.retract,
                                                                   method="cayley")
    assert_unitary(f(U, -1e20 * A, B), factor=100)
