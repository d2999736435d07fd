r"""The training loop of the copy, adding and pixels tasks, and the update of U.

One step draws a batch on the host, runs the forward pass and BPTT of
:mod:`unitary_lowrank.cli.tasks.rnn` in the array namespace of the chosen backend,
updates the ordinary parameters with RMSprop and the recurrent matrix `U` with
the chosen method:

=================  ==========================================================
``transport``      ``training.step(U, D, lr_U, method="exp")``: projUNN-T
``project``        the same with ``method="polar"``: projUNN-D
``cayley``         the same with ``method="cayley"``
``dense-polar``    ``polar(U − lr_U · D)`` with a dense SVD
``unconstrained``  RMSprop on U like any other weight (``lr``, not ``lr_U``)
``frozen``         U keeps its initial value
=================  ==========================================================

with ``lr_U = lr / unitary_lr_divider`` and the direction ``D`` either the
gradient ``G = X Yᵀ`` with respect to `U` (kept as its factors ``(X, Y)`` for
the low-rank methods where that is cheaper) or RMSprop's ``G / (√v + ε)``
(``unitary_direction="rmsprop"``, as in the projUNN paper's code).
"""

from __future__ import annotations

import math
import sys
import time
from types import ModuleType
from typing import Any, Literal, TextIO, cast

import numpy as np

import unitary_lowrank as ul
from unitary_lowrank.typing import Sampler

from . import rnn
from ._threads import blas_threads
from .config import LOWRANK_METHODS, Config, load_data, paper_io_init, resolve_backend
from .evaluation import Task
from .optim import Adam, RMSprop
from .progress import Progress
from .summary import percent, summarize

__all__ = ["DIVERGENCE_FACTOR", "TrainingInterrupted", "UnitaryUpdate", "train"]

