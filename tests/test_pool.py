"""The result pool: large results of the NumPy engines reuse the memory of dropped ones.

Never the memory of an array (or view, or tensor) still alive; bounded; and
bit-identical to fresh memory.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import unitary_lowrank as ul
from unitary_lowrank import _engines, _pool
from unitary_lowrank.methods import METHODS
from unitary_lowrank.testing import lowrank_factors

ENGINES = [
    "blas",
    pytest.param("numba", marks=pytest.mark.skipif(_engines.load_numba() is None,
                                                      reason="numba is not installed")),
]


@pytest.fixture
def small_pool(monkeypatch):
    """Pool every result of 1 KiB or more, starting empty; restores the bound after."""
    monkeypatch.setattr(_pool, "MIN_BYTES", 1024)
    old = ul.set_result_pool(0)  # frees what earlier tests left
    ul.set_result_pool(1 << 30)
    yield
    gc.collect()
    ul.set_result_pool(0)
    ul.set_result_pool(old)


def _case(n=24, k=2, dtype="complex128", seed=0, batch=()):
    rng = np.random.default_rng(seed)
    U = ul.random_unitary(n, dtype=dtype, batch_shape=batch, rng=rng)
    A, B = lowrank_factors(n, n, k, dtype, rng, norm=0.3)
    return U, A, B


def _pooled(x: np.ndarray) -> bool:
    """Whether x lies on a block of the pool (its memory owner is the pool's ctypes holder)."""
    owner = x
    while isinstance(owner, np.ndarray) and owner.base is not None:
        owner = owner.base
    return isinstance(owner, ctypes.Array)


def _address(x: np.ndarray) -> int:
    return x.__array_interface__["data"][0]


def _fresh(U, A, B, method, engine):
    """The same update with recycling off."""
    old = ul.set_result_pool(0)
    try:
        X = ul.retract(U, A, B, method=method, engine=engine)
    finally:
        ul.set_result_pool(old)
    assert not _pooled(X)  # really fresh memory
    return X


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("method", METHODS)
def test_dropped_result_is_recycled_and_identical(small_pool, engine, method, dtype):
    U, A, B = _case(dtype=dtype, batch=(3,))
    expected = _fresh(U, A, B, method, engine)
    X = ul.retract(U, A, B, method=method, engine=engine)
    address = _address(X)
    before = ul.result_pool_info()
    del X
    assert ul.result_pool_info().idle_blocks == before.idle_blocks + 1
    Y = ul.retract(U, A, B, method=method, engine=engine)
    assert _pooled(Y)
    after = ul.result_pool_info()
    assert after.reused == before.reused + 1 and _address(Y) == address
    assert Y.dtype == expected.dtype and Y.shape == expected.shape
    assert Y.flags.c_contiguous and Y.flags.writeable and Y.flags.aligned
    np.testing.assert_array_equal(Y, expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_memory_of_live_views_and_tensors_is_never_reused(small_pool, engine):
    U, A, B = _case()
    X = ul.project(U, A, B, engine=engine)
    view = X[1:, ::2]  # a view keeps the whole block
    saved = view.copy()
    del X
    held = [view]
    torch = None
    try:
        import torch
    except ImportError:
        pass
    if torch is not None:
        Z = ul.project(U, A, B, engine=engine)
        tensor = torch.from_numpy(Z)  # shares Z's memory, as tensors from NumPy do
        del Z
        held.append(tensor.numpy())
    for _ in range(5):
        Y = ul.project(U, 0.5 * A, B, engine=engine)
        assert _pooled(Y)
        for h in held:
            assert not np.shares_memory(Y, h)
        Y[...] = np.nan  # the caller may write into its result
    np.testing.assert_array_equal(view, saved)
    if torch is not None:
        assert not tensor.isnan().any()


@pytest.mark.parametrize("engine", ENGINES)
def test_training_loop_is_bit_identical_with_and_without_recycling(small_pool, engine):
    """``U = step(U)``: the pool alternates two blocks, the iterates do not change."""
    U0, _, _ = _case(n=32, dtype="float64", seed=3)
    rng = np.random.default_rng(4)
    steps = [lowrank_factors(32, 32, 1, "float64", rng, norm=0.1) for _ in range(12)]

    def run():
        U, seen = U0, set()
        for A, B in steps:
            U = ul.transport(U, A, B, engine=engine)
            seen.add(_address(U))
        return U, seen

    old = ul.set_result_pool(0)
    try:
        fresh, _ = run()
    finally:
        ul.set_result_pool(old)
    before = ul.result_pool_info()
    pooled, addresses = run()
    np.testing.assert_array_equal(pooled, fresh)
    assert ul.result_pool_info().reused >= before.reused + len(steps) - 2
    assert len(addresses) <= 3  # the input U0 is the caller's: new results use 2 blocks


@pytest.mark.parametrize("engine", ENGINES)
def test_bound_on_idle_memory(small_pool, engine):
    U, A, B = _case(n=16, dtype="float64")
    nbytes = U.nbytes
    ul.set_result_pool(nbytes)
    # three live results, three blocks
    results = [ul.project(U, A, B, engine=engine) for _ in range(3)]
    assert len({_address(r) for r in results}) == 3
    del results
    info = ul.result_pool_info()
    assert (info.idle_blocks, info.idle_bytes) == (1, nbytes)  # the newest one kept
    ul.set_result_pool(0)
    assert ul.result_pool_info()[:3] == (0, 0, 0)
    assert not _pooled(ul.project(U, A, B, engine=engine))  # off: ordinary NumPy memory
    ul.set_result_pool(nbytes - 1)  # smaller than one result: nothing is pooled
    assert not _pooled(ul.project(U, A, B, engine=engine))
    ul.set_result_pool(nbytes)
    assert _pooled(ul.project(U, A, B, engine=engine))


@pytest.mark.parametrize("engine", ENGINES)
def test_small_results_are_left_to_the_allocator(engine):
    U, A, B = _case(n=16)
    assert U.nbytes < _pool.MIN_BYTES
    assert not _pooled(ul.project(U, A, B, engine=engine))


def test_default_threshold_pools_a_2048_float64_update():
    """The size the pool is for: one 2048×2048 float64 result is 32 MiB = MIN_BYTES."""
    n = 2048
    if ul.result_pool_info().max_idle_bytes < n * n * 8:
        pytest.skip("the result pool is turned off in this environment")
    U = np.eye(n)  # exactly orthogonal, and free to build
    rng = np.random.default_rng(0)
    A, B = lowrank_factors(n, n, 1, "float64", rng, norm=0.1)
    X = ul.project(U, A, B)
    expected = X.copy()
    assert _pooled(X)
    before = ul.result_pool_info()
    del X
    Y = ul.project(U, A, B)
    assert ul.result_pool_info().reused == before.reused + 1
    np.testing.assert_array_equal(Y, expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_inplace_and_out_are_untouched_by_the_pool(small_pool, engine):
    U, A, B = _case(dtype="float64")
    expected = ul.project(U, A, B, engine=engine)
    W = U.copy()
    before = ul.result_pool_info()
    assert ul.project(W, A, B, out=W, engine=engine) is W
    out = np.empty_like(U)
    assert ul.project(U, A, B, out=out, engine=engine) is out
    after = ul.result_pool_info()
    if engine == "blas":
        # its Python loop fills a pooled temporary, copied into out by one call (so that
        # an interrupt never leaves out half written); the temporary is handed back at once
        assert after.idle_bytes >= before.idle_bytes
    else:
        assert after[3:] == before[3:]  # no result memory asked for
    np.testing.assert_array_equal(W, expected)
    np.testing.assert_array_equal(out, expected)
    out_t = np.empty_like(U.T).T  # not C-contiguous: a pooled result, copied in, handed back
    assert ul.project(U, A, B, out=out_t, engine=engine) is out_t
    np.testing.assert_array_equal(out_t, expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_threads_share_the_pool_safely(small_pool, engine):
    U, _, _ = _case(n=20, dtype="complex64", seed=5)
    rng = np.random.default_rng(6)
    steps = [lowrank_factors(20, 20, 1, "complex64", rng, norm=0.2) for _ in range(16)]
    old = ul.set_result_pool(0)
    try:
        expected = [ul.project(U, A, B, engine=engine) for A, B in steps]
    finally:
        ul.set_result_pool(old)
    kept: list[list[np.ndarray]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def work(t):
        try:
            for rep in range(25):
                i = (t + rep) % len(steps)
                X = ul.project(U, *steps[i], engine=engine)
                np.testing.assert_array_equal(X, expected[i])
                if rep % 5 == 0:
                    kept[t].append(X)  # some stay alive, the rest go back at once
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[0]
    alive = [x for per in kept for x in per]
    for i, x in enumerate(alive):
        for y in alive[i + 1:]:
            assert not np.shares_memory(x, y)
    assert ul.result_pool_info().reused > 0


@pytest.mark.parametrize("bad", [-1, -(1 << 40)])
def test_negative_bound_is_a_value_error(bad):
    with pytest.raises(ValueError, match=r"max_idle_bytes must be >= 0 bytes, got -"):
        ul.set_result_pool(bad)


@pytest.mark.parametrize("bad", [1.5, "1024", None, True])
def test_bound_of_wrong_type_is_a_type_error(bad):
    with pytest.raises(TypeError, match=r"max_idle_bytes must be an integer number of bytes"):
        ul.set_result_pool(bad)


@pytest.mark.parametrize(("value", "expected"), [
    ("0", "0"), ("4096", "4096"), ("", str(_pool.DEFAULT_MAX_IDLE_BYTES)),
])
def test_environment_variable_sets_the_bound(value, expected):
    env = {**os.environ, "UNITARY_LOWRANK_RESULT_POOL": value}
    code = "import unitary_lowrank as ul; print(ul.result_pool_info().max_idle_bytes)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == expected


def test_bad_environment_variable_names_itself():
    env = {**os.environ, "UNITARY_LOWRANK_RESULT_POOL": "1GiB"}
    code = "import unitary_lowrank as ul; ul.result_pool_info()"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "UNITARY_LOWRANK_RESULT_POOL must be a number of bytes" in out.stderr
    assert "'1GiB'" in out.stderr


@settings(max_examples=40)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.integers(0, 7)), max_size=40),
       limit_blocks=st.integers(0, 3))
def test_pool_invariants_under_any_sequence_of_results_and_drops(small_pool, ops, limit_blocks):
    """Live arrays never share memory and keep their contents; idle memory stays bounded."""
    shapes = [(16, 16), (8, 32), (24, 24)]  # the first two the same size: one block size
    ul.set_result_pool(limit_blocks * 16 * 16 * 8)
    live: list[tuple[np.ndarray, float]] = []
    for fill, which, drop in ops:
        if fill or not live:
            x = _pool.empty(shapes[which], np.float64)
            value = float(len(live) + 1)
            x[...] = value
            live.append((x, value))
        else:
            del live[drop % len(live)]
        for i, (x, value) in enumerate(live):
            assert np.all(x == value)
            for y, _ in live[i + 1:]:
                assert not np.shares_memory(x, y)
        info = ul.result_pool_info()
        assert info.idle_bytes <= info.max_idle_bytes


# Run in a fresh interpreter: the fork must not depend on what this process imported
# before (JAX warns "os.fork() was called ... JAX is multithreaded" and may deadlock a
# forked child; torch and numba start threads too). The script sets up the parent's pool
# as the small_pool fixture does, forks one worker, and prints what the child saw.
_FORK_SCRIPT = r"""
import json, multiprocessing, warnings
warnings.simplefilter("error")  # as the suite's filterwarnings = ["error"]
# Python 3.12+ warns on fork in a process with threads (BLAS's, when the caller asked for
# several); the child here only runs single-threaded NumPy code
warnings.filterwarnings("ignore", r".*fork\(\) may lead to deadlocks", DeprecationWarning)
import numpy as np
import unitary_lowrank as ul
from unitary_lowrank import _pool
from unitary_lowrank.testing import lowrank_factors

_pool.MIN_BYTES = 1024  # pool every result of 1 KiB or more
ul.set_result_pool(1 << 30)
rng = np.random.default_rng(0)
U = ul.random_unitary(20, dtype="float64", rng=rng)
A, B = lowrank_factors(20, 20, 2, "float64", rng, norm=0.3)

def child():
    X = ul.project(U, A, B, engine="blas")
    del X
    Y = ul.project(U, A, B, engine="blas")
    return Y, tuple(ul.result_pool_info())

if __name__ == "__main__":
    alive = ul.project(U, A, B, engine="blas")  # the parent's pool holds a live block
    expected = alive.copy()
    dropped = ul.project(U, A, B, engine="blas")
    del dropped  # and an idle one
    with multiprocessing.get_context("fork").Pool(1) as workers:
        Y, info = workers.apply(child)
    print(json.dumps({
        "identical": bool(np.array_equal(Y, expected)),  # same call, same machine
        "child_reused": ul.ResultPoolInfo(*info).reused,
        "parent_intact": bool(np.array_equal(alive, expected)),
    }))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_forked_child_uses_its_own_pool(tmp_path):
    script = tmp_path / "fork_pool.py"
    script.write_text(_FORK_SCRIPT, encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    # the child reuses the idle block it inherited, its result is bit-identical to the
    # parent's (pooled memory gives bit-identical results), the parent's block is untouched
    assert seen["identical"] and seen["parent_intact"] and seen["child_reused"] >= 1, seen
