"""U as a ``dask.array`` chunked by rows (and over a batch): lazy results, chunked graphs.

Every routine of a training loop (``project``, ``transport``, ``retract``, ``step``,
``lowrank``, ``range_finder``, ``unitarity_error(method="probe")``, ``reunitarize``)
takes a Dask U chunked by rows, or a batch of them chunked by rows and/or over the
batch, and returns a Dask array without computing anything. Each result is checked
three ways:

- its graph: no layer of the task graph (as built, and after ``dask.optimize``)
  declares a chunk of n·n entries or more, and no task of the computation (run once
  on the synchronous scheduler, watched by a callback) returns such an array; for U
  chunked over the batch only (whole matrices per chunk), nothing larger than U's
  own chunks. So U is never gathered, and a step communicates O(nk) numbers.
  :func:`test_graph_check_can_fail` shows the check catching a gathered U;
- its values: computed on a two-worker ``dask.distributed.LocalCluster``, equal to
  the NumPy result of the same call to the library's comparison tolerance
  (``compare_tol``), and unitary to ``unitarity_bound``;
- its chunks: an updated U has U's chunks.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402
from dask.callbacks import Callback  # noqa: E402

import unitary_lowrank as ul  # noqa: E402
from unitary_lowrank import _array_api  # noqa: E402
from unitary_lowrank._agnostic import _drift  # noqa: E402
from unitary_lowrank.testing import (  # noqa: E402
    assert_close,
    compare_tol,
    eps_of,
    lowrank_factors,
    rounded_unitarity_bound,
    unitarity_bound,
)

N = 32  #: matrix size
ROWS = 16  #: rows per chunk: two chunks per matrix
F = 2  #: batch size
K = 2  #: rank of the steps
#: U's layout: one matrix by rows; a batch by rows; a batch with whole matrices per chunk.
LAYOUTS = ("rows", "batch-rows", "batch")
#: (dtype, layout) pairs: every dtype, and each layout in single and double precision,
#: real and complex (the whole product would double the time of the file).
CASES = [("float32", "rows"), ("complex128", "rows"), ("float64", "batch-rows"),
         ("complex64", "batch-rows"), ("complex128", "batch"), ("float32", "batch")]
EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "dask_large.py"


@pytest.fixture(scope="module")
def client():
    """A two-worker cluster of this process (threads), closed after the module.

    ``dashboard_address=":0"``: the scheduler's HTTP server takes a free port
    (with None it still binds 8787, and fails where another cluster holds it).
    """
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=":0")
    client = distributed.Client(cluster, set_as_default=False)  # no global scheduler
    yield client
    client.close()
    cluster.close()


def _chunks(layout: str, cols: int = N) -> tuple[int, ...]:
    return {"rows": (ROWS, cols), "batch-rows": (1, ROWS, cols), "batch": (1, N, cols)}[layout]


def _batch(layout: str) -> tuple[int, ...]:
    return () if layout == "rows" else (F,)


def _unitary(layout: str, dtype: str, rng) -> np.ndarray:
    return ul.random_unitary(N, dtype=dtype, batch_shape=_batch(layout), rng=rng)


def _factors(layout: str, dtype: str, rng, k: int = K, norm: float = 0.5):
    pairs = [lowrank_factors(N, N, k, dtype, rng, norm=norm) for _ in range(F)]
    if layout == "rows":
        return pairs[0]
    return np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])


def _dask(x: np.ndarray, layout: str):
    """`x` (..., N, c) chunked like U of `layout` along its rows and batch."""
    return da.from_array(x, chunks=_chunks(layout, x.shape[-1]))


# --- the graph check --------------------------------------------------------------------


def _largest(chunks) -> int:
    return math.prod(max(c, default=0) for c in chunks)


def _entries(result) -> int:
    """The number of entries of a task's result (arrays inside tuples and lists too)."""
    if isinstance(result, tuple | list):
        return max((_entries(r) for r in result), default=0)
    return int(getattr(result, "size", 0) or 0)


class _LargestTask(Callback):
    """Records the largest array any task returns."""

    def __init__(self):
        super().__init__()
        self.entries, self.key = 0, None

    def _posttask(self, key, result, dsk, state, id):
        size = _entries(result)
        if size > self.entries:
            self.entries, self.key = size, key


