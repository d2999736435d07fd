"""Recycled memory for the large results of the NumPy engines.

A rank-k update of an n×n matrix reads U twice and writes one new n×n result;
at n = 2048 (float64, 32 MiB) and above, getting that result's memory can cost
as much as computing it. glibc, the usual allocator on Linux, hands blocks of
32 MiB and more straight back to the kernel when they are freed (its ``mmap``
threshold stops growing there), so the next result is mapped again and zeroed
page by page on first touch, and the freed one is unmapped; smaller blocks it
recycles itself. A training loop ``U = project(U, A, B)`` frees one such
matrix and asks for another of the same size at every step.

This module keeps the memory of such results when the caller lets go of them
and hands it to the next result of the same size. A result is a NumPy array
over a block of memory that a small ``ctypes`` object holds; every view of
the result keeps that object alive, and when the last one is gone a
``weakref.finalize`` callback puts the block back in the pool. A block is
therefore never handed out while any array still refers to it.

Only blocks of at least :data:`MIN_BYTES` are pooled, and at most
``max_idle_bytes`` of unused blocks are kept (oldest dropped first); the
default is :data:`DEFAULT_MAX_IDLE_BYTES`, or the number of bytes in the
``UNITARY_LOWRANK_RESULT_POOL`` environment variable (``0`` turns recycling
off), read by the first update of the process, which reports a malformed
value with a `ValueError`. :func:`set_result_pool` changes it at run time and
:func:`result_pool_info` reports what the pool holds.
"""

from __future__ import annotations

import ctypes
import math
import operator
import os
import threading
import weakref
from typing import NamedTuple

import numpy as np

from ._tunables import POOL_MAX_IDLE_BYTES as DEFAULT_MAX_IDLE_BYTES
from ._tunables import POOL_MIN_BYTES as MIN_BYTES  # a name of this module: tests shrink it
from ._tunables import RESULT_POOL_VAR as _ENV

__all__ = [
    "DEFAULT_MAX_IDLE_BYTES",
    "MIN_BYTES",
    "ResultPoolInfo",
    "check_environment",
    "empty",
    "result_pool_info",
    "set_result_pool",
]

# MIN_BYTES (the smallest result whose memory is recycled), DEFAULT_MAX_IDLE_BYTES (the
# default bound on the memory kept) and _ENV (the environment variable that sets that bound)
# are defined in _tunables.py, with how they were chosen.


class ResultPoolInfo(NamedTuple):
    """State of the result pool (:func:`result_pool_info`)."""

    #: Bound on the bytes of unused blocks kept (0: recycling is off).
    max_idle_bytes: int
    #: Bytes of the unused blocks now kept for reuse.
    idle_bytes: int
    #: Number of unused blocks now kept.
    idle_blocks: int
    #: Results served from a recycled block since the process started.
    reused: int
    #: Results of at least ``MIN_BYTES`` that needed new memory since then.
    allocated: int


