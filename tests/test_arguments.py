"""Every argument is checked where it enters, and its errors name it.

``xp=`` (a plain library module is mapped to its Array-API namespace, anything
else is a `TypeError` naming `xp`), ``out=`` (an array of the inputs' library,
else a `TypeError` naming `out` and both libraries), arrays that array-api-compat
accepts but no routine can use (NumPy masked arrays and matrices, torch ``meta``
tensors), ``lr`` of :func:`unitary_lowrank.step` and :func:`conv.update` (one
validator), the ``tol`` of :class:`DriftGuard`, and a malformed
``UNITARY_LOWRANK_RESULT_POOL`` at the first update of a process.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import warnings

import array_api_compat
import array_api_compat.numpy
import array_api_compat.torch
import numpy as np
import pytest

import unitary_lowrank as ul
from unitary_lowrank import conv

torch = pytest.importorskip("torch")
xps = pytest.importorskip("array_api_strict")

N = 4
U = ul.random_unitary(N, dtype="float64", rng=0)
A = 0.1 * np.ones((N, 1))
B = np.ones((N, 1))
LAYOUT = conv.FourierLayout(4)
W = conv.random_blocks(2, LAYOUT, dtype="float64", rng=0)  # (10, 2, 2) complex128
X_IMG = np.random.default_rng(1).standard_normal((1, 2, 4, 4))
K = np.zeros((2, 2, 3, 3))
K[:, :, 0, 0] = np.eye(2)
GRAD = conv.gradient_factors(X_IMG, X_IMG, LAYOUT)
#: A gradient with distinct singular values (4, 3, 2, 1): its rank-1 factors are unique.
G = np.diag([4.0, 3.0, 2.0, 1.0]) @ U


def _guard_call(U, **kw):
    return ul.DriftGuard(every=1, rng=0)(U, **kw)


def _guard_check(U, **kw):
    return ul.DriftGuard(rng=0).check(U, **kw)


# Every public routine that takes arrays, with its arrays by name: (label, call, args),
# where call(**args) runs it. Replacing one entry of args exercises that argument.
CALLS = [
    ("project", lambda U, A, B, **kw: ul.project(U, A, B, **kw), {"U": U, "A": A, "B": B}),
    ("transport", lambda U, A, B, **kw: ul.transport(U, A, B, **kw), {"U": U, "A": A, "B": B}),
    ("retract", lambda U, A, B, **kw: ul.retract(U, A, B, "cayley", **kw),
     {"U": U, "A": A, "B": B}),
    ("step", lambda U, G, **kw: ul.step(U, G, 0.1, rng=0, **kw), {"U": U, "G": G}),
    ("step-pair", lambda U, X, Y, **kw: ul.step(U, (X, Y), 0.1, rng=0, **kw),
     {"U": U, "X": A, "Y": B}),
    ("lowrank", lambda G, **kw: ul.lowrank(G, 1, rng=0, **kw), {"G": G}),
    ("range_finder", lambda G, **kw: ul.range_finder(G, 1, rng=0, **kw), {"G": G}),
    ("polar", lambda M, **kw: ul.polar(M, **kw), {"M": U}),
    ("unitarity_error", lambda U, **kw: ul.unitarity_error(U, **kw), {"U": U}),
    ("reunitarize", lambda U, **kw: ul.reunitarize(U, **kw), {"U": U}),
    ("DriftGuard", _guard_call, {"U": U}),
    ("DriftGuard.check", _guard_check, {"U": U}),
    ("kernel_to_blocks", lambda K, **kw: conv.kernel_to_blocks(K, LAYOUT, **kw), {"K": K}),
    ("blocks_to_kernel", lambda W, **kw: conv.blocks_to_kernel(W, LAYOUT, **kw), {"W": W}),
    ("convolve", lambda W, x, **kw: conv.convolve(W, x, LAYOUT, **kw), {"W": W, "x": X_IMG}),
    ("convolve_adjoint", lambda W, y, **kw: conv.convolve_adjoint(W, y, LAYOUT, **kw),
     {"W": W, "y": X_IMG}),
    ("orthogonality_error", lambda W, **kw: conv.orthogonality_error(W, LAYOUT, **kw),
     {"W": W}),
    ("gradient_factors", lambda x, dy, **kw: conv.gradient_factors(x, dy, LAYOUT, **kw),
     {"x": X_IMG, "dy": X_IMG}),
    ("conv.update", lambda W, A, B, **kw: conv.update(W, (A, B), LAYOUT, lr=0.1, **kw),
     {"W": W, "A": GRAD[0], "B": GRAD[1]}),
    ("conv.update-dense", lambda W, grad, **kw: conv.update(W, grad, LAYOUT, lr=0.1, **kw),
     {"W": W, "grad": np.zeros_like(W)}),
]
TAKES_XP = [c for c in CALLS if not c[0].startswith("DriftGuard")]
#: How a routine names an argument in its messages, where it is not the parameter's name.
SHOWN = {("step-pair", "X"): "G[0] (X)", ("step-pair", "Y"): "G[1] (Y)"}
CREATORS = [
    ("random_unitary", lambda **kw: ul.random_unitary(3, dtype="float64", **kw)),
    ("identity_blocks", lambda **kw: conv.identity_blocks(2, LAYOUT, dtype="float64", **kw)),
    ("random_blocks", lambda **kw: conv.random_blocks(2, LAYOUT, dtype="float64", rng=0, **kw)),
]
ENTRY = [(label, call, args, name) for label, call, args in CALLS for name in args]


def _entry_id(entry):
    return f"{entry[0]}:{entry[3]}"


# ------------------------------------------------------------------ xp


@pytest.mark.parametrize("bad", ["numpy", 1, math, pytest, array_api_compat, None.__class__],
                         ids=["str", "int", "math", "pytest", "array_api_compat", "type"])
@pytest.mark.parametrize("call", TAKES_XP, ids=lambda c: c[0])
def test_xp_that_is_not_a_namespace_is_a_type_error_naming_xp(call, bad):
    _, f, args = call
    with pytest.raises(TypeError, match=r"^xp must be an array namespace.*, got "):
        f(**args, xp=bad)


@pytest.mark.parametrize("bad", ["numpy", 2, math, pytest], ids=["str", "int", "math", "pytest"])
@pytest.mark.parametrize("create", CREATORS, ids=lambda c: c[0])
def test_xp_of_the_creators_is_checked(create, bad):
    with pytest.raises(TypeError, match=r"^xp must be an array namespace.*, got "):
        create[1](xp=bad)


@pytest.mark.parametrize("call", TAKES_XP, ids=lambda c: c[0])
def test_plain_numpy_module_is_accepted_as_xp(call):
    _, f, args = call
    expected = f(**args)
    got = f(**args, xp=np)
    for e, g in zip(expected if isinstance(expected, tuple) else (expected,),
                    got if isinstance(got, tuple) else (got,), strict=True):
        assert type(g) is type(e)
        np.testing.assert_array_equal(np.asarray(g), np.asarray(e))


@pytest.mark.parametrize("call", TAKES_XP, ids=lambda c: c[0])
@pytest.mark.parametrize("namespace", ["torch", "compat"])
def test_plain_torch_module_and_compat_namespace_are_accepted_as_xp(call, namespace):
    _, f, args = call
    targs = {k: torch.asarray(v) for k, v in args.items()}
    xp = torch if namespace == "torch" else array_api_compat.torch
    got = f(**targs, xp=xp)
    expected = f(**args)
    got = got if isinstance(got, tuple) else (got,)
    assert all(isinstance(g, torch.Tensor) for g in got)
    got = tuple(g.resolve_conj().numpy() for g in got)
    expected = expected if isinstance(expected, tuple) else (expected,)
    np.testing.assert_allclose(_unique_part(got), _unique_part(expected), rtol=0, atol=1e-12)


def _unique_part(res):
    """What a result determines uniquely: ``A Bᴴ`` of factors, ``Q Qᴴ`` of a basis.

    The signs of the factors and of the basis depend on the LAPACK of the library.
    """
    if len(res) == 2:
        a, b = res
        return a @ np.conj(np.swapaxes(b, -1, -2))
    (r,) = res
    if r.ndim == 2 and r.shape[-1] == 1:  # range_finder's Q
        return r @ r.conj().T
    return r


@pytest.mark.parametrize("create", CREATORS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("xp", "kind"),
    [(np, np.ndarray), (array_api_compat.numpy, np.ndarray), (torch, torch.Tensor),
     (array_api_compat.torch, torch.Tensor), (xps, type(xps.empty(0)))],
    ids=["numpy", "compat-numpy", "torch", "compat-torch", "strict"],
)
def test_creators_accept_plain_modules_and_namespaces(create, xp, kind):
    out = create[1](xp=xp)
    assert isinstance(out, kind)
    assert str(out.dtype).endswith(("float64", "complex128"))


def test_jax_numpy_is_accepted_as_xp():
    jnp = pytest.importorskip("jax.numpy")
    M = jnp.asarray(np.diag([2.0, 0.5]).astype(np.float32))
    P = ul.polar(M, xp=jnp)
    assert array_api_compat.is_jax_array(P)
    np.testing.assert_allclose(np.asarray(P), np.eye(2), atol=1e-6)
    R = ul.random_unitary(3, dtype="float32", xp=jnp)
    assert array_api_compat.is_jax_array(R)


def test_array_api_strict_is_accepted_as_xp():
    S = xps.asarray(U)
    X = ul.project(S, xps.asarray(A), xps.asarray(B), xp=xps)
    np.testing.assert_allclose(np.asarray(X._array), ul.project(U, A, B), atol=1e-15)


@pytest.mark.parametrize("xp", [torch, array_api_compat.torch, xps])
def test_xp_of_another_library_than_the_arrays_names_xp_and_both(xp):
    with pytest.raises(TypeError, match=r"^xp must be the namespace of U, A, B, numpy arrays, "
                                        r"got (torch|array_api_compat\.torch|array_api_strict)"):
        ul.project(U, A, B, xp=xp)
    with pytest.raises(TypeError, match=r"^xp must be the namespace of M, numpy arrays"):
        ul.polar(U, xp=xp)


def test_numpy_xp_for_torch_arrays_names_xp():
    with pytest.raises(TypeError, match=r"^xp must be the namespace of U, torch arrays, got "
                                        r"numpy"):
        ul.reunitarize(torch.asarray(U), xp=np)


# ------------------------------------------------------------------ out


OUT_CALLS = [
    ("project", lambda U, out: ul.project(U, A if isinstance(U, np.ndarray) else
                                          torch.asarray(A), B if isinstance(U, np.ndarray)
                                          else torch.asarray(B), out=out)),
    ("transport", lambda U, out: ul.transport(U, *_factors_like(U), out=out)),
    ("retract", lambda U, out: ul.retract(U, *_factors_like(U), "cayley", out=out)),
    ("step", lambda U, out: ul.step(U, U.T @ U.T, 0.1, rng=0, out=out)),
    ("reunitarize", lambda U, out: ul.reunitarize(U, out=out)),
    ("DriftGuard", lambda U, out: ul.DriftGuard(every=2, rng=0)(U, out=out)),
    ("DriftGuard.check", lambda U, out: ul.DriftGuard(rng=0).check(U, out=out)),
]


def _factors_like(U):
    if isinstance(U, np.ndarray):
        return A, B
    return torch.asarray(A), torch.asarray(B)


@pytest.mark.parametrize("call", OUT_CALLS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("inputs", "out", "pattern"),
    [
        ("numpy", lambda: np.empty((N, N)).tolist(), "out must be a numpy array like U, got list"),
        ("numpy", lambda: torch.empty((N, N), dtype=torch.float64),
         "out must be a numpy array like U, got torch.Tensor"),
        ("numpy", lambda: xps.empty((N, N), dtype=xps.float64),
         "out must be a numpy array like U, got array_api_strict.Array"),
        ("torch", lambda: np.empty((N, N)),
         "out must be a torch array like U, got numpy.ndarray"),
        ("numpy", lambda: np.ma.asarray(np.empty((N, N))), "out must be a plain numpy.ndarray, "
                                                           "got a masked array"),
    ],
    ids=["list", "torch-for-numpy", "strict-for-numpy", "numpy-for-torch", "masked"],
)
def test_out_of_another_library_is_a_type_error_naming_out_and_both(call, inputs, out, pattern):
    Uin = U if inputs == "numpy" else torch.asarray(U)
    with pytest.raises(TypeError, match=f"^{re.escape(pattern)}"):
        call[1](Uin, out())


@pytest.mark.parametrize("grad", ["pair", "dense"])
def test_conv_update_out_of_another_library_names_out_and_w(grad):
    g = GRAD if grad == "pair" else np.zeros_like(W)
    with pytest.raises(TypeError, match="^out must be a numpy array like W, got torch.Tensor"):
        conv.update(W, g, LAYOUT, lr=0.1, out=torch.asarray(W))
    with pytest.raises(TypeError, match="^out must be a numpy array like W, got list"):
        conv.update(W, g, LAYOUT, lr=0.1, out=W.tolist())


@pytest.mark.parametrize("call", OUT_CALLS, ids=lambda c: c[0])
def test_out_of_the_wrong_dtype_shows_plain_dtype_names(call):
    Ut = torch.asarray(U)
    with pytest.raises(ValueError, match=r"^out must have shape \(4, 4\) and dtype float64, got "
                                         r"\(4, 4\) and float32$"):
        call[1](Ut, torch.empty((N, N), dtype=torch.float32))


@pytest.mark.parametrize("call", OUT_CALLS, ids=lambda c: c[0])
def test_read_only_out_is_refused_everywhere(call):
    out = np.empty((N, N))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="^out is read-only"):
        call[1](U.copy(), out)


def test_out_on_another_device_names_out():
    dev = xps.Device("device1")
    S = xps.asarray(U)
    with pytest.raises(ValueError, match=r"^out is on device .* but U is on"):
        ul.reunitarize(S, out=xps.empty((N, N), dtype=xps.float64, device=dev))


def test_jax_out_is_refused_up_front():
    jnp = pytest.importorskip("jax.numpy")
    J = jnp.asarray(U.astype(np.float32))
    with pytest.raises(TypeError, match="^out cannot be a JAX array"):
        ul.reunitarize(J, out=jnp.zeros((N, N), dtype=jnp.float32))


def test_good_out_still_works_everywhere():
    for _, f in OUT_CALLS:
        out = np.empty((N, N))
        assert f(U.copy(), out) is out
        Ut = torch.asarray(U)
        tout = torch.empty((N, N), dtype=torch.float64)
        assert f(Ut, tout) is tout
    out = np.empty_like(W)
    assert conv.update(W, GRAD, LAYOUT, lr=0.1, out=out) is out


# ------------------------------------------------------------------ refused kinds of arrays


def _matrix(x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # numpy.matrix is deprecated
        return np.asmatrix(x)


def _masked(x):
    return np.ma.masked_array(x, mask=np.zeros(x.shape, bool))


def _meta(x):
    return torch.empty(x.shape, dtype=torch.float64 if x.dtype.kind == "f" else torch.complex128,
                       device="meta")


REFUSED = [(_masked, "masked array"), (_matrix, "numpy.matrix"), (_meta, "'meta' device")]


@pytest.mark.parametrize(
    ("entry", "make", "what"),
    [
        pytest.param(entry, make, what, id=f"{make.__name__[1:]}-{_entry_id(entry)}")
        for make, what in REFUSED
        for entry in ENTRY
        if make is not _matrix or entry[2][entry[3]].ndim == 2  # numpy.matrix is 2-D only
    ],
)
def test_refused_kinds_of_arrays_are_type_errors_naming_the_argument(entry, make, what):
    label, f, args, name = entry
    shown = SHOWN.get((label, name), name)
    bad = dict(args)
    bad[name] = make(args[name])
    with pytest.raises(TypeError, match=f"^{re.escape(shown)} must be .*{re.escape(what)}"):
        f(**bad)


@pytest.mark.parametrize("f", [ul.project, ul.transport], ids=["project", "transport"])
def test_meta_tensors_among_torch_inputs(f):
    Ut, At, Bt = torch.asarray(U), torch.asarray(A), torch.asarray(B)
    with pytest.raises(TypeError, match=r"^A must be a torch tensor with data, got a "
                                        r"torch.Tensor on the 'meta' device \(shape \(4, 1\)"):
        f(Ut, At.to("meta"), Bt)
    with pytest.raises(TypeError, match="^U must be a torch tensor with data"):
        f(Ut.to("meta"), At, Bt, xp=torch)


def test_masked_values_are_not_silently_used():
    M = np.ma.masked_array(U, mask=np.eye(N, dtype=bool))
    with pytest.raises(TypeError, match="^U must be a plain numpy.ndarray, got a masked array"):
        ul.project(M, A, B)
    with pytest.raises(TypeError, match="^M must be a plain numpy.ndarray, got a masked array"):
        ul.polar(M)


def test_ndarray_subclasses_that_behave_are_accepted():
    class Tagged(np.ndarray):
        pass

    X = ul.project(U.view(Tagged), A, B)
    np.testing.assert_array_equal(np.asarray(X), ul.project(U, A, B))


# ------------------------------------------------------------------ lr and tol


def test_step_names_g_and_lr_when_the_step_overflows():
    G = 1e10 * np.random.default_rng(2).standard_normal((N, N))
    with pytest.raises(ValueError, match=r"^the step -lr\*G is too large for float64: lr = "
                                         r"1e\+300 times G \(Frobenius norm .*\) overflows") as e:
        ul.step(U, G, 1e300, rng=0)
    assert not re.search(r"\bA\b|\bB\b", str(e.value))


@pytest.mark.parametrize("method", ["exp", "polar", "cayley"])
@pytest.mark.parametrize(
    ("lr", "where"), [(1e28, "core"), (-1e28, "core"), (1e29, "factor")]
)
def test_step_names_g_and_lr_when_the_step_overflows_float32(method, lr, where):
    """Float32, U an 8×8 Hadamard matrix / √8 and G = 1e10 everywhere.

    At lr = 1e28 the scaled factor (entries 2.8e38) fits the dtype but
    ``Uᴴ(lr·G)`` (√8 times more) in the core of the retraction does not; at 1e29
    the factor overflows.
    """
    h2 = np.array([[1.0, 1.0], [1.0, -1.0]])
    U8 = (np.kron(np.kron(h2, h2), h2) / np.sqrt(8.0)).astype(np.float32)
    G8 = np.full((8, 8), 1e10, np.float32)
    before = U8.copy()
    with pytest.raises(ValueError, match=r"^the step -lr\*G is too large for float32: lr = "
                                         r"-?1e\+(28|29) times G") as e:
        ul.step(U8, G8, lr, method=method, rng=0, out=U8)
    assert not re.search(r"\bA\b|\bB\b", str(e.value))
    # the core's own error (which names A @ B^H) is chained, not shown
    assert (e.value.__cause__ is not None) == (where == "core")
    np.testing.assert_array_equal(U8, before)  # out untouched


def _message(call):
    try:
        call()
    except (TypeError, ValueError) as exc:
        return type(exc), str(exc)
    raise AssertionError("no error")


@pytest.mark.parametrize(
    ("lr", "exc", "pattern"),
    [
        ("0.1", TypeError, "^lr must be a real number, got str '0.1'$"),
        (True, TypeError, "^lr must be a real number, got bool True$"),
        (0.1j, TypeError, r"^lr must be a real number, got complex 0\.1j$"),
        # a 0-d array is its value (also a traced one under jax.jit); other shapes are refused
        (np.array([0.1]), ValueError, r"^lr must be a real number or a 0-d array, got shape"),
        (float("nan"), ValueError, "^lr must be finite, got nan"),
        (float("inf"), ValueError, "^lr must be finite, got inf"),
        (-np.inf, ValueError, "^lr must be finite, got -inf"),
    ],
)
def test_conv_update_checks_lr_like_step(lr, exc, pattern):
    in_step = _message(lambda: ul.step(U, U.T, lr, rng=0))
    in_conv = _message(lambda: conv.update(W, GRAD, LAYOUT, lr=lr))
    assert in_step == in_conv
    assert in_conv[0] is exc
    assert re.search(pattern, in_conv[1])


def test_conv_update_accepts_any_real_lr():
    for lr in (0.1, np.float32(0.1), 1, np.int64(1), -0.1, 0):
        conv.update(W, GRAD, LAYOUT, lr=lr)


@pytest.mark.parametrize(
    ("tol", "exc"),
    [(float("inf"), ValueError), (float("nan"), ValueError), (-1.0, ValueError),
     (0.0, ValueError), (-float("inf"), ValueError), ("1e-6", TypeError), (True, TypeError),
     (1j, TypeError)],
)
def test_drift_guard_refuses_a_tol_that_is_not_positive_and_finite(tol, exc):
    with pytest.raises(exc, match="^tol must be a (positive|real) number"):
        ul.DriftGuard(tol=tol)


def test_drift_guard_accepts_positive_finite_tol():
    assert ul.DriftGuard(tol=np.float32(1e-6)).tol == pytest.approx(1e-6)
    assert ul.DriftGuard(tol=1).tol == 1.0


# ------------------------------------------------------------------ result pool environment


UPDATE_CODE = {
    "project": "ul.project(U, A, B)",
    "transport": "ul.transport(U, A, B)",
    "step": "ul.step(U, U.T, 0.1, rng=0)",
    "conv.update": (
        "from unitary_lowrank import conv; L = conv.FourierLayout(4); "
        "W = conv.identity_blocks(2, L, dtype='float64'); "
        "conv.update(W, np.zeros_like(W), L, lr=0.1)"
    ),
}


@pytest.mark.parametrize("update", sorted(UPDATE_CODE))
@pytest.mark.parametrize("value", ["1GiB", "-5"])
def test_malformed_pool_variable_is_reported_by_the_first_small_update(update, value):
    code = (
        "import numpy as np, unitary_lowrank as ul\n"
        "U = ul.random_unitary(4, dtype='float64', rng=0)\n"
        "A = 0.1 * np.ones((4, 1)); B = np.ones((4, 1))\n"
        f"{UPDATE_CODE[update]}\n"
        "print('no error')\n"
    )
    env = {**os.environ, "UNITARY_LOWRANK_RESULT_POOL": value}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode != 0, res.stdout
    assert "no error" not in res.stdout
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: ")
    assert "UNITARY_LOWRANK_RESULT_POOL must be" in last