def assert_chunked(results, *inputs, whole: int = N * N) -> None:
    """Assert no chunk of the graphs of `results`, and no task result, holds a whole U.

    That is, fewer than `whole` entries (N·N: one N×N matrix); unless the chunks of
    `inputs` (U, or a dense G) already hold whole matrices (U chunked over the batch
    only), and then no more than the largest of them. Checked on the declared chunks
    of every ``dask.array`` layer of the graph as built and as optimised, and on the
    real arrays returned by every task of one run on the synchronous scheduler (a
    persist: the chunks are not concatenated into the final array).
    """
    results = results if isinstance(results, tuple) else (results,)
    limit = max(whole - 1, *(_largest(x.chunks) for x in inputs))
    for graph_of in (results, dask.optimize(*results)):
        for x in graph_of:
            for name, layer in x.__dask_graph__().layers.items():
                chunks = (layer.collection_annotations or {}).get("chunks")
                if chunks is not None:
                    assert _largest(chunks) <= limit, (
                        f"layer {name} has chunks of {_largest(chunks)} entries > {limit}"
                    )
    watch = _LargestTask()
    with watch, dask.config.set(scheduler="sync"):
        dask.persist(*results)
    assert watch.entries <= limit, (
        f"task {watch.key} returned {watch.entries} entries > the inputs' chunks ({limit})"
    )


def test_graph_check_can_fail():
    U = _dask(_unitary("rows", "float64", 0), "rows")
    assert_chunked(U + 1.0, U)  # the elementwise update of U keeps its chunks
    with pytest.raises(AssertionError, match="entries"):
        assert_chunked(U.rechunk(U.shape) + 1.0, U)  # U gathered in one chunk
    # the Gram matrix of the exact unitarity error is n×n: the guard refuses it (below),
    # and the check catches the body that forms it
    with pytest.raises(AssertionError, match="entries"):
        assert_chunked(_drift.exact_error(U, _array_api.namespace_of(U)), U)


def _computed(client, *xs):
    """The values of Dask arrays, computed on the cluster."""
    values = client.compute(list(xs), sync=True)
    return values if len(values) > 1 else values[0]


# --- updates ------------------------------------------------------------------------------


CALLS = {
    "project": lambda U, A, B: ul.project(U, A, B),
    "transport": lambda U, A, B: ul.transport(U, A, B),
    "cayley": lambda U, A, B: ul.retract(U, A, B, "cayley"),
}


@pytest.mark.parametrize(("dtype", "layout"), CASES)
@pytest.mark.parametrize("call", CALLS)
def test_update(client, call, dtype, layout):
    rng = np.random.default_rng(1)
    U = _unitary(layout, dtype, rng)
    A, B = _factors(layout, dtype, rng)
    Ud = _dask(U, layout)
    X = CALLS[call](Ud, _dask(A, layout), _dask(B, layout))
    assert isinstance(X, da.Array) and X.dtype == U.dtype
    assert X.chunks == Ud.chunks
    assert_chunked(X, Ud)
    value = _computed(client, X)
    assert_close(value, CALLS[call](U, A, B), compare_tol(N, dtype), what=call)
    assert float(np.max(ul.unitarity_error(value))) <= unitarity_bound(N, dtype)


def test_update_with_host_factors(client):
    """NumPy-sized factors given as one chunk each are cut to U's chunks, not U to theirs."""
    rng = np.random.default_rng(2)
    U = _unitary("rows", "complex128", rng)
    A, B = _factors("rows", "complex128", rng)
    Ud = _dask(U, "rows")
    X = ul.project(Ud, da.from_array(A), da.from_array(B))
    assert X.chunks == Ud.chunks
    assert_chunked(X, Ud)
    assert_close(_computed(client, X), ul.project(U, A, B), compare_tol(N, "complex128"))


@pytest.mark.parametrize("dtype", ["float64", "complex64"])
def test_project_stiefel(client, dtype):
    """U with fewer columns than rows (the Stiefel manifold), chunked by rows."""
    rng = np.random.default_rng(14)
    p = N // 2
    U = ul.random_unitary(N, p, dtype=dtype, rng=rng)
    A, B = lowrank_factors(N, p, K, dtype, rng, norm=0.5)
    Ud = da.from_array(U, chunks=(ROWS, p))
    X = ul.project(Ud, da.from_array(A, chunks=(ROWS, K)), da.from_array(B))
    assert X.chunks == Ud.chunks
    assert_chunked(X, Ud, whole=N * p)
    value = _computed(client, X)
    assert_close(value, ul.project(U, A, B), compare_tol(N, dtype), what="project")
    assert float(ul.unitarity_error(value)) <= unitarity_bound(N, dtype)