#: A run has diverged once a loss is not finite or exceeds this many times the larger of
#: the baseline and the initial test loss (ReLU spikes stay within a few times either).
DIVERGENCE_FACTOR = 1e4


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`train`: a KeyboardInterrupt carrying the summary so far.

    Attributes
    ----------
    summary : dict
        The summary of the steps completed before the interrupt, with
        ``stop_reason`` ``"interrupted"`` (see :func:`train`).
    """

    def __init__(self, summary: dict[str, Any]):
        super().__init__(f"training interrupted after {summary['iterations']} steps")
        self.summary = summary


class _Diverged(Exception):
    """The step on U is not finite: the run has diverged."""


def _synchronize(xp: ModuleType) -> None:
    """Wait for the device, so that timings measure work and not kernel launches."""
    name = xp.__name__
    if "cupy" in name:
        import cupy

        cupy.cuda.get_current_stream().synchronize()
    elif "torch" in name:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


class UnitaryUpdate:
    """The update of U for one method, timed (the U update alone)."""

    def __init__(self, cfg: Config, xp: ModuleType, rng: np.random.Generator | None = None):
        self.cfg, self.xp, self.rng = cfg, xp, rng
        self.lr_U = cfg.lr / cfg.unitary_lr_divider
        self.seconds = 0.0
        self.count = 0
        self.rms = RMSprop(cfg.lr, xp=xp) if cfg.method == "unconstrained" else None
        # RMSprop's running mean of G² for the direction of the orthogonal methods.
        self.precondition = (
            (Adam(1.0, xp=xp) if cfg.unitary_direction == "adam" else RMSprop(1.0, xp=xp))
            if cfg.unitary_direction in ("rmsprop", "adam")
            and cfg.method not in ("frozen", "unconstrained")
            else None
        )

    def scale(self, factor: float) -> None:
        """Multiply the learning rate of U (and of RMSprop on an unconstrained U) by `factor`."""
        self.lr_U *= factor
        if self.rms is not None:
            self.rms.lr *= factor

    def _use_factors(self, n: int, m: int) -> bool:
        """Whether sketching from the factors costs less than forming the n×n gradient."""
        cfg = self.cfg
        if not isinstance(cfg.rank, int):  # "full": the dense gradient, no sketch
            return False
        if cfg.sampler == "lsi":
            work = 2 * n * cfg.rank  # G^T Ω and G V, each through X and Y
        elif cfg.sampler == "randomized":
            work = 2 * n * (cfg.rank + cfg.oversample) * (1 + 2 * 2)  # 2 power iterations
        else:
            return False  # column sampling needs the column norms of G itself
        return work < n * n or m <= n

    def _direction(self, factors: tuple[Any, Any]) -> Any:
        """The direction D of the step: RMSprop's, or G itself (as factors where cheaper)."""
        xp = self.xp
        if self.precondition is not None:
            return self.precondition.direction("U", rnn.dense_gradient(factors, xp=xp))
        if self.cfg.method in LOWRANK_METHODS and self._use_factors(*factors[0].shape):
            return factors
        return rnn.dense_gradient(factors, xp=xp)

    def __call__(self, U: Any, factors: tuple[Any, Any]) -> Any:
        """U after one step along the gradient whose factors are ``(X, Y)``, ``G = X Yᵀ``."""
        method = self.cfg.method
        if method == "frozen":
            return U
        xp = self.xp
        t0 = time.perf_counter()
        if method == "unconstrained":
            assert self.rms is not None  # made for the unconstrained method
            U = self.rms.step({"U": U}, {"U": rnn.dense_gradient(factors, xp=xp)})["U"]
        else:
            D = self._direction(factors)
            try:
                if method in LOWRANK_METHODS:
                    U = ul.step(
                        U, D, self.lr_U, rank=cast(int | Literal["full"], self.cfg.rank),
                        method=LOWRANK_METHODS[method],
                        sampler=cast(Sampler, self.cfg.sampler), oversample=self.cfg.oversample,
                        rng=self.rng,
                    )
                else:  # dense-polar
                    U = ul.polar(U - self.lr_U * D)
            except ValueError as exc:
                # The updates refuse NaN and infinity, and a step too large for the dtype
                # (lr times a finite direction whose factors overflow); with finite input
                # of a representable size it is a real error.
                if str(exc).startswith(_TOO_LARGE):
                    raise _Diverged("the step on U is too large for the dtype") from None
                step = rnn.dense_gradient(D, xp=xp) if isinstance(D, tuple) else D
                if _all_finite(xp, U) and _all_finite(xp, self.lr_U * step):
                    raise
                raise _Diverged("the step on U is not finite") from None
        _synchronize(xp)
        self.seconds += time.perf_counter() - t0
        self.count += 1
        return U


#: The starts of the library's messages for a step too large for the dtype (ul.step, and
#: its retraction's core, and ul.lowrank's factor of a huge direction).
_TOO_LARGE = ("the step -lr*G is too large", "the step A @ B^H is too large",
              "G is too large")


def _all_finite(xp: ModuleType, a: Any) -> bool:
    return bool(xp.all(xp.isfinite(a)))


