"""Settings of the copy, adding and pixels runs: what can be set, and what it may be.

:class:`Config` and its checks (:class:`ConfigError` names the setting that cannot
work), the defaults of each task and the paper's presets (:func:`default_config`),
how ``W_in`` and ``V`` are drawn (:func:`paper_io_init`), and what a configuration
names outside itself: the backend (:func:`resolve_backend`) and the images of a
pixels run (:func:`load_data`).
"""

from __future__ import annotations

import dataclasses
import math
from types import ModuleType
from typing import Any

import numpy as np

# the sketches, and the directions of the step on U (the gradient itself, RMSprop's
# direction as the projUNN paper's code, or Adam's: momentum and a bias-corrected second
# moment), from the library's one registry
from unitary_lowrank.methods import DIRECTIONS, SAMPLERS, Method

from . import data, rnn

__all__ = [
    "BACKENDS",
    "DIRECTIONS",
    "DTYPES",
    "IO_INITS",
    "LOWRANK_METHODS",
    "METHODS",
    "PRESETS",
    "SAMPLERS",
    "TASKS",
    "Config",
    "ConfigError",
    "default_config",
    "load_data",
    "paper_io_init",
    "resolve_backend",
]

TASKS = ("copy", "adding", "pixels")
METHODS = ("transport", "project", "cayley", "dense-polar", "unconstrained", "frozen")
BACKENDS = ("numpy", "cupy", "torch")
DTYPES = ("float32", "float64")
#: Retraction of the low-rank methods in :func:`unitary_lowrank.training.step`.
LOWRANK_METHODS: dict[str, Method] = {"transport": "exp", "project": "polar", "cayley": "cayley"}

class ConfigError(ValueError):
    """A setting that cannot work (bad size, unknown name, missing backend)."""