@pytest.mark.parametrize("case", ["rank 4", "batched factors", "out"])
def test_update_other_shapes(client, case):
    """Rank 4 (past the Numba engine's range), factors with a batch for one U, ``out=``."""
    rng = np.random.default_rng(16)
    U = _unitary("rows", "float64", rng)
    if case == "batched factors":
        A, B = _factors("batch-rows", "float64", rng)
        Ad, Bd = _dask(A, "batch-rows"), da.from_array(B)
    else:
        A, B = _factors("rows", "float64", rng, k=4)
        Ad, Bd = da.from_array(A), da.from_array(B)
    Ud = _dask(U, "rows")
    out = da.zeros_like(Ud) if case == "out" else None
    X = ul.retract(Ud, Ad, Bd, "cayley", out=out)
    if out is not None:
        assert X is out
    assert X.chunks[-2:] == Ud.chunks
    # a batch of F results from one U: a chunk may hold the same rows of all F of them
    assert_chunked(X, Ud, whole=N * N * (F if case == "batched factors" else 1))
    assert_close(_computed(client, X), ul.retract(U, A, B, "cayley"), compare_tol(N, "float64"))


def test_engines_get_numpy_chunks_only(monkeypatch):
    """The Numba engine may run on the chunks of a Dask U: NumPy arrays, never Dask ones."""
    engine = pytest.importorskip("unitary_lowrank._engines.numba")
    seen = []

    def watch(name):
        original = getattr(engine, name)

        def wrapper(*args, **kwargs):
            seen.append((name, {type(x).__name__ for x in (*args, *kwargs.values())
                                if hasattr(x, "shape")}))
            return original(*args, **kwargs)

        monkeypatch.setattr(engine, name, wrapper)

    for name in ("adjoint_products", "basis_from_products", "write_update"):
        watch(name)
    rng = np.random.default_rng(15)
    U = _unitary("rows", "float64", rng)
    A, B = _factors("rows", "float64", rng, k=1)
    X = ul.transport(_dask(U, "rows"), _dask(A, "rows"), _dask(B, "rows"))
    with dask.config.set(scheduler="sync"):
        value = X.compute()
    assert_close(value, ul.transport(U, A, B), compare_tol(N, "float64"))
    assert seen and all(kinds == {"ndarray"} for _, kinds in seen), seen


@pytest.mark.parametrize("engine", ["blas", "numba"])
def test_numpy_engines_refuse_dask(engine):
    if engine == "numba":
        pytest.importorskip("numba")
    U = _dask(_unitary("rows", "float64", 0), "rows")
    A = da.zeros((N, 1), dtype="float64")
    with pytest.raises(ValueError, match="needs NumPy arrays"):
        ul.project(U, A, A, engine=engine)


# --- training step, sketches ---------------------------------------------------------------


def _gradient(layout: str, dtype: str, rng, r: int):
    """Factors X (..., N, r), Y of a gradient with singular values 1, 1/2, 1/4, ...

    Well separated, so a rank-K sketch is well conditioned and rounding moves it
    by rounding only.
    """
    X, Y = _factors(layout, dtype, rng, k=r, norm=1.0)
    norms = np.linalg.norm(X, axis=-2, keepdims=True)
    X = (X / norms * 0.5 ** np.arange(r)).astype(dtype)
    return X, Y


@pytest.mark.parametrize(("dtype", "layout"), CASES)
@pytest.mark.parametrize("gradient", ["dense", "factors", "wide factors"])
def test_step(client, gradient, dtype, layout):
    rng = np.random.default_rng(3)
    U = _unitary(layout, dtype, rng)
    # "factors": r <= rank + oversample, the exact factored SVD; "wide": the sketch
    X, Y = _gradient(layout, dtype, rng, 16 if gradient == "wide factors" else 4)
    Ud = _dask(U, layout)
    if gradient == "dense":
        G = X @ np.conj(np.swapaxes(Y, -1, -2))
        Gd = _dask(G, layout)
        given, dense = Gd, G
    else:
        Gd = None
        given, dense = (_dask(X, layout), _dask(Y, layout)), (X, Y)
    method = "polar" if dtype.startswith("complex") else "exp"
    new = ul.step(Ud, given, 0.1, rank=K, method=method, rng=0)
    assert isinstance(new, da.Array) and new.chunks == Ud.chunks
    assert_chunked(new, Ud, *(() if Gd is None else (Gd,)))
    value = _computed(client, new)
    assert_close(value, ul.step(U, dense, 0.1, rank=K, method=method, rng=0),
                 compare_tol(N, dtype), what="step")
    assert float(np.max(ul.unitarity_error(value))) <= unitarity_bound(N, dtype)


