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
    "MARKERS",
    "adding_batch",
    "adding_inputs",
    "adding_positions",
    "copy_baseline",
    "copy_batch",
    "copy_sequences",
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
#: Where the markers go (``--markers``): ``"default"``, this module's layout, or
#: ``"paper"``, that of the projUNN paper's public scripts (``copy_task.py``: the marker
#: after T blanks, on the step of the first recall; ``adding_task.py``: the first marked
#: step in ``[0, ⌊(T − 1)/2⌋)``, the second in ``[⌊(T − 1)/2⌋, T)``).
MARKERS = ("default", "paper")


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
    batch: int, seq_len: int, rng: Any = None, *, n_copy: int = N_COPY,
    markers: str = "default",
) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of a batch of the copy-memory task.

    Each sequence has ``T + 2K`` steps: K symbols drawn uniformly from 1..8,
    then blanks, the marker 9 and blanks. The target is blank everywhere
    except the last K steps, which must repeat the K symbols. `markers`
    places the marker (:func:`copy_sequences`).

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
    markers : {"default", "paper"}, default: "default"
        See :func:`copy_sequences`.

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
    symbols = gen.integers(1, N_SYMBOLS + 1, size=(int(n_copy), int(batch)))
    return copy_sequences(symbols, seq_len, markers=markers)


def copy_sequences(symbols: np.ndarray, seq_len: int, *,
                   markers: str = "default") -> tuple[np.ndarray, np.ndarray]:
    """The copy sequences that recall `symbols` after the delay `seq_len`.

    ``markers="default"``: K symbols, ``T − 1`` blanks, the marker, K blanks,
    and the recall on the K steps after the marker. ``"paper"`` (the projUNN
    paper's ``copy_task.py``): K symbols, T blanks, the marker, ``K − 1``
    blanks, and the recall on the last K steps, from the marker's step on.
    Both have ``T + 2K`` steps and the same targets; the marker comes one
    step later in ``"paper"``.

    Parameters
    ----------
    symbols : numpy.ndarray of int, shape (K, batch)
        The symbols (1..8) to copy.
    seq_len : int
        The delay T (>= 1).
    markers : {"default", "paper"}, default: "default"
        Where the marker goes.

    Returns
    -------
    inputs, targets : numpy.ndarray of int64, shape (T + 2K, batch)
        As :func:`copy_batch`.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank.cli.tasks.data import copy_sequences
    >>> s = np.array([[3], [5]])
    >>> x, y = copy_sequences(s, 3, markers="paper")
    >>> x[:, 0].tolist(), y[:, 0].tolist()
    ([3, 5, 0, 0, 0, 9, 0], [0, 0, 0, 0, 0, 3, 5])
    >>> copy_sequences(s, 3)[0][:, 0].tolist()
    [3, 5, 0, 0, 9, 0, 0]
    """
    if markers not in MARKERS:
        raise ValueError(f"markers must be one of {', '.join(MARKERS)}, got {markers!r}")
    K, B = symbols.shape
    _check_sizes(B, seq_len, 1)
    T = int(seq_len)
    inputs = np.full((T + 2 * K, B), BLANK, dtype=np.int64)
    targets = np.full_like(inputs, BLANK)
    inputs[:K] = symbols
    inputs[K + T - (1 if markers == "default" else 0)] = MARKER
    targets[T + K :] = symbols
    return inputs, targets


def adding_positions(batch: int, seq_len: int, rng: Any = None, *,
                     markers: str = "default") -> tuple[np.ndarray, np.ndarray]:
    """The two marked steps of each sequence of the adding problem.

    ``markers="default"``: the first in ``[0, ⌊T/2⌋)``, the second in
    ``[⌊T/2⌋, T)``; ``"paper"`` (the projUNN paper's ``adding_task.py``): the
    first in ``[0, h)``, the second in ``[h, T)`` with ``h = ⌊(T − 1)/2⌋``
    (one step earlier for even T; needs T >= 3).

    Parameters
    ----------
    batch : int
        Number of sequences.
    seq_len : int
        Sequence length T.
    rng : None, int or numpy.random.Generator, optional
        Source of randomness.
    markers : {"default", "paper"}, default: "default"
        The layout.

    Returns
    -------
    first, second : numpy.ndarray of int64, shape (batch,)
        The two marked steps.

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks.data import adding_positions
    >>> f, s = adding_positions(1000, 10, rng=0, markers="paper")
    >>> int(f.max()), int(s.min())
    (3, 4)
    >>> f, s = adding_positions(1000, 10, rng=0)
    >>> int(f.max()), int(s.min())
    (4, 5)
    """
    if markers not in MARKERS:
        raise ValueError(f"markers must be one of {', '.join(MARKERS)}, got {markers!r}")
    _check_sizes(batch, seq_len, 2 if markers == "default" else 3)
    gen = np.random.default_rng(rng)
    T, B = int(seq_len), int(batch)
    half = T // 2 if markers == "default" else (T - 1) // 2
    return gen.integers(0, half, size=B), gen.integers(half, T, size=B)


def adding_batch(batch: int, seq_len: int, rng: Any = None, *,
                 markers: str = "default") -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets of a batch of the adding problem.

    Each step carries two channels: a value drawn from U(0, 1) and a 0/1
    marker. Exactly two steps are marked, one in each half of the sequence
    (:func:`adding_positions`); the target is the sum of their two values.

    Parameters
    ----------
    batch : int
        Number of sequences.
    seq_len : int
        Sequence length T (>= 2; >= 3 with ``markers="paper"``).
    rng : None, int or numpy.random.Generator, optional
        Source of randomness.
    markers : {"default", "paper"}, default: "default"
        Where the two marked steps may fall (:func:`adding_positions`).

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
    values = gen.uniform(0.0, 1.0, size=(T, B))
    first, second = adding_positions(B, T, gen, markers=markers)
    return adding_inputs(values, first, second)


def adding_inputs(values: np.ndarray, first: np.ndarray,
                  second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (T, batch, 2) and targets (batch,) of adding sequences given their parts.

    Parameters
    ----------
    values : numpy.ndarray, shape (T, batch)
        The values.
    first, second : numpy.ndarray of int, shape (batch,)
        The marked steps.

    Returns
    -------
    inputs, targets
        As :func:`adding_batch` (float64).

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank.cli.tasks.data import adding_inputs
    >>> x, y = adding_inputs(np.array([[0.5], [0.25], [1.0]]), np.array([0]), np.array([2]))
    >>> x[:, 0, 1].tolist(), y.tolist()
    ([1.0, 0.0, 1.0], [1.5])
    """
    T, B = values.shape
    markers = np.zeros((T, B))
    cols = np.arange(B)
    markers[first, cols] = 1.0
    markers[second, cols] = 1.0
    values = values.astype(np.float64, copy=False)
    inputs = np.stack([values, markers], axis=-1)
    targets = values[first, cols] + values[second, cols]
    return inputs, targets
