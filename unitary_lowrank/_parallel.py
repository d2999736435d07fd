"""How many threads the Numba kernels may use, safely under fork, threads and shared cores.

The kernels of ``engine="numba"`` have threaded twins (``parallel=True``). Three
facts decide when they run:

- **Shared cores.** A threaded kernel waits at its end for its slowest thread;
  when another busy process holds a core, that thread waits for a time slice of
  the scheduler (``benchmarks/bench_contention.py`` measures it: on a 2-core
  machine beside one busy process, two threads took up to 1.44× the serial
  time). Memory-bound passes over U gain at most the memory bandwidth a second
  core adds, so the default is **one thread**;
  :func:`set_num_threads` (or ``UNITARY_LOWRANK_NUM_THREADS``) opts in.
- **Fork.** GNU OpenMP, the layer Numba picks when TBB is absent, kills a forked
  child that starts a parallel region after its parent did. A child created by
  :func:`os.fork` (``multiprocessing``'s default on Linux, PyTorch DataLoader
  workers) therefore runs the serial kernels only.
- **Threads.** Numba's ``workqueue`` layer aborts the process when two threads
  enter parallel regions at once, and OpenMP oversubscribes the cores. One
  threaded kernel runs at a time in the process; a call that finds the slot
  taken runs its serial kernel instead of waiting.

Whatever the layer, a threaded kernel therefore never runs concurrently with
another one of ours, never in a forked child, and never unless asked for.
"""

from __future__ import annotations

import contextlib
import operator
import os
import threading
from collections.abc import Iterator

from ._tunables import NUM_THREADS_VAR as ENV_VAR

__all__ = ["ENV_VAR", "get_num_threads", "set_num_threads", "slot"]

# ENV_VAR (_tunables.NUM_THREADS_VAR): the environment variable read on first use, the
# initial get_num_threads().


def _check_count(n: object, what: str) -> int:
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(f"{what} must be a positive integer, got {type(n).__name__} {n!r}")
    if operator.index(n) < 1:
        raise ValueError(f"{what} must be a positive integer, got {n!r}")
    return operator.index(n)


def _from_environment() -> int:
    text = os.environ.get(ENV_VAR, "").strip()
    if not text:
        return 1
    try:
        return _check_count(int(text), ENV_VAR)
    except ValueError:
        raise ValueError(
            f"the environment variable {ENV_VAR} must be a positive integer, got {text!r}"
        ) from None


_threads: int | None = None  # read from the environment on first use
_slot = threading.Lock()
_forked_child = False


def _after_fork_in_child() -> None:
    global _forked_child, _slot
    _forked_child = True
    _slot = threading.Lock()  # the parent's may have been held by a thread that is gone


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def set_num_threads(n: int) -> int:
    """Set how many threads the Numba kernels of the NumPy engine may use.

    The default is 1 (or the environment variable ``UNITARY_LOWRANK_NUM_THREADS``): the
    updates are passes over memory that a second thread speeds up by at most
    the bandwidth a second core adds, while a threaded kernel on cores shared
    with other busy processes can run ten times slower than a serial one. Set
    it above 1 on a machine whose cores are yours. Threads are used only for
    matrices of at least 2²⁰ entries (n = 1024), never in a child created by
    :func:`os.fork` (GNU OpenMP is not fork-safe), and by one call at a time:
    a call made while another thread's threaded kernel runs takes the serial
    kernel instead of waiting. Numba's own per-thread bound
    (:func:`numba.set_num_threads`, which holds for the calling thread) caps
    the count further.

    Parameters
    ----------
    n : int
        Number of threads, at least 1.

    Returns
    -------
    int
        The previous setting, to restore it.

    Raises
    ------
    TypeError
        If `n` is not an integer.
    ValueError
        If `n` is less than 1.

    Examples
    --------
    >>> import unitary_lowrank as ul
    >>> previous = ul.set_num_threads(2)
    >>> ul.get_num_threads()
    2
    >>> ul.set_num_threads(previous)
    2
    """
    global _threads
    previous = get_num_threads()
    _threads = _check_count(n, "n")
    return previous


def get_num_threads() -> int:
    """The number of threads the Numba kernels may use (see :func:`set_num_threads`).

    Parameters
    ----------
    None

    Returns
    -------
    int
        The setting, 1 by default.

    Raises
    ------
    ValueError
        If the setting comes from a malformed ``UNITARY_LOWRANK_NUM_THREADS``.

    Examples
    --------
    >>> import unitary_lowrank as ul
    >>> ul.get_num_threads() >= 1
    True
    """
    global _threads
    if _threads is None:
        _threads = _from_environment()
    return _threads


@contextlib.contextmanager
def slot(wanted: int) -> Iterator[int]:
    """Threads granted to one kernel call: `wanted` capped by the setting, or 1.

    Grants more than one thread only outside a forked child and while no
    other call holds the threaded slot; the slot is held until the block ends.
    """
    count = min(wanted, get_num_threads())
    if count <= 1 or _forked_child:
        yield 1
        return
    lock = _slot
    if not lock.acquire(blocking=False):
        yield 1
        return
    try:
        yield count
    finally:
        lock.release()
