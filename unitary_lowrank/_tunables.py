"""Tunable thresholds of the optimizers, in one place (documented in docs/choosing.md)."""

from __future__ import annotations

#: ``rank="auto"`` of the optimizers (torch's ``ProjUNN``, optax's ``projunn``): a full-rank
#: step for weights whose larger side is at most this, where the dense O(n³) retraction costs
#: little next to a network's own forward and backward pass and learns the most per step
#: (the ``train`` section of the benchmarks; docs/choosing.md), and rank :data:`AUTO_RANK`
#: above it.
AUTO_FULL_MAX = 256
#: ``rank="auto"``: the rank of the step for weights larger than :data:`AUTO_FULL_MAX`.
AUTO_RANK = 1


def auto_rank(rank: int | str, shape: tuple[int, ...]) -> int | str:
    """The rank of the step of a weight of `shape` (..., n, p): ``"auto"`` resolved by size.

    Examples
    --------
    >>> from unitary_lowrank._tunables import auto_rank
    >>> auto_rank("auto", (64, 64)), auto_rank("auto", (4096, 4096)), auto_rank(3, (8, 8))
    ('full', 1, 3)
    """
    if rank != "auto":
        return rank
    n, p = shape[-2:]
    return "full" if max(n, p) <= AUTO_FULL_MAX else min(AUTO_RANK, n, p)