@dataclasses.dataclass
class Config:
    """Settings of one training run (see ``python -m unitary_lowrank copy --help``).

    Attributes
    ----------
    task : {"copy", "adding", "pixels"}
        The problem.
    method : str
        How `U` is updated, one of :data:`METHODS`.
    rank, sampler
        Rank of the sketched gradient and the sketching method (low-rank
        methods only); ``rank="full"``: no sketch, the dense retraction of
        the whole step (:func:`unitary_lowrank.step`).
    oversample : int
        Extra columns of the sketch: the randomized sampler draws
        ``rank + oversample`` Gaussian columns, the column sampler that many
        columns of the gradient (the projUNN paper's code: ``oversample = 0``).
    seq_len, hidden, batch, steps : int
        Delay T (copy) or sequence length (adding), hidden size, batch size,
        maximum number of training steps. Pixels: `seq_len` is unused (T is
        the number of pixels of an image).
    lr, unitary_lr_divider : float
        RMSprop learning rate; the step on `U` is ``−(lr / divider) D``.
    unitary_direction : {"gradient", "rmsprop", "adam"}
        The direction `D` of the step on `U`: the gradient ``G`` itself,
        RMSprop's ``G / (√v + ε)`` with `v` the running mean of ``G²`` (the
        projUNN paper's code), or Adam's ``m̂ / (√v̂ + ε)``
        (:func:`unitary_lowrank.adam_direction`). Either way the step is
        sketched to rank `rank` and mapped back onto the orthogonal group by
        the method; ``rmsprop`` and ``adam`` form the n×n gradient
        (O(n²·batch·T) more work per step).
    lr_decay, decay_below : float
        Multiply both learning rates by `lr_decay` once the test loss falls
        below ``decay_below × baseline`` (the task is solved; smaller steps
        then polish the solution). ``lr_decay = 1`` turns the schedule off.
    stop_below : float or None
        Stop early once the test loss is below ``stop_below × baseline`` (and,
        on copy, at least `stop_recall` of the recalled test symbols are
        right). None or 0: run all steps.
    stop_recall : float
        See `stop_below` (copy only; 1: every recalled test symbol right).
    epoch_steps, epoch_decay : int or None, float
        The projUNN paper's schedule: multiply both learning rates by
        `epoch_decay` after every `epoch_steps` steps (None or 1: never).
    patience, max_decays : int or None, int
        Pixels: after `patience` evaluations without a better validation
        accuracy, multiply both learning rates by `lr_decay`; after
        `max_decays` such decays, stop instead (``stop_reason`` ``"plateau"``).
        None: neither. The run reports the parameters of its best validation
        accuracy.
    nonlinearity, init, seed, dtype, backend
        Network and numerical settings.
    eval_every, test_batch : int
        Steps between test evaluations, and the size of the fixed test batch
        (pixels: of the minibatches the validation and test sets are
        evaluated in).
    io_init : {"default", "paper"}
        How ``W_in`` and ``V`` are drawn: the defaults of
        :func:`~unitary_lowrank.cli.tasks.rnn.init_params`, or as the paper's
        code draws them for the task (:func:`paper_io_init`; the presets).
    dataset, data_dir, download, mirror, downsample, permute
        Pixels: the images (see :func:`unitary_lowrank.cli.tasks.datasets.load_pixels`).
    train_size : int or None
        Copy and adding: draw a fixed training set of this many sequences
        once and visit it once an epoch in a new random order (the paper's
        scripts: 512 000 copy, 100 000 adding sequences); None: a fresh
        batch every step.
    markers : {"default", "paper"}
        Copy and adding: where the markers go (:data:`data.MARKERS`):
        ``"paper"``, the layout of the paper's scripts (copy: the marker one
        step later, on the first recall step; adding: the halves split at
        ⌊(T − 1)/2⌋ rather than ⌊T/2⌋).
    hidden_bias : bool
        A trainable bias ``b`` in ``σ(W_in x + U h + b)``; False: no bias (the
        paper's copy and adding network), ReLU only (modReLU's bias is part
        of the nonlinearity).
    output_bias : {"zero", "torch"}
        How the readout's bias starts: zero, or PyTorch's ``nn.Linear``
        default U(±1/√hidden) (the paper's adding and MNIST scripts).
    threads : int or None
        BLAS threads during the run (restored afterwards); None leaves them
        alone. The command line uses 1: see :mod:`unitary_lowrank.cli.tasks._threads`.
    """

    task: str
    method: str = "transport"
    rank: int | str = 1
    sampler: str = "lsi"
    oversample: int = 10
    seq_len: int = 100
    hidden: int = 128
    batch: int = 128
    steps: int = 3000
    lr: float = 2e-3
    unitary_lr_divider: float = 8.0
    unitary_direction: str = "gradient"
    lr_decay: float = 0.2
    decay_below: float = 0.05
    stop_below: float | None = None
    stop_recall: float = 1.0
    epoch_steps: int | None = None
    epoch_decay: float = 1.0
    patience: int | None = None
    max_decays: int = 2
    nonlinearity: str = "relu"
    init: str = "henaff"
    seed: int = 0
    dtype: str = "float32"
    backend: str = "numpy"
    eval_every: int = 250
    test_batch: int = 512
    threads: int | None = None
    io_init: str = "default"
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    mirror: str | None = None
    downsample: int = 1
    permute: bool = True
    train_size: int | None = None
    markers: str = "default"
    hidden_bias: bool = True
    output_bias: str = "zero"

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first setting that cannot work."""
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        _choice("method", self.method, METHODS)
        _choice("sampler", self.sampler, SAMPLERS)
        _choice("unitary_direction", self.unitary_direction, DIRECTIONS)
        _choice("nonlinearity", self.nonlinearity, rnn.NONLINEARITIES)
        _choice("init", self.init, rnn.INITS)
        _choice("io_init", self.io_init, IO_INITS)
        _choice("markers", self.markers, data.MARKERS)
        _choice("output_bias", self.output_bias, rnn.OUTPUT_BIASES)
        _choice("dtype", self.dtype, DTYPES)
        _choice("backend", self.backend, BACKENDS)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer) or (
            self.seed < 0
        ):
            raise ConfigError(f"--seed must be an integer >= 0, got {self.seed!r}")
        if self.rank != "full":
            _positive("rank", self.rank)
        for name in ("seq_len", "hidden", "batch", "steps", "eval_every", "test_batch"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ConfigError(f"{_flag(name)} must be a positive integer, got {value}")
        _choice("dataset", self.dataset, _dataset_names())
        for name in ("oversample", "max_decays"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ConfigError(f"{_flag(name)} must be an integer >= 0, got {value!r}")
        for name in ("epoch_steps", "patience", "downsample"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | np.integer) or value < 1):
                raise ConfigError(f"{_flag(name)} must be a positive integer, got {value}")
        if not (math.isfinite(self.epoch_decay) and 0 < self.epoch_decay <= 1):
            raise ConfigError(f"--epoch-decay must be in (0, 1], got {self.epoch_decay}")
        if self.task == "adding" and self.seq_len < 2:
            raise ConfigError(f"--seq-len must be at least 2 for adding, got {self.seq_len}")
        if self.task == "adding" and self.markers == "paper" and self.seq_len < 3:
            raise ConfigError("--seq-len must be at least 3 for adding with --markers paper, "
                              f"got {self.seq_len}")
        if not isinstance(self.hidden_bias, bool | np.bool_):
            raise ConfigError(f"--hidden-bias must be true or false, got {self.hidden_bias!r}")
        if not self.hidden_bias and self.nonlinearity == "modrelu":
            raise ConfigError("--no-hidden-bias needs --nonlinearity relu (modReLU's bias is "
                              "part of the nonlinearity)")
        if self.train_size is not None:
            if self.task == "pixels":
                raise ConfigError("--train-size is for copy and adding (pixels trains on "
                                  "its images)")
            if (isinstance(self.train_size, bool)
                    or not isinstance(self.train_size, int | np.integer)
                    or self.train_size < self.batch):
                raise ConfigError(f"--train-size must be an integer >= --batch ({self.batch}), "
                                  f"got {self.train_size!r}")
        for name in ("lr", "unitary_lr_divider", "lr_decay", "decay_below"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{_flag(name)} must be a positive number, got {value}")
        if self.lr_decay > 1:
            raise ConfigError(f"--lr-decay must be in (0, 1], got {self.lr_decay}")
        if self.stop_below is not None and not (
            math.isfinite(self.stop_below) and self.stop_below >= 0
        ):
            raise ConfigError(f"--stop-below must be a number >= 0, got {self.stop_below}")
        if not (0 <= self.stop_recall <= 1):
            raise ConfigError(f"--stop-recall must be in [0, 1], got {self.stop_recall}")
        if self.threads is not None and (
            not isinstance(self.threads, int | np.integer) or self.threads < 1
        ):
            raise ConfigError(f"--threads must be a positive integer, got {self.threads}")
        if isinstance(self.rank, int | np.integer) and self.rank > self.hidden:
            raise ConfigError(
                f"--rank must be at most --hidden ({self.hidden}), got {self.rank}"
            )


#: How ``W_in`` and ``V`` are drawn (``--io-init``): see :func:`paper_io_init`.
IO_INITS = ("default", "paper")


def paper_io_init(task: str, n_in: int, hidden: int, n_out: int,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``W_in`` and ``V`` drawn as the projUNN paper's code draws them for `task`.

    copy (``copy_task.py``): ``W_in`` Glorot-uniform (gain 1), ``V`` He-normal
    (``kaiming_normal_``, fan in); adding (``adding_task.py``): ``W_in``
    Glorot-uniform, ``V`` Glorot-uniform with gain 1/2; pixels
    (``permuted_mnist.py``): ``W_in`` He-normal, ``V`` PyTorch's ``nn.Linear``
    default U(±1/√hidden). The biases stay as :func:`rnn.init_params` makes them.

    Parameters
    ----------
    task : {"copy", "adding", "pixels"}
        The problem.
    n_in, hidden, n_out : int
        Sizes.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    dict
        ``W_in`` (hidden, n_in) and ``V`` (n_out, hidden), float64 on the host.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank.cli.tasks.config import paper_io_init
    >>> p = paper_io_init("adding", 2, 170, 1, np.random.default_rng(0))
    >>> bool(np.abs(p["W_in"]).max() <= np.sqrt(6 / 172)), p["V"].shape
    (True, (1, 170))
    """
    def glorot_uniform(fan_out: int, fan_in: int, gain: float = 1.0) -> np.ndarray:
        bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, size=(fan_out, fan_in))

    if task == "copy":
        return {"W_in": glorot_uniform(hidden, n_in),
                "V": rng.standard_normal((n_out, hidden)) * math.sqrt(2.0 / hidden)}
    if task == "adding":
        return {"W_in": glorot_uniform(hidden, n_in),
                "V": glorot_uniform(n_out, hidden, gain=0.5)}
    if task == "pixels":
        bound = 1.0 / math.sqrt(hidden)
        return {"W_in": rng.standard_normal((hidden, n_in)) * math.sqrt(2.0 / n_in),
                "V": rng.uniform(-bound, bound, size=(n_out, hidden))}
    raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _dataset_names() -> tuple[str, ...]:
    from .datasets import DATASETS

    return tuple(DATASETS)


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{_flag(name)} must be a positive integer, got {value!r}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            f"{_flag(name)} must be one of {', '.join(choices)}, got {value!r}"
        )


