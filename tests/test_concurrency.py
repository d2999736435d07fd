"""Updates in the places training code runs them: forked workers, threads, interrupts.

- A child created by ``fork`` after its parent ran the threaded kernels must run
  updates (GNU OpenMP kills a child that starts a parallel region), and so must
  ``multiprocessing.Pool`` with fork and spawn.
- Eight threads updating at once must neither abort (Numba's workqueue layer)
  nor get wrong results, whatever the threading layer.
- An exception raised in the middle of an update with ``out=U`` (Ctrl-C, or a
  signal handler that raises) leaves U wholly old or wholly new.

The fork and thread cases run in a fresh interpreter each: the threading layer
is chosen by an environment variable at Numba's first parallel launch, and a
killed or hung child must fail the test, not the test run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import unitary_lowrank as ul
from unitary_lowrank import _engines, _parallel
from unitary_lowrank._engines import blocked
from unitary_lowrank.testing import compare_tol, lowrank_factors

needs_numba = pytest.mark.skipif(_engines.load_numba() is None, reason="numba is not installed")
on_linux = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

# n = 1024 is the smallest size at which the kernels may use threads (_tunables.PARALLEL_MIN).
_SETUP = """
import os, sys, threading
import numpy as np
import unitary_lowrank as ul
n = 1024
U = ul.random_unitary(n, dtype="float64", rng=0)
rng = np.random.default_rng(1)
A = 0.1 * rng.standard_normal((n, 1)); B = rng.standard_normal((n, 1))
REF = ul.transport(U, A, B, engine="array_api")
# the engines agree with the portable path entry by entry to a few eps (test_engines.py)
from unitary_lowrank.testing import compare_tol
TOL = compare_tol(1, "float64", 20)

def worst(_=None):
    return float(np.abs(ul.transport(U, A, B) - REF).max())