def _product(A, B):
    return A @ np.conj(np.swapaxes(B, -1, -2))


@pytest.mark.parametrize("dtype", ["float32", "complex128"])
@pytest.mark.parametrize("sampler", ["randomized", "lsi", "column", "factors"])
def test_lowrank(client, sampler, dtype):
    layout = "batch-rows"
    rng = np.random.default_rng(4)
    X, Y = _gradient(layout, dtype, rng, 16)
    if sampler == "factors":
        given, dense, kw, Gd = (_dask(X, layout), _dask(Y, layout)), (X, Y), {}, None
    else:
        dense = _product(X, Y)
        Gd = _dask(dense, layout)
        given, kw = Gd, {"sampler": sampler}
    info = ul.lowrank(given, K, rng=0, return_info=True, **kw)
    assert all(isinstance(x, da.Array) for x in (info.A, info.B, info.error))
    assert_chunked((info.A, info.B, info.error), *([Gd] if Gd is not None else given))
    A, B, err = _computed(client, info.A, info.B, info.error)
    ref = ul.lowrank(dense, K, rng=0, return_info=True, **kw)
    assert_close(_product(A, B), _product(ref.A, ref.B), compare_tol(N, dtype))
    assert_close(err, ref.error, compare_tol(N, dtype))


@pytest.mark.parametrize("dtype", ["float32", "complex128"])
@pytest.mark.parametrize("given", ["dense", "factors"])
def test_range_finder(client, given, dtype):
    layout = "rows"
    X, Y = _gradient(layout, dtype, np.random.default_rng(5), 16)
    G = _product(X, Y)
    arg = _dask(G, layout) if given == "dense" else (_dask(X, layout), _dask(Y, layout))
    Q = ul.range_finder(arg, 4, rng=0)
    assert isinstance(Q, da.Array)
    assert_chunked(Q, *(arg if given == "factors" else (arg,)))
    Qv = _computed(client, Q)
    Qn = ul.range_finder(G if given == "dense" else (X, Y), 4, rng=0)
    assert_close(_product(Qv, Qv), _product(Qn, Qn), compare_tol(N, dtype), what="Q Qᴴ")


# --- unitarity, repair --------------------------------------------------------------------


def _drifted(layout: str, dtype: str, rng) -> np.ndarray:
    """A unitary U moved off the group: ‖UᴴU − I‖₂ about 2·sqrt(eps), far above rounding.

    Two Newton-Schulz steps (what a lazy U gets) take it to rounding level.
    """
    U = _unitary(layout, dtype, rng)
    noise = rng.standard_normal(U.shape) * 0.5 * eps_of(dtype) ** 0.5 / N ** 0.5
    return (U + noise).astype(dtype)


@pytest.mark.parametrize(("dtype", "layout"), CASES)
def test_probe(client, dtype, layout):
    U = _drifted(layout, dtype, np.random.default_rng(6))
    Ud = _dask(U, layout)
    est = ul.unitarity_error(Ud, method="probe", rng=7)
    assert isinstance(est, da.Array)
    assert_chunked(est, Ud)
    value = _computed(client, est)
    ref = ul.unitarity_error(U, method="probe", rng=7)
    # the same double-precision Krylov estimate, summed in another order, then cast
    tol = unitarity_bound(N, "float64") + eps_of(dtype) * float(np.max(ref))
    assert_close(value, ref, tol, what="probe estimate")
    assert value.dtype == ref.dtype


@pytest.mark.parametrize("layout", LAYOUTS)
def test_exact_error(client, layout):
    U = _drifted(layout, "float64", np.random.default_rng(8))
    Ud = _dask(U, layout)
    if layout != "batch":
        with pytest.raises(ValueError, match="method='probe'"):
            ul.unitarity_error(Ud)
        return
    err = ul.unitarity_error(Ud)  # whole matrices in each chunk: computed chunk by chunk
    assert_chunked(err, Ud)
    assert_close(_computed(client, err), ul.unitarity_error(U), unitarity_bound(N, "float64"))