#: Defaults of each task, chosen to finish within a few minutes on two shared CPU cores
#: (docs/tasks.md gives the measurements behind them).
_DEFAULTS = {
    # ReLU, with U stepped along RMSprop's direction as in the paper's code: a frozen U
    # then stays far from solving copy, so U must learn (with modReLU a frozen U solves it
    # too). Rank 4 learns faster than rank 1 (seed 1: below 10 % of the baseline after
    # 1 500 steps against 3 000). Decay at 10 % of the baseline; early stop at 1 % with
    # 99.5 % of the recalled test symbols right. See docs/tasks.md.
    "copy": {"seq_len": 100, "hidden": 128, "batch": 128, "steps": 5000, "lr": 2e-3,
             "unitary_lr_divider": 8.0, "unitary_direction": "rmsprop", "rank": 4,
             "nonlinearity": "relu", "lr_decay": 0.2, "decay_below": 0.1,
             "stop_below": 0.01, "stop_recall": 0.995, "eval_every": 250, "test_batch": 512},
    # Adding learns slowly with an orthogonal U: divider 2 (with divider 8, runs of 16 000
    # steps ended at MSE 0.03-0.05) and a decay at 20 % of the baseline. The test MSE keeps
    # jumping between 5 % and 25 % of the baseline after the decay, so the run stops at the
    # first evaluation below 5 % of the baseline (MSE 0.0083), within at most 30 000 steps
    # (about 2 minutes). See docs/tasks.md.
    "adding": {"seq_len": 100, "hidden": 64, "batch": 50, "steps": 30000, "lr": 2e-3,
               "unitary_lr_divider": 2.0, "nonlinearity": "relu", "lr_decay": 0.3,
               "decay_below": 0.2, "stop_below": 0.05, "eval_every": 500, "test_batch": 1000},
    # Pixels (scikit-learn's 8x8 digits by default, T = 64): U along RMSprop's direction
    # as in the paper's code; the validation accuracy drives the decay and the early
    # stop, and the run reports its best validation state. See docs/tasks.md.
    "pixels": {"hidden": 128, "batch": 64, "steps": 4000, "lr": 1e-3,
               "unitary_lr_divider": 8.0, "unitary_direction": "rmsprop", "rank": 4,
               "nonlinearity": "modrelu", "init": "haar", "lr_decay": 0.3, "patience": 5,
               "max_decays": 2, "eval_every": 200, "test_batch": 500},
}