def train(cfg: Config, *, stream: TextIO | None = None, quiet: bool = False,
          pixels: Any = None, use_tqdm: bool = True, bar: bool = True) -> dict[str, Any]:
    """Train the network of `cfg` and return the summary (see :func:`~.summary.write_json`).

    Parameters
    ----------
    cfg : Config
        Settings; validated here.
    stream : file, optional
        Where progress and test lines go; default ``sys.stderr``.
    quiet : bool, default: False
        Print nothing.
    pixels : PixelData, optional
        Pixels: the images, if already loaded (:func:`~.config.load_data`); else they
        are loaded here.
    use_tqdm : bool, default: True
        On a terminal, draw the progress bar through tqdm when it is installed
        (False: the built-in bar).
    bar : bool, default: True
        False: no progress bar even on a terminal, only the plain line per
        evaluation (the command line's ``--quiet``).

    Returns
    -------
    dict
        The summary: settings, ``iterations`` (steps completed), ``wall_seconds``,
        ``final_loss`` (test loss), ``baseline_loss``, ``accuracy`` (copy: the
        recall; pixels: the test accuracy; adding: None), ``unitarity_error``,
        ``seconds_per_update``, ``stop_reason`` (one of :data:`~.summary.STOP_REASONS`:
        ``"steps"``, all steps run; ``"target"``, the `stop_below` test passed;
        ``"diverged"``, a loss or the step on `U` stopped being finite, or a
        loss grew :data:`DIVERGENCE_FACTOR` times above the larger of the
        baseline and the initial test loss; ``"interrupted"``; ``"plateau"``),
        the ``history`` of evaluations (pixels: on the validation set) and the
        ``events`` (learning-rate decays, early stop) the plots mark. Pixels
        also report ``val_loss``, ``val_accuracy`` and ``best_step``: the test
        set is evaluated once, at the end, with the parameters of the best
        validation accuracy. A diverged run returns normally.

    Raises
    ------
    ConfigError
        If a setting cannot work.
    TrainingInterrupted
        On Ctrl-C (KeyboardInterrupt) during the run: a KeyboardInterrupt whose
        ``summary`` attribute is the summary of the steps completed, with
        ``stop_reason`` ``"interrupted"`` (the state is evaluated once more
        unless a second Ctrl-C comes first).

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks.train import default_config, train
    >>> cfg = default_config("adding", method="frozen", seq_len=8, hidden=8, steps=3)
    >>> s = train(cfg, quiet=True)
    >>> s["iterations"], s["task"], s["accuracy"]
    (3, 'adding', None)
    """
    cfg.validate()
    xp, device = resolve_backend(cfg.backend)
    stream = sys.stderr if stream is None else stream
    if pixels is None:
        pixels = load_data(cfg)
    update_U = UnitaryUpdate(cfg, xp)
    with blas_threads(cfg.threads), np.errstate(over="ignore", invalid="ignore"):
        summary = _train(cfg, xp, device, stream, quiet, update_U, pixels, use_tqdm and bar,
                         bar)
    if summary["stop_reason"] == "interrupted":
        raise TrainingInterrupted(summary)
    return summary


def _unitarity(U: Any) -> float:
    """``‖UᵀU − I‖₂``, or NaN when U is no longer finite (a diverged run)."""
    try:
        return float(ul.unitarity_error(U))
    except Exception:  # noqa: BLE001 - LAPACK may refuse NaN input; the run is over anyway
        return math.nan


#: Steps between two reads of the training loss (each read waits for the device).
_PROGRESS_EVERY = 25