"""


def _run_script(body: str, *, layer: str, threads: int, timeout: float = 120) -> str:
    env = dict(os.environ, UNITARY_LOWRANK_NUM_THREADS=str(threads))
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer != "default":
        env["NUMBA_THREADING_LAYER"] = layer
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "script.py")  # a file: spawned workers import it
        with open(script, "w", encoding="utf-8") as f:
            f.write(_SETUP + textwrap.dedent(body))
        return _run_file(script, env, layer, threads, timeout)


def _run_file(script: str, env: dict, layer: str, threads: int, timeout: float) -> str:
    try:
        proc = subprocess.run([sys.executable, script], env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the script hung for {timeout} s (layer {layer}, {threads} threads): "
                    f"{exc.stderr!r}")
    assert proc.returncode == 0, (
        f"exit {proc.returncode} (layer {layer}, {threads} threads)\n"
        f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc.stdout


def _tolerance() -> float:
    return compare_tol(1, "float64", 20)  # as in _SETUP


@needs_numba
@on_linux
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layer", ["default", "workqueue"])
def test_updates_work_in_a_forked_child_after_the_parent_used_them(layer, threads):
    out = _run_script("""
        assert worst() <= TOL  # the parent runs the kernels first (threaded when asked)
        pid = os.fork()
        if pid == 0:
            code = 0 if worst() <= TOL else 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
    """, layer=layer, threads=threads)
    assert out.split() == ["child", "0"]


@needs_numba
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_updates_work_in_a_multiprocessing_pool(method):
    if method == "fork" and not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    out = _run_script(f"""
        import multiprocessing as mp
        worst()  # the parent first
        if __name__ == "__main__":
            with mp.get_context({method!r}).Pool(2) as pool:
                print(max(pool.map(worst, range(4))))
    """, layer="default", threads=2, timeout=180)
    assert float(out) <= _tolerance()


@needs_numba
@pytest.mark.parametrize("layer", ["default", "workqueue"])
def test_eight_threads_update_at_once(layer):
    out = _run_script("""
        errors = []
        start = threading.Barrier(8)
        def work():
            start.wait()
            for _ in range(4):
                errors.append(worst())
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(len(errors), max(errors))
    """, layer=layer, threads=2)
    count, err = out.split()
    assert int(count) == 32
    assert float(err) <= _tolerance()


def test_num_threads_setting_is_validated_and_restored():
    previous = ul.set_num_threads(3)
    try:
        assert ul.get_num_threads() == 3
        with pytest.raises(ValueError, match="n must be a positive integer"):
            ul.set_num_threads(0)
        with pytest.raises(TypeError, match="n must be a positive integer"):
            ul.set_num_threads(2.0)
        assert ul.get_num_threads() == 3
    finally:
        assert ul.set_num_threads(previous) == 3
    assert ul.get_num_threads() == previous


def test_threaded_slot_is_one_call_at_a_time_and_serial_in_a_forked_child(monkeypatch):
    monkeypatch.setattr(_parallel, "_threads", 4)
    # the second finds the slot taken: the serial kernel, no waiting
    with _parallel.slot(8) as first, _parallel.slot(8) as second:
        assert (first, second) == (4, 1)
    with _parallel.slot(2) as again:
        assert again == 2
    monkeypatch.setattr(_parallel, "_forked_child", True)
    with _parallel.slot(8) as child:
        assert child == 1


def test_malformed_thread_variable_is_reported_on_first_update():
    code = ("import numpy as np, unitary_lowrank as ul\n"
            "U = np.eye(4); a = np.ones((4, 1))\n"
            "try:\n    ul.project(U, a, a, engine='numba')\n"
            "except ValueError as e:\n    print(e)\n")
    env = dict(os.environ, UNITARY_LOWRANK_NUM_THREADS="two")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    if _engines.load_numba() is None:
        pytest.skip("numba is not installed")
    assert "UNITARY_LOWRANK_NUM_THREADS must be a positive integer, got 'two'" in proc.stdout


# ---------------------------------------------------------------------------------------
# Interrupts: an exception at any point of an in-place update leaves U old or new.


class _Injected(BaseException):
    """Stands for KeyboardInterrupt (a BaseException, which ``except Exception`` lets pass)."""


def _trace(call, on_event) -> None:
    """Run `call` with `on_event(index, frame)` at each trace event of this library's code.

    Only the library's own frames count: a frame of another package that runs meanwhile
    (e.g. a garbage-collection callback of JAX, when an earlier test imported it) neither
    shifts the numbering between runs nor receives the injected exception, which Python
    would report as unraisable there.
    """
    package = os.path.dirname(ul.__file__)
    seen = 0

    def tracer(frame, event, arg):
        nonlocal seen
        if frame.f_code.co_filename.startswith(package) and event in ("call", "line", "return"):
            seen += 1
            on_event(seen, frame)
        return tracer

    sys.settrace(tracer)
    try:
        call()
    finally:
        sys.settrace(None)


def _library_events(call, limit: int) -> list[int]:
    """Indices of the trace events of `call` in this library's own code (at most `limit`).

    Python runs signal handlers (and so raises KeyboardInterrupt) only between
    bytecodes; the line, call and return events of the library's frames visit
    every such point of its code at the granularity of a line.
    """
    events: list[int] = []
    _trace(call, lambda i, frame: events.append(i))
    step = max(1, len(events) // limit)
    return events[::step]


def _raise_at(event_number: int):
    def on_event(i, frame):
        if i == event_number:
            raise _Injected
    return on_event


ENGINES = ["blas", "array_api", pytest.param("numba", marks=needs_numba)]


@pytest.mark.parametrize("method", ["polar", "exp"])
@pytest.mark.parametrize("engine", ENGINES)
def test_in_place_update_is_all_or_nothing_under_interrupts(engine, method, monkeypatch):
    # small blocks, so that the blocked engine writes U in many Python-loop iterations
    monkeypatch.setattr(blocked, "_BLOCK_BYTES", 4 * 48 * 8)
    rng = np.random.default_rng(5)
    U0 = ul.random_unitary(48, dtype="float64", rng=rng)
    A, B = lowrank_factors(48, 48, 3, "float64", rng, norm=0.3)
    new = ul.retract(U0, A, B, method=method, engine=engine)

    def update(W):
        return lambda: ul.retract(W, A, B, method=method, engine=engine, out=W)

    points = _library_events(update(U0.copy()), limit=150)
    assert len(points) >= 50
    outcomes = {"old": 0, "new": 0}
    for event in points:
        W = U0.copy()
        try:
            _trace(update(W), _raise_at(event))
        except _Injected:
            pass
        if np.array_equal(W, U0):
            outcomes["old"] += 1
        elif np.array_equal(W, new):
            outcomes["new"] += 1
        else:
            err = float(ul.unitarity_error(W))
            pytest.fail(f"interrupted at trace event {event}, U is neither old nor new "
                        f"(unitarity error {err:.2e})")
    assert outcomes["old"] >= len(points) // 2  # the interrupts did land inside the update


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_in_place_update_survives_a_raising_signal_handler():
    """A real timer signal whose handler raises, at many delays into a blocked update."""
    n = 512  # square, k > 2: "auto" takes the blocked BLAS engine
    rng = np.random.default_rng(6)
    U0 = ul.random_unitary(n, dtype="float64", rng=rng)
    A, B = lowrank_factors(n, n, 4, "float64", rng, norm=0.3)
    new = ul.project(U0, A, B)
    W = U0.copy()
    ul.project(W, A, B, out=W)  # warm-up; also: in place equals the fresh result
    assert np.array_equal(W, new)

    def handler(signum, frame):
        raise _Injected

    old_handler = signal.signal(signal.SIGALRM, handler)
    try:
        for trial in range(40):
            W = U0.copy()
            try:
                signal.setitimer(signal.ITIMER_REAL, 1e-5 * (1 + trial))
                ul.project(W, A, B, out=W)
                signal.setitimer(signal.ITIMER_REAL, 0)
            except _Injected:
                pass
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            assert np.array_equal(W, U0) or np.array_equal(W, new), (
                f"trial {trial}: U half updated, unitarity error "
                f"{float(ul.unitarity_error(W)):.2e}")
    finally:
        signal.signal(signal.SIGALRM, old_handler)


@needs_numba
def test_single_threaded_updates_do_not_start_numbas_thread_pool():
    """Numba's idle pool threads slowed torch's OpenMP loops in the same process ~90x.

    With the default of one thread, the kernels never ask Numba for its thread
    count, which is what starts the pool.
    """
    out = _run_script("""
        from numba.np.ufunc import parallel
        worst()  # the Numba engine (k = 1, n = 1024) at the default setting
        print(parallel._is_initialized)
    """, layer="default", threads=1)
    assert out.split() == ["False"]
