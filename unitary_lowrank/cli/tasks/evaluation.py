"""What a run trains on and is measured by: a task's batches, loss and accuracy.

:class:`Task` draws the training batches of copy, adding or pixels on the host and
moves them to the run's device, and evaluates parameters on a fixed test batch or on
the validation and test images.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from . import data, rnn
from .config import Config

__all__ = ["N_CLASSES", "Task"]

#: Classes of the pixels task (digits 0-9, or the ten kinds of Fashion-MNIST).
N_CLASSES = 10



class Task:
    """Data, loss and metrics of one task, on the device."""

    def __init__(self, cfg: Config, xp: ModuleType, device: Any, pixels: Any = None):
        self.cfg, self.xp, self.device = cfg, xp, device
        self.copy = cfg.task == "copy"
        self.pixels = pixels
        if self.copy:
            self.n_in, self.n_out, self.readout = data.MARKER + 1, data.N_SYMBOLS + 1, "all"
            self.baseline = data.copy_baseline(cfg.seq_len)
        elif cfg.task == "pixels":
            self.n_in, self.n_out, self.readout = 1, N_CLASSES, "last"
            self.baseline = math.log(N_CLASSES)
        else:
            self.n_in, self.n_out, self.readout = 2, 1, "last"
            self.baseline = data.ADDING_BASELINE
        # Copy and adding with --train-size: the fixed training set (drawn at the first
        # batch, from the training generator).
        self.train_set: tuple[np.ndarray, ...] | None = None
        # The training images, or the fixed set: this epoch's order and position in it.
        self.order: np.ndarray | None = None
        self.at = 0

    @property
    def seq_len(self) -> int:
        """Length of the sequences: the number of pixels of an image, or the task's T."""
        if self.pixels is not None:
            return int(self.pixels.train_x.shape[1])
        return self.cfg.seq_len

    def to_params(self, host: dict[str, np.ndarray]) -> dict[str, Any]:
        """Host arrays as parameters: in the run's dtype, on its device."""
        return {k: self._to(v) for k, v in host.items()}

    def _to(self, a: np.ndarray) -> Any:
        return self.xp.asarray(
            np.ascontiguousarray(a, dtype=self.cfg.dtype),
            dtype=getattr(self.xp, self.cfg.dtype),
            device=self.device,
        )

    def _images(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        """Images (N, T) and labels (N,) as time-major inputs (T, N, 1) and one-hot targets."""
        return self._to(x.T[:, :, None]), self._to(np.eye(N_CLASSES)[y])

    def batch(self, size: int, rng: np.random.Generator) -> tuple[Any, Any]:
        """A training batch of `size` (inputs, targets) on the device, drawn from `rng`."""
        if self.pixels is not None:  # the training images in a new random order each epoch
            idx = self._next(min(size, self.pixels.train_x.shape[0]),
                             self.pixels.train_x.shape[0], rng)
            return self._images(self.pixels.train_x[idx], self.pixels.train_y[idx])
        if self.cfg.train_size is not None:
            return self._from_train_set(size, rng)
        return self._fresh(size, rng)

    def _next(self, size: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """The indices of the next `size` of `n` training items, in epochs of new random orders.

        A batch that crosses the end of an epoch takes the rest from the next one.
        """
        take: list[np.ndarray] = []
        need = size
        while need > 0:
            if self.order is None or self.at >= n:
                self.order, self.at = rng.permutation(n), 0
            part = self.order[self.at:self.at + need]
            self.at += part.size
            need -= part.size
            take.append(part)
        return np.concatenate(take)

    def _fresh(self, size: int, rng: np.random.Generator) -> tuple[Any, Any]:
        """Copy or adding: `size` new sequences drawn from `rng`, on the device."""
        cfg = self.cfg
        if self.copy:
            x, y = data.copy_batch(size, cfg.seq_len, rng, markers=cfg.markers)
            return self._to(np.eye(self.n_in)[x]), self._to(np.eye(self.n_out)[y])
        x, y = data.adding_batch(size, cfg.seq_len, rng, markers=cfg.markers)
        return self._to(x), self._to(y)

    def _from_train_set(self, size: int, rng: np.random.Generator) -> tuple[Any, Any]:
        """Copy or adding with ``train_size``: the next `size` sequences of the fixed set.

        The set (``train_size`` sequences) is drawn from `rng` at the first call and
        visited once an epoch in a new random order (as the ``DataLoader(shuffle=True)``
        of the paper's adding script); a batch that crosses the end of an epoch takes
        the rest from the next one. Copy keeps only the K symbols of each sequence,
        adding its values in float32 and its two marked steps.
        """
        cfg = self.cfg
        assert cfg.train_size is not None  # called only with a fixed training set
        n = int(cfg.train_size)
        if self.train_set is None:
            if self.copy:
                self.train_set = (rng.integers(1, data.N_SYMBOLS + 1, size=(data.N_COPY, n),
                                               dtype=np.int8),)
            else:
                values = rng.random((cfg.seq_len, n), dtype=np.float32)
                self.train_set = (values, *data.adding_positions(n, cfg.seq_len, rng,
                                                                 markers=cfg.markers))
        idx = self._next(size, n, rng)
        if self.copy:
            x, y = data.copy_sequences(self.train_set[0][:, idx].astype(np.int64),
                                       cfg.seq_len, markers=cfg.markers)
            return self._to(np.eye(self.n_in)[x]), self._to(np.eye(self.n_out)[y])
        values, first, second = self.train_set
        x, y = data.adding_inputs(values[:, idx], first[idx], second[idx])
        return self._to(x), self._to(y)

    def loss(self, out: Any, target: Any) -> tuple[Any, Any]:
        """The loss of the outputs and its gradient with respect to them."""
        if self.cfg.task in ("copy", "pixels"):
            return rnn.cross_entropy(out, target, xp=self.xp)
        return rnn.mean_squared_error(out, target, xp=self.xp)

    def hits(self, out: Any, target: Any) -> float | None:
        """Copy: recalled symbols right; pixels: images classified right; adding: None."""
        xp = self.xp
        if self.copy:
            K = data.N_COPY
            hit = xp.argmax(out[-K:, ...], axis=-1) == xp.argmax(target[-K:, ...], axis=-1)
        elif self.pixels is not None:
            hit = xp.argmax(out, axis=-1) == xp.argmax(target, axis=-1)
        else:
            return None
        return float(xp.sum(xp.astype(hit, xp.float64)))

    def accuracy(self, out: Any, target: Any) -> float | None:
        """Copy: fraction of the K recalled symbols that are right; pixels: of the images."""
        hits = self.hits(out, target)
        if hits is None:
            return None
        count = data.N_COPY * out.shape[1] if self.copy else out.shape[0]
        return hits / count

    def evaluate(self, params: dict[str, Any], sets: Any) -> tuple[float, float | None]:
        """Mean loss and accuracy of `params` on `sets`: a list of (inputs, targets) batches."""
        total, count = 0.0, 0
        hits: float | None = 0.0
        for x, y in sets:
            out, _ = rnn.forward(params, x, nonlinearity=self.cfg.nonlinearity,
                                 readout=self.readout, xp=self.xp)
            size = int(out.shape[-2])  # the batch axis of the outputs
            total += float(self.loss(out, y)[0]) * size
            h = self.hits(out, y)
            hits = None if h is None or hits is None else hits + h
            count += size
        if hits is None:
            return total / count, None
        per = data.N_COPY if self.copy else 1
        return total / count, hits / (per * count)

    def eval_sets(self, split: str, rng: np.random.Generator) -> Any:
        """The evaluation set of `split`: a list of (inputs, targets) minibatches.

        Copy and adding: one fixed batch of `test_batch` sequences drawn from
        `rng` (whatever `split`). Pixels: the ``"val"`` or ``"test"`` images, in
        minibatches of at most `test_batch` images (moved to the device as they
        are evaluated, so that memory stays bounded).
        """
        if self.pixels is None:
            return [self._fresh(self.cfg.test_batch, rng)]
        x = getattr(self.pixels, f"{split}_x")
        y = getattr(self.pixels, f"{split}_y")
        return _Minibatches(self, x, y, self.cfg.test_batch)


class _Minibatches:
    """Images and labels handed out as device minibatches of at most `size`, on demand."""

    def __init__(self, task: Task, x: np.ndarray, y: np.ndarray, size: int):
        self.task, self.x, self.y, self.size = task, x, y, size

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __iter__(self) -> Any:
        for i in range(0, self.x.shape[0], self.size):
            yield self.task._images(self.x[i:i + self.size], self.y[i:i + self.size])