class _Run:
    """A training run in progress: the network, its optimisers and what has happened so far.

    The loop (:func:`_train`) calls :meth:`step` once per training step, then
    :func:`_report_progress` and :func:`_evaluate` when their turn comes; each of
    them returns False once the run must stop, with :attr:`stop_reason` set.
    """

    def __init__(self, cfg: Config, xp: ModuleType, device: Any, stream: TextIO, quiet: bool,
                 update_U: UnitaryUpdate, pixels: Any = None, use_tqdm: bool = True,
                 bar: bool = True):
        seeds = np.random.SeedSequence(cfg.seed).spawn(4)
        gen_init, self.gen_train, gen_test, gen_step = (np.random.default_rng(s) for s in seeds)
        self.cfg, self.xp, self.stream, self.quiet = cfg, xp, stream, quiet
        self.task = Task(cfg, xp, device, pixels)
        self.params = rnn.init_params(
            self.task.n_in, cfg.hidden, self.task.n_out, init=cfg.init,
            nonlinearity=cfg.nonlinearity, dtype=cfg.dtype, rng=gen_init, xp=xp, device=device,
            output_bias=cfg.output_bias,
        )
        if cfg.io_init == "paper":
            self.params.update(self.task.to_params(
                paper_io_init(cfg.task, self.task.n_in, cfg.hidden, self.task.n_out, gen_init)))
        # Copy and adding: a fixed test batch; pixels: the validation images.
        self.eval_sets = self.task.eval_sets("val", gen_test)
        self.opt = RMSprop(cfg.lr, xp=xp)
        self.update_U = update_U
        update_U.rng = gen_step
        self.progress = Progress(stream, cfg.steps, bar and not quiet, use_tqdm=use_tqdm)
        self.history: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []  # learning-rate decays and the early stop
        self.t_start = time.perf_counter()
        self.stop_reason = "steps"
        self.decayed = False  # the learning rates have been decayed on reaching the loss
        self.decays = 0  # plateau decays so far (pixels)
        self.best: tuple[float, int, dict[str, Any]] | None = None  # accuracy, step, params
        self.since_best = 0  # evaluations since the best validation accuracy
        self.running: float | None = None  # smoothed training loss
        self.uerr = math.nan  # unitarity error shown by the progress bar
        self.limit = math.inf  # a loss above this means divergence (set by the first test)
        self.done = 0  # steps completed: an interrupted step leaves the parameters as they were

    @property
    def split(self) -> str:
        """What the evaluations during the run measure: ``"val"`` (pixels) or ``"test"``."""
        return "val" if self.task.pixels is not None else "test"

    def say(self, line: str) -> None:
        """Print a line (above the progress bar), unless quiet."""
        if not self.quiet:
            self.progress.clear()
            print(line, file=self.stream, flush=True)
            self.progress.refresh()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t_start

    def test(self, step: int, params: dict[str, Any] | None = None,
             sets: Any = None) -> dict[str, Any]:
        """Loss, accuracy and unitarity error of the parameters on an evaluation set.

        Default: the current parameters on the run's evaluation set (the
        validation images for pixels, the fixed test batch otherwise).
        """
        params = self.params if params is None else params
        loss, accuracy = self.task.evaluate(params, self.eval_sets if sets is None else sets)
        return {
            "step": step,
            "loss": loss,
            "accuracy": accuracy,
            "unitarity_error": _unitarity(params["U"]),
        }

    def lr(self) -> float:
        return self.opt.lr

    def test_line(self, h: dict[str, Any]) -> str:
        acc = "" if h["accuracy"] is None else f"  accuracy {100 * h['accuracy']:.2f}%"
        line = (
            f"step {h['step']:>6}  {self.split} loss {h['loss']:.4g} "
            f"({percent(h['loss'] / self.task.baseline)} of baseline){acc}  "
            f"|UᵀU−I| {h['unitarity_error']:.1e}  lr {self.opt.lr:.2g}  "
            f"{self.elapsed():.0f}s"
        )
        if h["step"] > 0 and self.running is not None:  # the plain progress of a log
            left = self.elapsed() / h["step"] * (self.cfg.steps - h["step"])
            line += f"  train loss {self.running:.4g}  ETA {left:.0f}s"
        return line

    def too_large(self, loss: float) -> str | None:
        """Why `loss` means the run has diverged, or None."""
        if not math.isfinite(loss):
            return f"is {loss}"
        if loss > self.limit:
            return (f"is {loss:.4g}, over {DIVERGENCE_FACTOR:g} times the larger of the "
                    "baseline and the initial test loss")
        return None

    def stop(self, reason: str, step: int, why: str) -> bool:
        """Record why the run stops at `step` and say so; returns False (stop)."""
        self.stop_reason = reason
        if reason in ("target", "plateau"):
            self.events.append({"step": step, "event": "stop", "reason": reason})
        self.say(f"step {step:>6}  {why}")
        return False

    def scale_lr(self, step: int, factor: float, why: str) -> None:
        """Multiply both learning rates by `factor` after `step`, and record it."""
        self.opt.lr *= factor
        self.update_U.scale(factor)
        self.events.append({"step": step, "event": "decay", "factor": factor,
                            "lr": self.opt.lr, "why": why})

    def step(self, step: int) -> Any:
        """Take one training step on a fresh batch and return its loss (an array).

        Returns None when the step on U is not finite; the parameters are then left
        as they were.
        """
        cfg, task, xp = self.cfg, self.task, self.xp
        x, y = task.batch(cfg.batch, self.gen_train)
        out, cache = rnn.forward(self.params, x, nonlinearity=cfg.nonlinearity,
                                 readout=task.readout, xp=xp)
        loss, d_out = task.loss(out, y)
        grads = rnn.backward(self.params, cache, d_out, nonlinearity=cfg.nonlinearity, xp=xp)
        factors = grads.pop("U")
        if not cfg.hidden_bias:  # b stays 0: no hidden bias
            del grads["b"]
        new = self.opt.step(self.params, grads)
        try:
            new["U"] = self.update_U(self.params["U"], factors)
        except _Diverged as exc:
            self.stop("diverged", step, f"{exc}: stopping (diverged)")
            return None
        self.params = new
        self.done = step
        return loss


