"""The tunables of the library, in one place: thresholds, block sizes, environment variables.

Each is defined here once, with what it decides and how its value was chosen; the modules
that use it import it from here (docs/architecture.md, "Tunables", lists them all):

- the optimizers' ``rank="auto"`` (:data:`AUTO_FULL_MAX`, :data:`AUTO_RANK`,
  :func:`auto_rank`; docs/choosing.md) and their first-step unitarity check
  (:data:`EXACT_CHECK_MAX`);
- which implementation an update takes: the two-pass engines (:data:`AUTO_MIN_ENTRIES`)
  and the one-call Numba update and sketch of small matrices (:data:`SMALL_MAX_ENTRIES`,
  :data:`SMALL_MAX_RANK`, :data:`SMALL_MAX_WORK`);
- inside the engines: the threads of the Numba kernels (:data:`PARALLEL_MIN`), the block
  of rows of the blocked engine (:data:`BLOCK_BYTES`) and of a chunk's ``c + a @ b``
  (:data:`MATMUL_BLOCK_BYTES`), the solve for ``U Q`` (:data:`COND_LIMIT`);
- the result pool (:data:`POOL_MIN_BYTES`, :data:`POOL_MAX_IDLE_BYTES`);
- the environment variables the library reads (:data:`NUM_THREADS_VAR`,
  :data:`RESULT_POOL_VAR`, :data:`DISABLE_NUMBA_VAR`).

The measurements behind the values are in ``benchmarks/README.md`` unless said otherwise.
"""

from __future__ import annotations

from typing import Literal

#: ``rank="auto"`` of the optimizers (torch's ``ProjUNN``, optax's ``projunn``): a full-rank
#: step for weights whose larger side is at most this, where the dense O(n³) retraction costs
#: little next to a network's own forward and backward pass and learns the most per step
#: (the ``train`` section of the benchmarks; docs/choosing.md), and rank :data:`AUTO_RANK`
#: above it. Measured on a pixel-by-pixel digits RNN (T = 64, batch 64, one thread): a
#: full-rank Adam step cost 1.12x, 1.14x and 1.27x a rank-1 iteration at hidden 128, 256 and
#: 512, and reached 85 % test accuracy where rank 1 and rank 4 did not within 600 steps;
#: the crossover above 512 (the dense step grows as n³, the network as n² per time step) is
#: not measured, so the full step stops here.
AUTO_FULL_MAX = 512
#: ``rank="auto"``: the rank of the step for weights larger than :data:`AUTO_FULL_MAX`
#: (at hidden 512, Adam's direction at rank 4 reached 84 % then fell to 47 % by step 600 in
#: both seeds; rank 1 rose steadily to 78 %).
AUTO_RANK = 1


def auto_rank(rank: int | Literal["full", "auto"], shape: tuple[int, ...]
              ) -> int | Literal["full"]:
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


#: The optimizers' first-step check of a weight (torch's ``ProjUNN``, optax's ``projunn``):
#: the exact ``‖WᴴW − I‖₂`` (O(np² + p³)) for weights of at most this many columns, the
#: probe estimate (O(n·p·16)) beyond.
EXACT_CHECK_MAX = 512

# --- Which implementation an update takes ---------------------------------------------------

#: ``engine="auto"`` takes the two-pass engines from this many entries on (one 512×512
#: matrix, or e.g. 64 matrices of 64×64 for the Numba kernels; the blocked engine needs this
#: many in each matrix): below, the fixed cost of their small NumPy calls outweighs the pass
#: over U they save (the engines against the portable path in the ``updates`` section of
#: the benchmarks, n = 256 to 4096: ``numba_over_array``, ``blas_over_array``).
AUTO_MIN_ENTRIES = 1 << 18

#: The one-call Numba code of small matrices (``_engines/small.py``): square matrices of
#: fewer entries than this (n < 512) ...
SMALL_MAX_ENTRIES = AUTO_MIN_ENTRIES
#: ... with a step of rank at most this take the one-call update under ``engine="auto"``,
#: and a dense G of such a U, at a fixed rank of at most this, the one-call sketch of
#: :func:`unitary_lowrank.step` (2-D NumPy arrays, or CPU torch tensors that need no
#: autograd, of one dtype) ...
SMALL_MAX_RANK = 4
#: ... and, for the update only, with ``n·k`` at most this for k >= 2 (rank 1: every
#: n < 512): the kernel's loops are the faster below it, the BLAS products of the general
#: path above it (measured: k = 2 took 1.1x the general path at n = 256 in complex64,
#: 1.2-1.5x at n = 384-500; k = 4 at n = 128 took 0.8x with NumPy complex64, 0.5x float64,
#: and 0.24x with a float32 CPU torch tensor, whose general path costs more per call).
SMALL_MAX_WORK = 512

# --- Inside the engines -----------------------------------------------------------------------

#: The Numba kernels may use threads (when :func:`unitary_lowrank.set_num_threads` allows
#: more than one) only for U of at least this many entries, all its matrices together
#: (n = 1024): waking the threads costs more than the work for smaller ones. A bound from
#: that reasoning, not a measured crossover: the ``contention`` section of the benchmarks
#: times n = 1024 and 2048 only.
PARALLEL_MIN = 1 << 20

#: Bytes of U per block of rows of the blocked BLAS engine (``_engines/blocked.py``): about
#: the size of a core's L2 cache, so that both products of the first pass read a block
#: from cache.
BLOCK_BYTES = 1 << 20

#: Bytes of the product block that ``_array_api._chunk_matmul_add`` keeps in cache while
#: it adds ``a @ b`` into a NumPy chunk ``c`` (one pass over the chunk instead of three).
MATMUL_BLOCK_BYTES = 1 << 18

#: Largest condition number of the column-equilibrated ``R = [β, α]`` for which the engines
#: form ``U Q = [U B, A] R⁻¹`` (no pass over U) rather than the product ``U @ Q``: the solve
#: loses ``cond(R)`` digits (``_engines/_shared.py``).
COND_LIMIT = 8.0

# --- The result pool (_pool.py) ---------------------------------------------------------------

#: Smallest result (in bytes) whose memory is recycled: glibc's largest ``mmap``
#: threshold on 64-bit systems. Smaller blocks come back from the allocator's own
#: heap without new page faults (measured: a float32 2048×2048 update, 16 MiB,
#: takes the same time with and without the pool).
POOL_MIN_BYTES = 32 << 20

#: Default bound on the memory of unused results kept for reuse (512 MiB: the
#: spare block of a training loop ``U = update(U, ...)`` up to n = 4096 complex128).
POOL_MAX_IDLE_BYTES = 512 << 20

# --- Environment variables, each read once, on first use --------------------------------------

#: The number of threads the Numba kernels may use (:func:`unitary_lowrank.get_num_threads`
#: before any :func:`~unitary_lowrank.set_num_threads`): a positive integer, default 1.
NUM_THREADS_VAR = "UNITARY_LOWRANK_NUM_THREADS"
#: The bound in bytes of the result pool (:func:`unitary_lowrank.set_result_pool`): default
#: :data:`POOL_MAX_IDLE_BYTES`, ``0`` turns recycling off.
RESULT_POOL_VAR = "UNITARY_LOWRANK_RESULT_POOL"
#: ``1`` disables the Numba engine and the one-call kernels even when numba is installed.
DISABLE_NUMBA_VAR = "UNITARY_LOWRANK_DISABLE_NUMBA"