#: The settings of the projUNN paper's public code (facebookresearch/projUNN, meant for a
#: GPU; docs/tasks.md puts them side by side with the defaults):
#: copy_task.py -- T = 1000 (or 2000), hidden 190, batch 128, RMSprop lr 7e-4, divider
#: 32, rank 1, U along RMSprop's direction, lr x 0.9 after every epoch of 4 000 steps,
#: 5 epochs (20 000 steps); with column sampling of c = k columns (oversample 0).
#: copy's readout bias starts at 0 (as the script sets it).
#: adding_task.py -- T = 200 (or 750), hidden 170, batch 50, lr 1e-3, divider 32, U
#: along RMSprop's direction from the identity, lr x 0.94 after every epoch of 2 000
#: steps (100 000 examples), 50 epochs. permuted_mnist.py (at HEAD) -- 28x28 MNIST,
#: permuted, modReLU, projUNN-D (method "project"), LSI rank 1, hidden 170 (or
#: --hidden 116/360/512), batch 128, lr 1e-3, no divider, StepLR x 0.2 every 60 epochs
#: (of 422 steps), U from the identity (the script's first version; at HEAD it is
#: nn.Linear's default, not orthogonal), U along RMSprop's
#: direction; the paper's 200 epochs, 10 % of the training images held out for
#: validation. copy and adding draw a fixed training set once (512 000 and 100 000
#: sequences), use their scripts' marker positions, have no hidden bias; adding's and
#: MNIST's readout bias starts at PyTorch's default. None of them decays on reaching a
#: loss or stops early. docs/tasks.md gives the sources, setting by setting.
PRESETS = {
    "copy": {"io_init": "paper", "seq_len": 1000, "hidden": 190, "batch": 128, "lr": 7e-4,
             "unitary_lr_divider": 32.0, "unitary_direction": "rmsprop", "rank": 1,
             "sampler": "column", "oversample": 0, "init": "henaff", "nonlinearity": "relu",
             "steps": 20000, "epoch_steps": 4000, "epoch_decay": 0.9, "lr_decay": 1.0,
             "stop_below": 0.0, "eval_every": 100, "test_batch": 100,
             "train_size": 512000, "markers": "paper", "hidden_bias": False,
             "output_bias": "zero"},
    "adding": {"io_init": "paper", "seq_len": 200, "hidden": 170, "batch": 50, "lr": 1e-3,
               "unitary_lr_divider": 32.0, "unitary_direction": "rmsprop", "rank": 1,
               "sampler": "lsi", "init": "identity", "nonlinearity": "relu",
               "steps": 100000, "epoch_steps": 2000, "epoch_decay": 0.94, "lr_decay": 1.0,
               "stop_below": 0.0, "eval_every": 100, "test_batch": 2000,
               "train_size": 100000, "markers": "paper", "hidden_bias": False,
               "output_bias": "torch"},
    "pixels": {"io_init": "paper", "dataset": "mnist", "downsample": 1, "permute": True,
               "hidden": 170, "batch": 128, "lr": 1e-3, "unitary_lr_divider": 1.0,
               "unitary_direction": "rmsprop", "rank": 1, "sampler": "lsi",
               "method": "project", "init": "identity", "nonlinearity": "modrelu",
               "steps": 84400, "epoch_steps": 25320, "epoch_decay": 0.2, "lr_decay": 1.0,
               "patience": None, "stop_below": 0.0, "eval_every": 422, "test_batch": 1000,
               "output_bias": "torch"},
}