def _first_test(run: _Run) -> bool:
    """Evaluate the initial parameters and set the divergence limit; False if already diverged."""
    h = run.test(0)
    h["lr"] = run.lr()
    run.history.append(h)
    run.say(run.test_line(h))
    run.uerr = h["unitarity_error"]
    _note_best(run, h)
    why = run.too_large(h["loss"])
    if why is not None:
        return run.stop("diverged", 0, f"the initial test loss {why}: stopping (diverged)")
    run.limit = DIVERGENCE_FACTOR * max(run.task.baseline, h["loss"])
    return True


def _report_progress(run: _Run, step: int, loss: Any) -> bool:
    """Read the training loss (one device sync), check it, update the progress bar."""
    value = float(loss)
    why = run.too_large(value)
    if why is not None:
        return run.stop("diverged", step, f"the training loss {why}: stopping (diverged)")
    run.running = value if run.running is None else 0.8 * run.running + 0.2 * value
    if run.progress.enabled:
        run.uerr = _unitarity(run.params["U"])
    baseline = run.task.baseline
    run.progress.update(step, run.running, run.running / baseline, run.uerr,
                        run.elapsed() / step)
    return True


def _evaluate(run: _Run, step: int) -> bool:
    """Test the parameters after `step`, then decay the learning rates or stop if it is time."""
    h = run.test(step)
    h["train_loss"] = run.running
    h["seconds"] = run.elapsed()
    h["lr"] = run.lr()
    run.history.append(h)
    run.say(run.test_line(h))
    why = run.too_large(h["loss"])
    if why is not None:
        return run.stop("diverged", step, f"the test loss {why}: stopping (diverged)")
    frac = h["loss"] / run.task.baseline
    improved = _note_best(run, h)
    _maybe_decay(run, step, frac)
    if _should_stop(run.cfg, frac, h["accuracy"] if run.cfg.task == "copy" else None):
        end = "stopping early" if step < run.cfg.steps else "done"
        return run.stop("target", step,
                        f"below {100 * cast(float, run.cfg.stop_below):g}% of the baseline: "
                        f"{end}")
    return _plateau(run, step, improved)


def _note_best(run: _Run, h: dict[str, Any]) -> bool:
    """Keep the parameters of the best validation accuracy (pixels); True if `h` is it."""
    if run.task.pixels is None or h["accuracy"] is None:
        return False
    if run.best is None or h["accuracy"] > run.best[0]:
        # The updates make new arrays, so holding the references keeps this state.
        run.best = (h["accuracy"], h["step"], dict(run.params))
        run.since_best = 0
        return True
    run.since_best += 1
    return False


def _plateau(run: _Run, step: int, improved: bool) -> bool:
    """Pixels: decay, or stop, once the validation accuracy has stopped improving."""
    cfg = run.cfg
    if improved or cfg.patience is None or run.since_best < cfg.patience:
        return True
    if run.decays >= cfg.max_decays:
        best = cast(tuple[float, int, dict[str, Any]], run.best)  # set at the first evaluation
        best_acc, best_step = best[0], best[1]
        return run.stop("plateau", step,
                        f"no better validation accuracy in {cfg.patience} evaluations (best "
                        f"{100 * best_acc:.2f}% at step {best_step}): stopping early")
    run.decays += 1
    run.since_best = 0
    if cfg.lr_decay < 1:
        run.scale_lr(step, cfg.lr_decay, "plateau")
        run.say(f"step {step:>6}  no better validation accuracy in {cfg.patience} "
                f"evaluations: learning rates × {cfg.lr_decay:g}")
    return True


