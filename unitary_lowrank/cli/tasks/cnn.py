r"""``unitary-lowrank cnn``: a deep CNN of orthogonal convolutions (Fig. 5), and ResNet-9.

**Plain CNN** (``--arch plain``, Fig. 5 of the projUNN paper: depth 100, 32
channels, MNIST, 100 epochs). The image's ``c_in`` channels (1, or 3 for
CIFAR-10) are lifted to `channels` by zero padding (a fixed isometry), then
`depth` times an :class:`~unitary_lowrank.torch.OrthogonalConv2d` (a
Fourier-domain circular convolution with a full-size kernel, stride 1, exactly
orthogonal while its blocks stay unitary) and a nonlinearity, then a linear
read-out of the ``channels · H · W`` features to the 10 classes. The
nonlinearity is this project's choice: ``maxmin`` (the default; GroupSort of
channel pairs ``(c, c + C/2)``, which keeps the norm, so the whole feature
extractor is an isometry), ``modrelu`` (``sign(z)·relu(|z| + b)``, one bias per
channel) or ``relu`` (the paper's code uses ReLU in its ResNet-9; ReLU halves
the energy of a zero-mean signal at every layer, which matters at depth 100).

**ResNet-9** (``--arch resnet9``, the default for ``--dataset cifar10``): the
network of the paper's public code (``projunn/models.py``), widths ``c, 2c, 4c,
4c`` with ``c = --channels`` (64): a prep convolution ``3 → c``, a convolution
``c → 2c`` with max-pooling, a residual block of two ``2c → 2c``
convolutions, a convolution ``2c → 4c`` with max-pooling, a ``4c → 4c``
convolution, a residual block of two ``4c → 4c`` convolutions, adaptive
average pooling to 2×2 and a linear classifier, every convolution followed by
BatchNorm and ReLU. The five convolutions whose channels stay equal are
:class:`~unitary_lowrank.torch.OrthogonalConv2d` (orthogonal); the three that
change the number of channels are ordinary 3×3 ``nn.Conv2d`` (not
constrained), as are the BatchNorm affine maps, the poolings, the residual sums
and the classifier (the public code instead repeats channels into orthogonal
layers, which scales norms by √2 at each widening).

**Methods** (``--method``, comma separated: one run each, same initial weights
and data order): ``transport`` (projUNN-T) and ``project`` (projUNN-D) keep the
orthogonal convolutions orthogonal with :class:`~unitary_lowrank.torch.ProjUNN`
(rank `rank`, LSI sketch, RMSprop's direction as the paper's code, learning rate
``lr / lr_divider``); ``unconstrained`` trains exactly the same parameters
(the same Fourier-domain blocks, the same initialisation) with the same rule at
learning rate ``lr`` but without the retraction, so they leave the group — the
comparison of the paper's Fig. 5. Every other parameter takes the same rule
unconstrained at ``lr``.

Each epoch reports the running training loss and accuracy (over the epoch's
batches, as the paper's code does), the test loss and accuracy, the worst
``‖OᵀO − I‖₂`` of the orthogonal convolutions, and the gradient norms of the
first and last of them (vanishing or exploding gradients show there).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from types import SimpleNamespace
from typing import Any, TextIO, cast

import numpy as np

from unitary_lowrank.typing import Direction, Method, Rank, Sampler

from ._experiment import (
    ExperimentError,
    ExperimentInterrupted,
    Reporter,
    check_choice,
    check_plot_available,
    check_positive,
    common_arguments,
    import_torch,
)
from ._threads import blas_threads

__all__ = ["ARCHS", "DATASETS", "METHODS", "PRESETS", "Config", "build_model",
           "default_config", "format_summary", "load_data", "plot", "run"]

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")
ARCHS = ("plain", "resnet9")
#: ``--method``: the retraction of ProjUNN (None: no constraint).
METHODS = {"transport": "exp", "project": "polar", "unconstrained": None}
NONLINEARITIES = ("maxmin", "modrelu", "relu")
INITS = ("haar", "identity")
DIRECTIONS = ("rmsprop", "adam", "gradient")
SAMPLERS = ("lsi", "randomized", "column")
N_CLASSES = 10

#: What the paper reports (percent): Fig. 5 (plain CNN of depth 100 on MNIST, 100 epochs)
#: and Sect. 5 (ResNet-9 on CIFAR-10).
PAPER_RESULTS = {
    "plain": {"dataset": "mnist", "depth": 100, "epochs": 100,
              "transport": {"train_accuracy": 95.7, "test_accuracy": 94.6},
              "unconstrained": {"train_accuracy": 92.7, "test_accuracy": 23.5}},
    "resnet9": {"dataset": "cifar10", "epochs": 90,
                "project": {"test_accuracy": 82.06},
                "transport": {"test_accuracy": 80.75}},
}

#: ``--preset paper``: Fig. 5 (``--dataset mnist``, the default of the preset) or the public
#: code's ResNet-9 settings (``--dataset cifar10``: ``convolutional_experiment.py``).
PRESETS = {
    "plain": {"dataset": "mnist", "arch": "plain", "depth": 100, "channels": 32,
              "methods": ("transport", "unconstrained"), "rank": 1, "sampler": "lsi",
              "direction": "rmsprop", "lr": 1e-3, "lr_divider": 1.0, "batch": 128,
              "epochs": 100},
    "cifar10": {"dataset": "cifar10", "arch": "resnet9", "channels": 64,
                "methods": ("project",), "rank": 1, "sampler": "lsi", "direction": "rmsprop",
                "lr": 1e-3, "lr_divider": 10.0, "batch": 256, "epochs": 90, "augment": True},
}


@dataclasses.dataclass
class Config:
    """Settings of a ``cnn`` run (see the module docstring and ``unitary-lowrank cnn --help``).

    Attributes
    ----------
    dataset : {"digits", "mnist", "fashion-mnist", "cifar10"}
        The images: scikit-learn's 8×8 digits (no files), the 28×28 IDX files of
        MNIST or Fashion-MNIST, or the CIFAR-10 python archive.
    arch : {"plain", "resnet9"} or None
        The network; None: ``resnet9`` for CIFAR-10, else ``plain``.
    depth : int
        Orthogonal convolutions of the plain CNN.
    channels : int or None
        Channels of the plain CNN (default 32), or the first width of ResNet-9
        (default 64).
    nonlinearity : {"maxmin", "modrelu", "relu"}
        Of the plain CNN (ResNet-9 uses BatchNorm and ReLU).
    init : {"haar", "identity"}
        Initial orthogonal convolutions: Haar-random blocks (the paper's code)
        or the identity (its ``init_as_id``; a deep plain CNN then starts as
        its first nonlinearity).
    methods : tuple of str
        One run each, among :data:`METHODS`.
    rank : int or "full"
        Rank of ProjUNN's step.
    sampler, direction : str
        ProjUNN's sketch and direction.
    lr, lr_divider : float
        Learning rate of everything, divided by `lr_divider` for the orthogonal
        convolutions under ``transport`` and ``project``.
    batch, epochs : int
        Minibatch size and epochs.
    train_size : int or None
        Use only the first `train_size` training images (after a fixed
        shuffle); None: all.
    downsample : int
        Digits, MNIST, Fashion-MNIST: average ``d × d`` blocks of pixels (2 gives
        14×14 MNIST images, a quarter of the cost of a convolution); 1: none.
    test_batch : int
        Images per evaluation minibatch.
    augment : bool
        CIFAR-10: random 32×32 crops of the image padded by 4 (reflection) and
        horizontal flips (the preset's).
    max_steps : int or None
        Stop each run after this many steps (for quick checks).
    data_dir, download
        Where the data files are, and whether MNIST may be downloaded.
    seed, threads, dtype
        Seed of the initialisation, data order and sketches; torch threads;
        ``float32`` or ``float64``.
    device : {"auto", "cpu", "cuda"}
        Where the network trains (``"auto"``: a CUDA GPU when torch sees one).
        The images stay on the host; each batch is moved there. The initial
        weights are drawn on the host, so a seed gives the same start anywhere.
    preset : str or None
        Reported only.
    """

    dataset: str = "digits"
    arch: str | None = None
    depth: int = 8
    channels: int | None = None
    nonlinearity: str = "maxmin"
    init: str = "haar"
    methods: tuple[str, ...] = ("transport", "unconstrained")
    rank: int | str = 1
    sampler: str = "lsi"
    direction: str = "rmsprop"
    lr: float = 1e-3
    lr_divider: float = 1.0
    batch: int = 64
    epochs: int = 20
    train_size: int | None = None
    downsample: int = 1
    test_batch: int = 500
    augment: bool = False
    max_steps: int | None = None
    data_dir: str | None = None
    download: bool = False
    seed: int = 0
    threads: int | None = 1
    dtype: str = "float32"
    device: str = "auto"
    preset: str | None = None

    def resolve(self) -> None:
        """Fill in the defaults that depend on other settings (`arch`, `channels`, `device`)."""
        if self.device == "auto":
            self.device = "cuda" if _cuda_available() else "cpu"
        if self.arch is None:
            self.arch = "resnet9" if self.dataset == "cifar10" else "plain"
        if self.channels is None:
            self.channels = 64 if self.arch == "resnet9" else 32

    def validate(self) -> None:
        """Raise :class:`ExperimentError` naming the first setting that cannot work."""
        self.resolve()
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("arch", self.arch, ARCHS)
        check_choice("nonlinearity", self.nonlinearity, NONLINEARITIES)
        check_choice("init", self.init, INITS)
        check_choice("sampler", self.sampler, SAMPLERS)
        check_choice("direction", self.direction, DIRECTIONS)
        check_choice("dtype", self.dtype, ("float32", "float64"))
        check_choice("device", self.device, ("cpu", "cuda"))
        if self.device == "cuda" and not _cuda_available():
            raise ExperimentError("--device cuda: torch sees no CUDA GPU here")
        if not self.methods:
            raise ExperimentError("--method must name at least one method")
        for m in self.methods:
            check_choice("method", m, METHODS)
        for name in ("depth", "channels", "batch", "epochs", "test_batch"):
            check_positive(name, getattr(self, name))
        check_positive("downsample", self.downsample)
        if self.dataset == "cifar10" and self.downsample != 1:
            raise ExperimentError("--downsample is for digits, mnist and fashion-mnist")
        for name in ("train_size", "max_steps", "threads"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))
        check_positive("seed", self.seed, least=0)
        check_positive("lr", self.lr, integer=False, least=0)
        check_positive("lr_divider", self.lr_divider, integer=False, least=0)
        channels = cast(int, self.channels)  # resolved from the preset before the checks
        if self.arch == "plain" and self.nonlinearity == "maxmin" and channels % 2:
            raise ExperimentError(f"--channels must be even for --nonlinearity maxmin (it "
                                  f"sorts pairs of channels), got {channels}")
        smallest = channels if self.arch == "plain" else 2 * channels
        if self.rank != "full":
            check_positive("rank", self.rank)
            if cast(int, self.rank) > smallest:
                raise ExperimentError(f"--rank must be at most the channels of the orthogonal "
                                      f"convolutions ({smallest}), got {self.rank}")
        in_channels = 3 if self.dataset == "cifar10" else 1
        if self.arch == "plain" and channels < in_channels:
            raise ExperimentError(f"--channels must be at least the {in_channels} channel(s) "
                                  f"of the images, got {self.channels}")
        if self.arch == "resnet9" and self.dataset != "cifar10":
            raise ExperimentError("--arch resnet9 is for --dataset cifar10 (32×32 images that "
                                  "it pools twice); use --arch plain")
        if self.augment and self.dataset != "cifar10":
            raise ExperimentError("--augment is for --dataset cifar10")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def default_config(preset: str | None = None, **overrides: Any) -> Config:
    """The defaults, then the preset, then `overrides` (None values ignored).

    Parameters
    ----------
    preset : {None, "paper"}
        ``"paper"``: Fig. 5's plain CNN of depth 100 on MNIST, or with
        ``dataset="cifar10"`` the public code's ResNet-9 settings
        (:data:`PRESETS`).
    **overrides
        Any :class:`Config` field.

    Returns
    -------
    Config
        Resolved and validated.

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks.cnn import default_config
    >>> c = default_config("paper", dataset="cifar10")
    >>> c.arch, c.channels, c.methods, c.lr / c.lr_divider, c.batch, c.epochs, c.augment
    ('resnet9', 64, ('project',), 0.0001, 256, 90, True)
    >>> default_config("paper").depth
    100
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    values: dict[str, Any] = {}
    if preset is not None:
        if preset != "paper":
            raise ExperimentError(f"--preset must be 'paper', got {preset!r}")
        values.update(PRESETS["cifar10" if given.get("dataset") == "cifar10" else "plain"])
    values.update(given)
    if "methods" in values:
        values["methods"] = tuple(values["methods"])
    cfg = Config(preset=preset, **values)
    cfg.validate()
    return cfg


# ----------------------------------------------------------------------------- data
@dataclasses.dataclass
class ImageData:
    """Images as float tensors ``(N, C, H, W)`` and int64 labels, on the host."""

    train_x: Any
    train_y: Any
    test_x: Any
    test_y: Any
    name: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of an image."""
        return tuple(self.train_x.shape[1:])


def load_data(cfg: Config, *, quiet: bool = False) -> ImageData:
    """The images of `cfg.dataset`, as torch tensors.

    Digits, MNIST and Fashion-MNIST come through
    :func:`~unitary_lowrank.cli.tasks.datasets.load_pixels` (no permutation, no
    validation split; pixels in [0, 1]); CIFAR-10 through
    :func:`~unitary_lowrank.cli.tasks.cifar.load_cifar10`, normalised by the
    per-channel mean and deviation of the paper's code.

    Raises
    ------
    unitary_lowrank.cli.tasks.datasets.DataError
        Missing or corrupt files (one line, with where to put them).
    """
    torch = import_torch()
    dtype = getattr(torch, cfg.dtype)
    if cfg.dataset == "cifar10":
        from .cifar import MEAN, STD, load_cifar10

        c = load_cifar10(cfg.data_dir)
        mean = torch.tensor(MEAN, dtype=dtype)[:, None, None]
        std = torch.tensor(STD, dtype=dtype)[:, None, None]

        def norm(x: np.ndarray) -> Any:
            return (torch.from_numpy(x).to(dtype) / 255 - mean) / std

        train_x, train_y, test_x, test_y = norm(c.train_x), c.train_y, norm(c.test_x), c.test_y
    else:
        from .datasets import load_pixels

        px = load_pixels(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download,
                         downsample=cfg.downsample, permute=False, val_fraction=0.0, seed=0,
                         progress=False if quiet else None)
        side = px.side

        def images(x: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(x)).to(dtype).reshape(-1, 1, side, side)

        train_x, train_y, test_x, test_y = (images(px.train_x), px.train_y,
                                            images(px.test_x), px.test_y)
    train_y = torch.as_tensor(np.asarray(train_y), dtype=torch.int64)
    test_y = torch.as_tensor(np.asarray(test_y), dtype=torch.int64)
    if cfg.train_size is not None and cfg.train_size < len(train_y):
        keep = torch.from_numpy(np.random.default_rng(12345).permutation(len(train_y))
                                [:cfg.train_size])
        train_x, train_y = train_x[keep], train_y[keep]
    return ImageData(train_x, train_y, test_x, test_y, cfg.dataset)


def augment(x: Any, gen: Any) -> Any:
    """Random 32×32 (the image's size) crops of `x` padded by 4 by reflection, and flips.

    Parameters
    ----------
    x : torch.Tensor, shape (N, C, H, W)
        A batch.
    gen : torch.Generator
        Randomness.

    Returns
    -------
    torch.Tensor
        The augmented batch, same shape.
    """
    torch = import_torch()
    F = torch.nn.functional
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dy = torch.randint(0, 9, (n,), generator=gen)
    dx = torch.randint(0, 9, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
    idx_n = torch.arange(n)[:, None, None, None]
    idx_c = torch.arange(x.shape[1])[None, :, None, None]
    out = padded[idx_n, idx_c, rows, cols]
    flip = torch.rand(n, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


# --------------------------------------------------------------------------- models
@functools.lru_cache(maxsize=1)
def _layers() -> SimpleNamespace:
    """The torch modules of the networks (built on first use: torch is imported lazily)."""
    torch = import_torch()
    from torch import nn

    from unitary_lowrank.torch import OrthogonalConv2d

    class Lift(nn.Module):
        """Zero channels appended: ``c_in → channels``, an isometry."""

        def __init__(self, channels: int):
            super().__init__()
            self.channels = channels

        def forward(self, x: Any) -> Any:
            return nn.functional.pad(x, (0, 0, 0, 0, 0, self.channels - x.shape[1]))

    class MaxMin(nn.Module):
        """Sort each channel pair ``(c, c + C/2)``: norm-preserving (GroupSort of 2)."""

        def forward(self, x: Any) -> Any:
            a, b = x.chunk(2, dim=1)
            return torch.cat([torch.maximum(a, b), torch.minimum(a, b)], dim=1)

    class ChannelModReLU(nn.Module):
        """``sign(z)·relu(|z| + b)``, one bias per channel (U(−0.01, 0.01), as expRNN)."""

        def __init__(self, channels: int, dtype: Any):
            super().__init__()
            self.bias = nn.Parameter(torch.empty(channels, dtype=dtype).uniform_(-0.01, 0.01))

        def forward(self, x: Any) -> Any:
            return torch.sign(x) * torch.relu(x.abs() + self.bias[:, None, None])

    class PlainCNN(nn.Module):
        """Lift, ``depth × (OrthogonalConv2d, nonlinearity)``, linear read-out."""

        def __init__(self, in_shape: tuple[int, int, int], channels: int, depth: int,
                     nonlinearity: str, dtype: Any, init: str = "haar"):
            super().__init__()
            _, h, w = in_shape
            self.lift = Lift(channels)
            self.convs = nn.ModuleList(OrthogonalConv2d(channels, image_size=(h, w), dtype=dtype,
                                                        init=cast(Any, init))
                                       for _ in range(depth))
            self.acts = nn.ModuleList(
                MaxMin() if nonlinearity == "maxmin" else
                ChannelModReLU(channels, dtype) if nonlinearity == "modrelu" else nn.ReLU()
                for _ in range(depth))
            self.readout = nn.Linear(channels * h * w, N_CLASSES, dtype=dtype)

        def features(self, x: Any) -> Any:
            h = self.lift(x)
            for conv, act in zip(self.convs, self.acts, strict=True):
                h = act(conv(h))
            return h

        def forward(self, x: Any) -> Any:
            return self.readout(self.features(x).flatten(1))

    def block(c_in: int, c_out: int, side: int, dtype: Any, pool: bool = False,
              init: str = "haar") -> Any:
        conv = (OrthogonalConv2d(c_in, image_size=side, dtype=dtype, init=cast(Any, init))
                if c_in == c_out
                else
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False, dtype=dtype))
        layers: list[nn.Module] = [conv, nn.BatchNorm2d(c_out, dtype=dtype), nn.ReLU()]
        if pool:
            layers.append(nn.MaxPool2d(2))
        return nn.Sequential(*layers)

    class ResNet9(nn.Module):
        """The public code's ResNet-9 (widths c, 2c, 4c, 4c); equal-channel convs orthogonal."""

        def __init__(self, in_shape: tuple[int, int, int], c: int, dtype: Any,
                     init: str = "haar"):
            super().__init__()
            cin, side, _ = in_shape
            self.conv1 = block(cin, c, side, dtype)
            self.conv2 = block(c, 2 * c, side, dtype, pool=True)
            self.res1 = nn.Sequential(block(2 * c, 2 * c, side // 2, dtype, init=init),
                                      block(2 * c, 2 * c, side // 2, dtype, init=init))
            self.conv3 = block(2 * c, 4 * c, side // 2, dtype, pool=True)
            self.conv4 = block(4 * c, 4 * c, side // 4, dtype, init=init)
            self.res2 = nn.Sequential(block(4 * c, 4 * c, side // 4, dtype, init=init),
                                      block(4 * c, 4 * c, side // 4, dtype, init=init))
            self.pool = nn.AdaptiveAvgPool2d((2, 2))
            self.classifier = nn.Linear(16 * c, N_CLASSES, dtype=dtype)

        def forward(self, x: Any) -> Any:
            out = self.conv2(self.conv1(x))
            out = self.res1(out) + out
            out = self.conv4(self.conv3(out))
            out = self.res2(out) + out
            return self.classifier(self.pool(out).flatten(1))

    return SimpleNamespace(Lift=Lift, MaxMin=MaxMin, ChannelModReLU=ChannelModReLU,
                           PlainCNN=PlainCNN, ResNet9=ResNet9, OrthogonalConv2d=OrthogonalConv2d)


def build_model(cfg: Config, in_shape: tuple[int, int, int]) -> Any:
    """The network of `cfg` for images of shape `in_shape` ``(C, H, W)`` (torch's global RNG).

    Examples
    --------
    >>> import torch
    >>> from unitary_lowrank.cli.tasks.cnn import build_model, default_config
    >>> _ = torch.manual_seed(0)
    >>> net = build_model(default_config(depth=3, channels=4), (1, 8, 8))
    >>> x = torch.randn(2, 1, 8, 8)
    >>> net(x).shape, bool(torch.isclose(net.features(x).norm(), x.norm()))  # an isometry
    (torch.Size([2, 10]), True)
    """
    cfg.resolve()
    torch = import_torch()
    L = _layers()
    dtype = getattr(torch, cfg.dtype)
    if cfg.arch == "resnet9":
        return L.ResNet9(in_shape, cfg.channels, dtype, cfg.init)
    return L.PlainCNN(in_shape, cfg.channels, cfg.depth, cfg.nonlinearity, dtype, cfg.init)


def orthogonal_convs(model: Any) -> list[Any]:
    """The model's :class:`~unitary_lowrank.torch.OrthogonalConv2d` layers, in order."""
    cls = _layers().OrthogonalConv2d
    return [m for m in model.modules() if isinstance(m, cls)]


def _optimizer(cfg: Config, method: str, model: Any) -> Any:
    from unitary_lowrank.torch import ProjUNN, param_groups

    groups = param_groups(model)
    for g in groups:
        if method == "unconstrained":
            g["constrained"] = False
        elif g["constrained"]:
            g["lr"] = cfg.lr / cfg.lr_divider
    # the settings are checked against the registry by Config.validate
    return ProjUNN(groups, lr=cfg.lr, method=cast(Method, METHODS[method] or "exp"),
                   rank=cast(Rank, cfg.rank), sampler=cast(Sampler, cfg.sampler),
                   direction=cast(Direction, cfg.direction), generator=cfg.seed)


def _grad_norm(conv: Any) -> float | None:
    total, seen = 0.0, False
    for p in (conv.weight_real, conv.weight_complex):
        if p is not None and p.grad is not None:
            total += float(p.grad.abs().square().sum())
            seen = True
    return math.sqrt(total) if seen else None


def _orthogonality(convs: list[Any]) -> float | None:
    return max((c.orthogonality_error() for c in convs), default=None)


# -------------------------------------------------------------------------- the run
def run(cfg: Config, *, stream: TextIO | None = None, quiet: bool = False, bar: bool = True,
        prepared: ImageData | None = None) -> dict[str, Any]:
    """Train the network once per method of `cfg` and return the summary.

    Parameters
    ----------
    cfg : Config
        Settings.
    stream : file, optional
        Where the progress goes; default ``sys.stderr``.
    quiet : bool, default: False
        Print nothing.
    bar : bool, default: True
        A progress bar when `stream` is a terminal (else one line per epoch).
    prepared : ImageData, optional
        The images (:func:`load_data`); loaded here when None.

    Returns
    -------
    dict
        Every resolved setting, ``paper`` (what the paper reports for this
        figure), the data sizes, ``runs`` (one per method: ``history`` per
        epoch, ``train_accuracy``, ``test_accuracy``, ``orthogonality_error``,
        ``seconds_per_step``…), ``iterations`` (steps over all runs),
        ``wall_seconds`` and ``stop_reason`` (``"done"``, or ``"diverged"``
        when a run's loss stopped being finite or ProjUNN refused its step — a
        gradient that is not finite, or whose square overflows: that run stops
        with ``diverged_at`` and ``diverged_because``, the state before the
        failed step is tested, and the other methods still run).

    Raises
    ------
    ExperimentInterrupted
        On Ctrl-C, carrying the summary so far (``stop_reason``
        ``"interrupted"``; the state reached is evaluated on the test set
        unless a second Ctrl-C comes first).
    """
    cfg.validate()
    torch = import_torch()
    data = load_data(cfg, quiet=quiet) if prepared is None else prepared
    n_train = len(data.train_y)
    per_epoch = max(1, n_train // cfg.batch)  # drop the last partial batch, as the paper's code
    per_run = per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        per_run = min(per_run, cfg.max_steps)
    report = Reporter(stream, per_run * len(cfg.methods), quiet=quiet, bar=bar)
    runs: list[dict[str, Any]] = []
    reason = "done"
    t0 = time.perf_counter()
    with blas_threads(cfg.threads):
        try:
            for i, method in enumerate(cfg.methods):
                record: dict[str, Any] = {"method": method, "history": [], "steps_done": 0}
                runs.append(record)
                if not _one_method(cfg, method, data, per_epoch, per_run, record, report,
                                   i * per_run, torch):
                    reason = "diverged"
        except KeyboardInterrupt:
            reason = "interrupted"
            report.say("interrupted: evaluating the state reached (Ctrl-C again to skip)")
            try:
                if runs and runs[-1].get("model") is not None:
                    _final(runs[-1], data, cfg, torch)
            except KeyboardInterrupt:
                pass
    report.close()
    summary = _summary(cfg, data, runs, time.perf_counter() - t0, reason)
    if reason == "interrupted":
        raise ExperimentInterrupted(summary)
    return summary


def _evaluate(model: Any, x: Any, y: Any, size: int, torch: Any) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` (in eval mode) on `x`, `y`."""
    model.eval()
    device = next(model.parameters()).device
    total, hits = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(y), size):
            xb, yb = x[s:s + size].to(device), y[s:s + size].to(device)
            out = model(xb)
            total += float(torch.nn.functional.cross_entropy(out, yb, reduction="sum"))
            hits += int((out.argmax(1) == yb).sum())
    model.train()
    return total / max(len(y), 1), hits / max(len(y), 1)


def _one_method(cfg: Config, method: str, data: ImageData, per_epoch: int, per_run: int,
                record: dict[str, Any], report: Reporter, offset: int, torch: Any) -> bool:
    """Train one method, recording into `record` as it goes; False if it diverged."""
    torch.manual_seed(cfg.seed)  # the same initial weights for every method (drawn on the host)
    model = build_model(cfg, data.shape).to(cfg.device)
    record["model"] = model
    convs = orthogonal_convs(model)
    opt = _optimizer(cfg, method, model)
    gen = torch.Generator().manual_seed(cfg.seed)  # the same data order for every method
    loss_fn = torch.nn.functional.cross_entropy
    test_loss, test_acc = _evaluate(model, data.test_x, data.test_y, cfg.test_batch, torch)
    record["history"].append({"epoch": 0, "step": 0, "train_loss": None, "train_accuracy": None,
                              "test_loss": test_loss, "test_accuracy": test_acc,
                              "orthogonality_error": _orthogonality(convs),
                              "grad_norm_first": None, "grad_norm_last": None, "seconds": 0.0})
    report.say(f"{method:>13}  epoch {0:>3}  test loss {test_loss:.4g}  test accuracy "
               f"{100 * test_acc:.2f}%")
    step, running = 0, None
    t_start = time.perf_counter()
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(len(data.train_y), generator=gen)
        seen = hits = 0
        loss_sum = 0.0
        for b in range(per_epoch):
            if step >= per_run:
                break
            idx = order[b * cfg.batch:(b + 1) * cfg.batch]
            x, y = data.train_x[idx], data.train_y[idx]
            if cfg.augment:
                x = augment(x, gen)
            x, y = x.to(cfg.device, non_blocking=True), y.to(cfg.device, non_blocking=True)
            out = model(x)
            loss = loss_fn(out, y)
            value = loss.item()
            why = None if math.isfinite(value) else f"the training loss is {value}"
            if why is None:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                try:
                    opt.step()
                except ValueError as exc:  # a gradient that is not finite or overflows |G|²
                    why = f"the step was refused ({' '.join(str(exc).split())})"
            if why is not None:  # the weights are those before this step
                report.say(f"{method:>13}  step {step + 1}: {why}: stopping (diverged)")
                record["diverged_at"] = step + 1
                record["diverged_because"] = why
                _final(record, data, cfg, torch)
                return False
            step += 1
            record["steps_done"] = step
            record["seconds"] = time.perf_counter() - t_start
            seen += len(y)
            hits += int((out.argmax(1) == y).sum())
            loss_sum += value * len(y)
            running = value if running is None else 0.9 * running + 0.1 * value
            if report.enabled and step % 10 == 0:
                report.update(offset + step, running, running / math.log(N_CLASSES),
                              _orthogonality(convs) or 0.0)
        test_loss, test_acc = _evaluate(model, data.test_x, data.test_y, cfg.test_batch, torch)
        h = {"epoch": epoch, "step": step,
             "train_loss": loss_sum / seen if seen else None,
             "train_accuracy": hits / seen if seen else None,
             "test_loss": test_loss, "test_accuracy": test_acc,
             "orthogonality_error": _orthogonality(convs),
             "grad_norm_first": _grad_norm(convs[0]) if convs else None,
             "grad_norm_last": _grad_norm(convs[-1]) if convs else None,
             "seconds": time.perf_counter() - t_start}
        record["history"].append(h)
        train_acc = "-" if h["train_accuracy"] is None else f"{100 * h['train_accuracy']:.2f}%"
        report.say(f"{method:>13}  epoch {epoch:>3}  train loss {h['train_loss'] or math.nan:.4g}"
                   f"  train accuracy {train_acc}  test accuracy {100 * test_acc:.2f}%  "
                   f"‖OᵀO−I‖ {h['orthogonality_error'] or 0:.1e}  {report.elapsed():.0f}s")
        if step >= per_run:
            break
    _final(record, data, cfg, torch)
    return True


def _final(record: dict[str, Any], data: ImageData, cfg: Config, torch: Any) -> None:
    """The figures of the state a run ended in (test set evaluated if the last epoch was cut)."""
    model = record.get("model")
    hist = record["history"]
    last = hist[-1] if hist else None
    if model is not None and (last is None or last["step"] != record["steps_done"]):
        test_loss, test_acc = _evaluate(model, data.test_x, data.test_y, cfg.test_batch, torch)
        last = {"epoch": None, "step": record["steps_done"], "train_loss": None,
                "train_accuracy": None, "test_loss": test_loss, "test_accuracy": test_acc,
                "orthogonality_error": _orthogonality(orthogonal_convs(model)),
                "grad_norm_first": None, "grad_norm_last": None,
                "seconds": record.get("seconds", 0.0)}
        hist.append(last)
    record["final"] = last


def _summary(cfg: Config, data: ImageData, runs: list[dict[str, Any]], wall: float,
             reason: str) -> dict[str, Any]:
    out = []
    for r in runs:
        model = r.pop("model", None)
        final = r.get("final") or (r["history"][-1] if r["history"] else {})
        trained = [h for h in r["history"] if h.get("train_accuracy") is not None]
        out.append({
            "method": r["method"],
            "retraction": METHODS[r["method"]],
            "steps_done": r["steps_done"],
            "epochs_done": max((h["epoch"] or 0 for h in r["history"]), default=0),
            "train_accuracy": trained[-1]["train_accuracy"] if trained else None,
            "test_accuracy": final.get("test_accuracy"),
            "test_loss": final.get("test_loss"),
            "orthogonality_error": final.get("orthogonality_error"),
            "diverged_at": r.get("diverged_at"),
            "diverged_because": r.get("diverged_because"),
            "parameters": None if model is None else int(sum(p.numel()
                                                             for p in model.parameters())),
            "seconds_per_step": (r["seconds"] / r["steps_done"]) if r["steps_done"] else None,
            "history": r["history"],
        })
    settings = dataclasses.asdict(cfg)
    settings["methods"] = list(cfg.methods)
    paper = PAPER_RESULTS[cast(str, cfg.arch)]
    return {
        "experiment": "cnn",
        "figure": "Fig. 5" if cfg.arch == "plain" else "Sect. 5, CIFAR-10 ResNet-9",
        **settings,
        "image_shape": list(data.shape),
        "train_size": int(len(data.train_y)),
        "test_size": int(len(data.test_y)),
        "paper": paper,
        "iterations": sum(r["steps_done"] for r in out),
        "wall_seconds": wall,
        "stop_reason": reason,
        "runs": out,
    }


# ----------------------------------------------------------------------- reporting
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def format_summary(s: dict[str, Any]) -> str:
    """The lines printed at the end of a ``cnn`` run.

    Parameters
    ----------
    s : dict
        A summary from :func:`run`.

    Returns
    -------
    str
    """
    c, h, w = s["image_shape"]
    if s["arch"] == "plain":
        net = (f"plain CNN, {s['depth']} orthogonal convolutions of {s['channels']} channels "
               f"({s['init']} init; input lifted by zero padding), {s['nonlinearity']}, linear "
               "read-out")
    else:
        net = (f"ResNet-9 (widths {s['channels']}, {2 * s['channels']}, {4 * s['channels']}, "
               f"{4 * s['channels']}; the 5 equal-channel convolutions orthogonal)")
    stop = {"interrupted": "  (stopped: interrupted)", "diverged": "  (stopped: DIVERGED)"}.get(
        s["stop_reason"], "")
    lines = [
        f"cnn ({s['figure']}): {s['dataset']} {h}×{w}×{c}, {s['train_size']} training and "
        f"{s['test_size']} test images, seed {s['seed']}",
        f"  network         {net}",
        f"  training        {s['epochs']} epochs of batches of {s['batch']}, ProjUNN rank "
        f"{s['rank']} ({s['sampler']}), {s['direction']} direction, lr {s['lr']:g} "
        f"(orthogonal convolutions: lr / {s['lr_divider']:g})"
        + (", augmented" if s["augment"] else ""),
        f"  wall time       {s['wall_seconds']:.1f} s on {s['device']}{stop}",
        "  method          epochs   train acc   test acc   ‖OᵀO − I‖₂   ms/step",
    ]
    for r in s["runs"]:
        ue = "-" if r["orthogonality_error"] is None else f"{r['orthogonality_error']:.1e}"
        ms = "-" if r["seconds_per_step"] is None else f"{1e3 * r['seconds_per_step']:.1f}"
        lines.append(f"  {r['method']:<14} {r['epochs_done']:>7}   {_pct(r['train_accuracy']):>9}"
                     f"   {_pct(r['test_accuracy']):>8}   {ue:>10}   {ms:>7}"
                     + ("" if r.get("diverged_at") is None
                        else f"   DIVERGED at step {r['diverged_at']}"))
    paper = s["paper"]
    ref = [f"{m} {v.get('train_accuracy', '-')}/{v['test_accuracy']} %"
           if "train_accuracy" in v else f"{m} {v['test_accuracy']} %"
           for m, v in paper.items() if isinstance(v, dict)]
    where = (f"depth {paper['depth']}, {paper['dataset']}, {paper['epochs']} epochs"
             if "depth" in paper else f"{paper['dataset']}, {paper['epochs']} epochs")
    lines.append(f"  the paper       ({where}; train/test) " + ", ".join(ref))
    return "\n".join(lines)


def plot(s: dict[str, Any], path: str) -> None:
    """PNG: train (solid) and test (dashed) accuracy per epoch, and ``‖OᵀO − I‖₂``, per method.

    Parameters
    ----------
    s : dict
        A summary from :func:`run`.
    path : str
        Output file.
    """
    check_plot_available()
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 6.0), dpi=110)
    ax_acc, ax_u = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    per_epoch = max(1, s["train_size"] // s["batch"])
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]

    def pts(hist: list[dict[str, Any]], key: str, scale: float = 1.0
            ) -> list[tuple[float, float]]:
        # x: the epoch, fractional for a run that stopped within one
        return [(h["step"] / per_epoch, scale * h[key]) for h in hist
                if h.get(key) is not None and (scale != 1.0 or h[key] > 0)]

    for i, r in enumerate(s["runs"]):
        color = colors[i % len(colors)]
        tr = pts(r["history"], "train_accuracy", 100.0)
        te = pts(r["history"], "test_accuracy", 100.0)
        ue = pts(r["history"], "orthogonality_error")
        if tr:
            ax_acc.plot(*zip(*tr, strict=True), marker=".", color=color,
                        label=f"{r['method']} train")
        if te:
            ax_acc.plot(*zip(*te, strict=True), marker=".", ls="--", color=color,
                        label=f"{r['method']} test")
        if ue:
            ax_u.plot(*zip(*ue, strict=True), marker=".", color=color, label=r["method"])
        if r.get("diverged_at") is not None and te:
            ax_acc.plot([te[-1][0]], [te[-1][1]], marker="X", ms=10, color=color, mec="k",
                        ls="none", label=f"{r['method']} diverged (step {r['diverged_at']})")
            if ue:
                ax_u.plot([ue[-1][0]], [ue[-1][1]], marker="X", ms=10, color=color, mec="k",
                          ls="none")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.grid(True, alpha=0.3)
    ax_acc.legend(fontsize="small")
    ax_u.set_yscale("log")
    ax_u.set_ylabel("worst ‖OᵀO − I‖₂")
    ax_u.set_xlabel("epoch")
    ax_u.grid(True, which="both", alpha=0.3)
    c, h, w = s["image_shape"]
    net = (f"plain CNN, depth {s['depth']}, {s['channels']} channels, {s['nonlinearity']}, "
           f"{s['init']} init" if s["arch"] == "plain" else f"ResNet-9, width {s['channels']}")
    fig.suptitle(f"{s['dataset']} {h}×{w}: {net}; seed {s['seed']}", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, format="png")


# ----------------------------------------------------------------- command line
def _methods(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def add_arguments(p: Any, types: Any) -> None:
    """The options of ``unitary-lowrank cnn`` (`types`: the parser's value checkers)."""
    d = Config()
    p.add_argument("--preset", choices=["paper"],
                   help="the paper's settings (meant for a GPU): Fig. 5, a plain CNN of depth "
                        "100, 32 channels, MNIST, batch 128, lr 1e-3, 100 epochs, transport "
                        "against unconstrained; with --dataset cifar10 the public code's "
                        "ResNet-9 (lr 1e-3, divider 10, batch 256, RMSprop, LSI rank 1, "
                        "projUNN-D, 90 epochs, crops and flips). Explicit options override it")
    p.add_argument("--dataset", choices=DATASETS,
                   help="digits: scikit-learn's 8x8 digits (no files); mnist, fashion-mnist: "
                        "the IDX files of --data-dir; cifar10: cifar-10-python.tar.gz in "
                        f"--data-dir; default: {d.dataset} (--preset paper: mnist)")
    p.add_argument("--data-dir", metavar="DIR", help="folder of the data files")
    p.add_argument("--download", action="store_true",
                   help="mnist, fashion-mnist: fetch missing IDX files (SHA-256 checked)")
    p.add_argument("--arch", choices=ARCHS,
                   help="plain CNN or ResNet-9; default: resnet9 for cifar10, else plain")
    p.add_argument("--depth", type=types.positive_int,
                   help=f"orthogonal convolutions of the plain CNN; default: {d.depth}")
    p.add_argument("--channels", type=types.positive_int,
                   help="channels of the plain CNN (default 32) or first width of ResNet-9 "
                        "(default 64)")
    p.add_argument("--nonlinearity", choices=NONLINEARITIES,
                   help="of the plain CNN: maxmin (sorts channel pairs, norm-preserving), "
                        f"modrelu, relu; default: {d.nonlinearity}")
    p.add_argument("--init", choices=INITS,
                   help="initial orthogonal convolutions: haar (random, the paper's code) or "
                        f"identity; default: {d.init}")
    p.add_argument("--method", dest="methods", type=_methods,
                   help="comma separated, one run each: transport (projUNN-T), project "
                        "(projUNN-D), unconstrained (the same blocks without the retraction); "
                        "default: " + ",".join(d.methods))
    p.add_argument("--rank", type=lambda t: "full" if t.strip().lower() == "full"
                   else types.positive_int(t), help=f"rank of ProjUNN's step, or full; "
                                                    f"default: {d.rank}")
    p.add_argument("--sampler", choices=SAMPLERS, help=f"default: {d.sampler}")
    p.add_argument("--direction", choices=DIRECTIONS,
                   help=f"ProjUNN's direction (the paper's code: rmsprop); default: "
                        f"{d.direction}")
    p.add_argument("--lr", type=types.positive_float, help=f"default: {d.lr:g}")
    p.add_argument("--lr-divider", type=types.positive_float,
                   help="the orthogonal convolutions step at lr / divider; default: "
                        f"{d.lr_divider:g}")
    p.add_argument("--batch", type=types.positive_int, help=f"default: {d.batch}")
    p.add_argument("--epochs", type=types.positive_int, help=f"default: {d.epochs}")
    p.add_argument("--train-size", type=types.positive_int,
                   help="use this many training images (a fixed subset); default: all")
    p.add_argument("--downsample", type=types.positive_int,
                   help="digits, mnist, fashion-mnist: average s x s blocks of pixels (must "
                        "divide the side: 2 gives 14x14 MNIST); default: 1")
    p.add_argument("--test-batch", type=types.positive_int,
                   help=f"images per evaluation batch; default: {d.test_batch}")
    p.add_argument("--augment", action=argparse_bool(), default=None,
                   help="cifar10: random crops (reflect padding 4) and flips; default: off "
                        "(--preset paper: on)")
    p.add_argument("--max-steps", type=types.positive_int,
                   help="stop each run after this many steps (quick checks)")
    p.add_argument("--dtype", choices=["float32", "float64"], help=f"default: {d.dtype}")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"],
                   help="where the network trains (auto: a CUDA GPU when torch sees one); "
                        f"default: {d.device}")
    common_arguments(p, types)


def argparse_bool() -> Any:
    """``argparse.BooleanOptionalAction`` (``--augment`` / ``--no-augment``)."""
    import argparse

    return argparse.BooleanOptionalAction


def config_from_args(args: Any) -> Config:
    """The validated :class:`Config` of parsed command-line arguments."""
    fields = {f.name for f in dataclasses.fields(Config)} - {"preset"}
    given = {k: v for k, v in vars(args).items() if k in fields}
    if given.get("download") is False:
        given["download"] = None
    return default_config(args.preset, **given)


def prepare(cfg: Config, *, plot_path: str | None = None, quiet: bool = False) -> ImageData:
    """Check matplotlib (for a plot) and load the images before the run."""
    if plot_path is not None:
        check_plot_available()
    return load_data(cfg, quiet=quiet)