def _check_limit(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer number of bytes, got {value!r}")
    value = operator.index(value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0 bytes, got {value}")
    return value


def _limit_from_env() -> int:
    raw = os.environ.get(_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_IDLE_BYTES
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(
            f"environment variable {_ENV} must be a number of bytes (0 turns the result "
            f"pool off), got {raw!r}"
        ) from None
    return _check_limit(value, _ENV)


class _Pool:
    def __init__(self) -> None:
        # Re-entrant: a finalizer may run inside a locked section when the garbage
        # collector frees a result there, and it takes the lock again.
        self._lock = threading.RLock()
        self._idle: list[np.ndarray] = []  # unused blocks, oldest first
        self._idle_bytes = 0
        self._limit: int | None = None  # read from the environment on first use
        self._reused = 0
        self._allocated = 0

    @property
    def limit(self) -> int:
        if self._limit is None:
            with self._lock:
                if self._limit is None:
                    self._limit = _limit_from_env()
        return self._limit

    def set_limit(self, limit: int) -> int:
        with self._lock:
            old = self.limit
            self._limit = limit
            self._trim()
        return old

    def _trim(self) -> None:
        """Drop the oldest unused blocks until at most ``limit`` bytes are kept."""
        while self._idle and self._idle_bytes > self.limit:
            self._idle_bytes -= self._idle.pop(0).nbytes

    def _take(self, nbytes: int) -> np.ndarray | None:
        with self._lock:
            for i in range(len(self._idle) - 1, -1, -1):  # newest first: warmest in cache
                if self._idle[i].nbytes == nbytes:
                    block = self._idle.pop(i)
                    self._idle_bytes -= nbytes
                    self._reused += 1
                    return block
            self._allocated += 1
            return None

    def _give_back(self, block: np.ndarray) -> None:
        with self._lock:
            if block.nbytes > self.limit:
                return  # never kept: freed with the last reference
            self._idle.append(block)
            self._idle_bytes += block.nbytes
            self._trim()

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < MIN_BYTES or nbytes > self.limit or dtype.hasobject:
            return np.empty(shape, dtype=dtype)
        block = self._take(nbytes)
        if block is None:
            block = np.empty(nbytes, dtype=np.uint8)
        # (numpy's and ctypes' stubs know neither ndarray nor a ctypes array as a buffer)
        holder = (ctypes.c_char * nbytes).from_buffer(block)  # type: ignore[arg-type]
        # Runs when the last array over `holder` is gone, in whichever thread drops it.
        weakref.finalize(holder, self._give_back, block).atexit = False
        return np.frombuffer(holder, dtype=dtype).reshape(shape)  # type: ignore[call-overload]

    def info(self) -> ResultPoolInfo:
        with self._lock:
            return ResultPoolInfo(self.limit, self._idle_bytes, len(self._idle),
                                  self._reused, self._allocated)


_POOL = _Pool()


def _after_fork_in_child() -> None:
    # A fork while another thread held the lock would leave it held forever in the
    # child; the blocks themselves are the child's own copies and stay valid.
    _POOL._lock = threading.RLock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """Uninitialised C-contiguous array like ``np.empty``, on recycled memory when large."""
    return _POOL.empty(tuple(shape), dtype)


def check_environment() -> None:
    """Read ``UNITARY_LOWRANK_RESULT_POOL`` now: a `ValueError` naming it if malformed.

    Every update calls this (through its validation), so a bad setting is
    reported by the first update of the process, not only by the first result
    large enough to be pooled. After the first successful read it is one
    attribute lookup.
    """
    if _POOL._limit is None:
        _POOL.limit  # noqa: B018 - reads, checks and caches the environment variable


def set_result_pool(max_idle_bytes: int) -> int:
    """Bound the memory kept for reuse by the results of the NumPy engines.

    :func:`~unitary_lowrank.project`, :func:`~unitary_lowrank.transport` and
    :func:`~unitary_lowrank.retract` on NumPy arrays return results of
    ``MIN_BYTES`` (32 MiB) and more on memory recycled from earlier results that
    no array refers to any more. This skips the page faults and zeroing of
    fresh memory, which at n = 2048 (float64) cost about a third of an update.
    At most `max_idle_bytes` of such unused memory is kept (the oldest first
    freed); it is never handed out while an array, view or tensor over it is
    alive.

    Parameters
    ----------
    max_idle_bytes : int
        New bound in bytes; ``0`` turns recycling off and frees what is kept.
        The default is 512 MiB, or the ``UNITARY_LOWRANK_RESULT_POOL`` environment
        variable.

    Returns
    -------
    int
        The previous bound.

    Raises
    ------
    TypeError
        If `max_idle_bytes` is not an integer.
    ValueError
        If it is negative.

    Examples
    --------
    >>> import unitary_lowrank as ul
    >>> old = ul.set_result_pool(0)          # every result on fresh memory
    >>> ul.result_pool_info().idle_bytes
    0
    >>> _ = ul.set_result_pool(old)          # back to the previous bound
    """
    return _POOL.set_limit(_check_limit(max_idle_bytes, "max_idle_bytes"))


def result_pool_info() -> ResultPoolInfo:
    """What the result pool holds now (see :func:`set_result_pool`).

    Parameters
    ----------
    None

    Returns
    -------
    ResultPoolInfo
        ``(max_idle_bytes, idle_bytes, idle_blocks, reused, allocated)``: the
        bound, the unused memory kept and its number of blocks, and how many
        large results were served from recycled and from new memory.

    Examples
    --------
    >>> import unitary_lowrank as ul
    >>> info = ul.result_pool_info()
    >>> info.idle_bytes <= info.max_idle_bytes
    True
    """
    return _POOL.info()