def _maybe_decay(run: _Run, step: int, frac: float) -> None:
    """Multiply both learning rates by ``lr_decay`` once the task is solved.

    That is, the first time the test loss is below ``decay_below`` times the
    baseline (`frac` is the test loss over the baseline). Pixels decay on a
    plateau of the validation accuracy instead (:func:`_plateau`).
    """
    cfg = run.cfg
    if (run.decayed or cfg.lr_decay >= 1 or frac >= cfg.decay_below
            or cfg.patience is not None):
        return
    run.decayed = True
    run.scale_lr(step, cfg.lr_decay, "solved")
    run.say(f"step {step:>6}  solved (below {100 * cfg.decay_below:g}% of the "
            f"baseline): learning rates × {cfg.lr_decay:g}")


def _epoch_decay(run: _Run, step: int) -> None:
    """The paper's schedule: both learning rates × ``epoch_decay`` after each epoch."""
    cfg = run.cfg
    if cfg.epoch_steps is None or cfg.epoch_decay >= 1 or step % cfg.epoch_steps:
        return
    run.scale_lr(step, cfg.epoch_decay, "epoch")
    if step % cfg.eval_every == 0:  # else the next test line shows the new rate anyway
        run.say(f"step {step:>6}  epoch {step // cfg.epoch_steps} done: learning rates × "
                f"{cfg.epoch_decay:g}")


def _should_stop(cfg: Config, frac: float, accuracy: float | None) -> bool:
    """Whether the run may stop early: the ``stop_below`` test (None or 0: never).

    `frac` is the test loss over the baseline, `accuracy` the recall (copy) or None.
    """
    return bool(
        cfg.stop_below
        and frac < cfg.stop_below
        and (accuracy is None or accuracy >= cfg.stop_recall)
    )


def _train(cfg: Config, xp: ModuleType, device: Any, stream: TextIO, quiet: bool,
           update_U: UnitaryUpdate, pixels: Any = None,
           use_tqdm: bool = True, bar: bool = True) -> dict[str, Any]:
    """The loop of :func:`train`: steps, progress, tests; then the summary."""
    run = _Run(cfg, xp, device, stream, quiet, update_U, pixels, use_tqdm, bar)
    try:
        if _first_test(run):
            for step in range(1, cfg.steps + 1):
                loss = run.step(step)
                if loss is None:
                    break
                last = step == cfg.steps
                if (step % _PROGRESS_EVERY == 0 or last) and not _report_progress(run, step, loss):
                    break
                if (step % cfg.eval_every == 0 or last) and not _evaluate(run, step):
                    break
                _epoch_decay(run, step)
    except KeyboardInterrupt:
        run.stop_reason = "interrupted"
        run.say(f"step {run.done:>6}  interrupted: stopping after {run.done} completed steps")
    wall = run.elapsed()
    final = _final_test(run)
    run.progress.close()
    return summarize(run, final, wall)


#: What the summary reports when the run was interrupted before its first test.
_NOT_TESTED = {"step": 0, "loss": math.nan, "accuracy": None, "unitarity_error": math.nan}


def _final_test(run: _Run) -> dict[str, Any]:
    """The test of the state the summary reports.

    Copy and adding: the last test, or a new one if the run stopped between
    tests. Pixels: the parameters of the best validation accuracy (evaluated
    once more on the validation set if the run stopped between evaluations) on
    the test images. A second Ctrl-C skips what is left.
    """
    try:
        if not run.history or run.history[-1]["step"] != run.done:
            h = run.test(run.done)
            h["lr"] = run.lr()
            run.history.append(h)
            _note_best(run, h)
        if run.task.pixels is not None and run.best is not None:
            sets = run.task.eval_sets("test", np.random.default_rng(0))
            return run.test(run.best[1], run.best[2], sets)
    except KeyboardInterrupt:
        run.stop_reason = "interrupted"
        run.say("interrupted again: the summary reports the last evaluation")
        if run.task.pixels is not None:
            return _NOT_TESTED
    return run.history[-1] if run.history else _NOT_TESTED


