"""Timing helpers shared by the benchmark sections: medians after warm-up, device sync."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import unitary_lowrank as ul

__all__ = ["measure", "synchronize", "without_result_pool"]


@contextlib.contextmanager
def without_result_pool() -> Iterator[None]:
    """Every result on fresh memory inside the block (``ul.set_result_pool(0)``), as before it."""
    old = ul.set_result_pool(0)
    try:
        yield
    finally:
        ul.set_result_pool(old)


def synchronize(x: Any = None) -> None:
    """Block until the device that holds `x` is idle (no-op on the CPU)."""
    mod = type(x).__module__.split(".")[0]
    if mod == "cupy":
        import cupy

        cupy.cuda.get_current_stream().synchronize()
    elif mod == "torch" and getattr(x, "is_cuda", False):
        import torch

        torch.cuda.synchronize()


def measure(fn: Callable[[], Any], *, repeats: int = 7, warmup: int = 1,
            min_time: float = 0.05) -> float:
    """Median wall time of ``fn()`` in seconds.

    Runs `warmup` untimed calls (compilation, caches), then `repeats` timed
    samples; a sample of a fast call loops until it lasts at least `min_time`
    so that the clock's resolution does not matter. The result of each call is
    synchronised before the clock is read.
    """
    for _ in range(warmup):
        synchronize(fn())
    samples = []
    for _ in range(repeats):
        loops = 0
        start = time.perf_counter()
        while True:
            synchronize(fn())
            loops += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        samples.append(elapsed / loops)
    return statistics.median(samples)