@pytest.mark.parametrize(("dtype", "layout"), CASES)
def test_reunitarize(client, dtype, layout):
    U = _drifted(layout, dtype, np.random.default_rng(9))
    Ud = _dask(U, layout)
    V = ul.reunitarize(Ud)  # lazy: two Newton-Schulz steps, no value read
    assert isinstance(V, da.Array) and V.chunks == Ud.chunks
    assert_chunked(V, Ud)
    value = _computed(client, V)
    assert_close(value, ul.reunitarize(U), compare_tol(N, dtype), what="reunitarize")
    assert float(np.max(ul.unitarity_error(value))) <= rounded_unitarity_bound(N, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reunitarize_polar(client, layout):
    U = _drifted(layout, "complex64", np.random.default_rng(10))
    Ud = _dask(U, layout)
    if layout != "batch":
        with pytest.raises(ValueError, match="method='newton-schulz' or 'auto'"):
            ul.reunitarize(Ud, method="polar")
        return
    V = ul.reunitarize(Ud, method="polar")
    assert_chunked(V, Ud)
    assert_close(_computed(client, V), ul.reunitarize(U, method="polar"),
                 compare_tol(N, "complex64"))


# --- laziness -----------------------------------------------------------------------------


class _CountTasks(Callback):
    def __init__(self):
        super().__init__()
        self.count = 0

    def _pretask(self, key, dsk, state):
        self.count += 1


def test_nothing_is_computed_inside_the_library():
    rng = np.random.default_rng(11)
    U = _dask(_drifted("batch-rows", "float64", rng), "batch-rows")
    A, B = (_dask(x, "batch-rows") for x in _factors("batch-rows", "float64", rng))
    X, Y = (_dask(x, "batch-rows") for x in _gradient("batch-rows", "float64", rng, 16))
    G = X @ da.swapaxes(Y, -1, -2)
    U1 = _dask(_drifted("rows", "float64", rng), "rows")  # one matrix: the engine's graph
    A1, B1 = (_dask(x, "rows") for x in _factors("rows", "float64", rng, k=1))
    count = _CountTasks()
    with count, dask.config.set(scheduler="sync"):
        ul.transport(U1, A1, B1)
        ul.project(U, A, B)
        ul.transport(U, A, B, check_finite=True)  # the value checks are skipped, not run
        ul.step(U, (X, Y), 0.1, rank=K, rng=0)
        ul.step(U, G, 0.1, rank=K, method="cayley", rng=0, return_info=True)
        ul.lowrank(G, K, sampler="column", rng=0)
        ul.range_finder((X, Y), 3, rng=0)
        ul.unitarity_error(U, method="probe", rng=0)
        ul.reunitarize(U, method="newton-schulz")
    assert count.count == 0


def test_value_checks_are_skipped_on_lazy_input(client):
    """NaN in a factor: NumPy raises at the call; Dask returns, and the computation fails."""
    rng = np.random.default_rng(12)
    U = _unitary("rows", "float64", rng)
    A, B = _factors("rows", "float64", rng)
    A[3, 0] = np.nan
    with pytest.raises(ValueError, match="A contains NaN"):
        ul.project(U, A, B)
    X = ul.project(_dask(U, "rows"), _dask(A, "rows"), _dask(B, "rows"))  # no error yet
    with pytest.raises(np.linalg.LinAlgError):  # the small SVD of the core, on a worker
        _computed(client, X)


def test_tol_reads_the_errors(client):
    """``tol=`` chooses a rank from values: the one place a sketch computes (a few scalars)."""
    X, Y = _gradient("rows", "float64", np.random.default_rng(13), 16)
    G = _product(X, Y)
    Gd = _dask(G, "rows")
    info = ul.lowrank(Gd, tol=0.1, rng=0, return_info=True)
    ref = ul.lowrank(G, tol=0.1, rng=0, return_info=True)
    assert info.rank == ref.rank
    assert_close(_product(*_computed(client, info.A, info.B)), _product(ref.A, ref.B),
                 compare_tol(N, "float64"))


# --- the example --------------------------------------------------------------------------


def test_example_runs_small(tmp_path):
    """``docs/examples/dask_large.py`` at a toy size: it trains, and U stays unitary."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(EXAMPLE.parents[2]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--n", "256", "--rows", "64", "--steps", "3",
         "--workers", "2", "--memory-limit", "400MiB", "--dtype", "float64"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    final = [line for line in lines if line.startswith("unitarity error")]
    assert final, proc.stdout
    err = float(final[-1].split()[-1])
    assert err <= unitarity_bound(256, "float64") * 3  # three steps' rounding
    losses = [float(line.split()[-1]) for line in lines if line.startswith("step")]
    assert len(losses) == 3 and losses[-1] < losses[0]