def default_config(task: str, preset: str | None = None, **overrides: Any) -> Config:
    """The defaults of `task`, then the preset, then `overrides` (None values ignored).

    Parameters
    ----------
    task : {"copy", "adding", "pixels"}
        The problem.
    preset : {None, "paper"}, optional
        ``"paper"`` sets the settings of the paper's code (:data:`PRESETS`).
    **overrides
        Any :class:`Config` field; None leaves the default.

    Returns
    -------
    Config
        Not yet validated (call :meth:`Config.validate`).

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks.config import default_config
    >>> default_config("copy", "paper", seq_len=2000).seq_len
    2000
    """
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    values: dict[str, Any] = dict(_DEFAULTS[task])
    if preset is not None:
        if preset != "paper":
            raise ConfigError(f"--preset must be 'paper', got {preset!r}")
        values.update(PRESETS[task])
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    if "rank" not in given and values.get("rank", 1) != "full":
        # a default rank above a small hidden size: full rank
        values["rank"] = min(values.get("rank", 1), values.get("hidden", Config.hidden))
    return Config(task=task, **values)


def resolve_backend(name: str) -> tuple[ModuleType, Any]:
    """Array namespace and device of a backend name; :class:`ConfigError` if unusable.

    Parameters
    ----------
    name : {"numpy", "cupy", "torch"}
        The backend. CuPy needs a CUDA device; torch uses CUDA when present.

    Returns
    -------
    xp, device
        The namespace (through array-api-compat) and the device to use.

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks.config import resolve_backend
    >>> resolve_backend("numpy")[1]
    'cpu'
    """
    from array_api_compat import array_namespace

    if name == "numpy":
        return array_namespace(np.empty(0)), "cpu"
    if name == "cupy":
        try:
            import cupy
        except ImportError:
            raise ConfigError(
                "--backend cupy needs CuPy, which is not installed "
                "(pip install 'unitary_lowrank[cuda12x]' or '[cuda13x]')"
            ) from None
        try:
            cupy.zeros(1).sum().get()
        except Exception as exc:  # noqa: BLE001 - any CUDA failure means "no usable GPU"
            raise ConfigError(f"--backend cupy found no usable CUDA device: {exc}") from None
        return array_namespace(cupy.empty(0)), cupy.cuda.Device()
    if name == "torch":
        try:
            import torch
        except ImportError:
            raise ConfigError("--backend torch needs PyTorch, which is not installed") from None
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return array_namespace(torch.empty(0)), dev
    raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {name!r}")


def load_data(cfg: Config, *, progress: Any = None) -> Any:
    """The images of a pixels run (None for copy and adding).

    Parameters
    ----------
    cfg : Config
        Settings; its `dataset`, `data_dir`, `download`, `mirror`,
        `downsample`, `permute` and `seed` are used.
    progress : optional
        Passed to :func:`unitary_lowrank.cli.tasks.datasets.load_pixels` (the
        download's progress).

    Returns
    -------
    PixelData or None
        Train, validation and test sets.

    Raises
    ------
    unitary_lowrank.cli.tasks.datasets.DataError
        Missing or corrupt files, a `downsample` that does not divide the side.

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks.config import default_config, load_data
    >>> load_data(default_config("adding")) is None  # the synthetic tasks have no files
    True

    ``load_data(default_config("pixels"))`` gives scikit-learn's 8×8 digits,
    permuted: 64 pixels an image, 359 test images.
    """
    if cfg.task != "pixels":
        return None
    from .datasets import load_pixels

    return load_pixels(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download,
                       mirror=cfg.mirror, downsample=cfg.downsample, permute=cfg.permute,
                       seed=cfg.seed, progress=progress)
