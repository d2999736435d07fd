"""Batches of the copy-memory and adding problems (``docs/tasks.md``).

Batches are drawn on the host with a NumPy Generator, so a seed gives the same
data on every backend; :mod:`unitary_lowrank.cli.tasks.evaluation` moves them to the
device. Arrays are time-major: axis 0 is time, axis 1 the batch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "ADDING_BASELINE",
    "BLANK",
    "MARKER",
    "N_COPY",
    "N_SYMBOLS",
    "adding_batch",
    "copy_baseline",
    "copy_batch",
]

#: Number of data symbols of the copy task (tokens 1..8).
N_SYMBOLS = 8
#: Token of the blank.
BLANK = 0
#: Token of the marker that asks for the recall.
MARKER = 9
#: Number of symbols to remember (K).
N_COPY = 10
#: MSE of always predicting 1 on the adding problem: the variance of a sum of two U(0, 1).
ADDING_BASELINE = 1.0 / 6.0


def _check_sizes(batch: int, seq_len: int, least: int) -> None:
    if int(batch) < 1:
        raise ValueError(f"batch must be a positive integer, got {batch}")
    if int(seq_len) < least:
        raise ValueError(f"seq_len must be an integer >= {least}, got {seq_len}")


def copy_baseline(seq_len: int, n_copy: int = N_COPY, n_symbols: int = N_SYMBOLS) -> float:
    """Cross-entropy of the best memoryless strategy on the copy task.

    It predicts blanks where they are certain and a uniform guess over the
    symbols at the `n_copy` recall steps: ``K ln(8) / (T + 2K)``.

    Parameters
    ----------
    seq_len : int
        Delay T between the last symbol and the marker (plus one).
    n_copy : int, default: 10
        Number of symbols to copy, K.
    n_symbols : int, default: 8
        Alphabet size.

    Returns
    -------
    float
        The baseline loss, per time step.

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks.data import copy_baseline
    >>> round(copy_baseline(1000), 4)
    0.0204
    """
    return n_copy * math.log(n_symbols) / (seq_len + 2 * n_copy)


def copy_batch(
    batch: int, seq_len: int, rng: Any = None, *, n_copy: int = N_COPY
) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of a batch of the copy-memory task.

    Each sequence has ``T + 2K`` steps: K symbols drawn uniformly from 1..8,
    ``T − 1`` blanks, the marker 9 and K blanks. The target is blank everywhere
    except the last K steps, which must repeat the K symbols.

    Parameters
    ----------
    batch : int
        Number of sequences.
    seq_len : int
        The delay T (>= 1).
    rng : None, int or numpy.random.Generator, optional
        Source of randomness.
    n_copy : int, default: 10
        Number of symbols to copy, K.

    Returns
    -------
    inputs, targets : numpy.ndarray of int64, shape (T + 2K, batch)
        Input tokens (0..9) and target tokens (0..8), time-major.

    Raises
    ------
    ValueError
        If a size is not positive.

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks.data import copy_batch
    >>> x, y = copy_batch(1, 3, rng=0, n_copy=2)
    >>> x[:, 0].tolist()[2:], y[:, 0].tolist()[:5]
    ([0, 0, 9, 0, 0], [0, 0, 0, 0, 0])
    >>> bool((y[-2:, 0] == x[:2, 0]).all())
    True
    """
    _check_sizes(batch, seq_len, 1)
    if int(n_copy) < 1:
        raise ValueError(f"n_copy must be a positive integer, got {n_copy}")
    gen = np.random.default_rng(rng)
    T, K = int(seq_len), int(n_copy)
    symbols = gen.integers(1, N_SYMBOLS + 1, size=(K, int(batch)))
    inputs = np.full((T + 2 * K, int(batch)), BLANK, dtype=np.int64)
    targets = np.full_like(inputs, BLANK)
    inputs[:K] = symbols
    inputs[K + T - 1] = MARKER
    targets[T + K :] = symbols
    return inputs, targets


def adding_batch(batch: int, seq_len: int, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets of a batch of the adding problem.

    Each step carries two channels: a value drawn from U(0, 1) and a 0/1
    marker. Exactly two steps are marked, one in each half of the sequence;
    the target is the sum of their two values.

    Parameters
    ----------
    batch : int
        Number of sequences.
    seq_len : int
        Sequence length T (>= 2).
    rng : None, int or numpy.random.Generator, optional
        Source of randomness.

    Returns
    -------
    inputs : numpy.ndarray of float64, shape (T, batch, 2)
        Values and markers, time-major.
    targets : numpy.ndarray of float64, shape (batch,)
        The sums.

    Raises
    ------
    ValueError
        If a size is too small.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank.cli.tasks.data import adding_batch
    >>> x, y = adding_batch(4, 10, rng=0)
    >>> x.shape, y.shape, x[:, :, 1].sum(axis=0).tolist()
    ((10, 4, 2), (4,), [2.0, 2.0, 2.0, 2.0])
    >>> bool(np.allclose(y, (x[:, :, 0] * x[:, :, 1]).sum(axis=0)))
    True
    """
    _check_sizes(batch, seq_len, 2)
    gen = np.random.default_rng(rng)
    T, B = int(seq_len), int(batch)
    half = T // 2
    values = gen.uniform(0.0, 1.0, size=(T, B))
    first = gen.integers(0, half, size=B)
    second = gen.integers(half, T, size=B)
    markers = np.zeros((T, B))
    cols = np.arange(B)
    markers[first, cols] = 1.0
    markers[second, cols] = 1.0
    inputs = np.stack([values, markers], axis=-1)
    targets = values[first, cols] + values[second, cols]
    return inputs, targets
