r"""``unitary-lowrank toy``: learn a random unitary from examples (Fig. 2b of the paper).

The toy model of the projUNN paper (Kiani, Balestriero, LeCun, Lloyd, NeurIPS
2022, Fig. 2b): a Haar-random ``n × n`` complex unitary target ``U*`` is learned
from input/output pairs ``y = U* x`` by a unitary ``U`` that starts Haar-random
too. Each step draws a batch of `batch` inputs ``x ~ CN(0, I/n)`` (complex
Gaussian, ``E‖x‖² = 1``), takes the loss ``L = (1/B) Σ_b ‖U x_b − y_b‖²`` and
its gradient ``G = (2/B) (U X − Y) Xᴴ`` (rank at most B; the steepest-ascent
direction of a real loss of a complex matrix, as torch's ``.grad``), and moves
``U`` by :func:`unitary_lowrank.step` with ``sampler="column"``: ``c = k``
columns of ``G`` drawn with probability proportional to their squared norms
(``oversample=0``, as in the paper), ``G`` projected onto their span, and the
rank-k step retracted by projUNN-T (``method="exp"``, the default) or projUNN-D
(``"polar"``). One run per rank k (1, 2, 4, 8, 16 by default), all from the
same ``U``, ``U*`` and the same inputs, so that only the rank differs.

What is recorded is the expected loss ``E‖(U − U*)x‖² = ‖U − U*‖²_F / n``
(exact, no sampling noise; 2 for a random guess, 0 at the target) every
`eval_every` steps, the training loss of each batch, and ``‖UᴴU − I‖₂`` at the
end. With ``x ~ CN(0, I/n)`` a learning rate of ``B/2`` corrects the directions
of a batch in about one full-rank step, whatever `n`, hence the default
``lr = 8`` for ``B = 16`` (a choice of this project: the paper's value is not
published with the figure).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, TextIO, cast

import numpy as np

import unitary_lowrank as ul
from unitary_lowrank.typing import Method, Sampler

from ._experiment import (
    ExperimentError,
    ExperimentInterrupted,
    Reporter,
    check_choice,
    check_plot_available,
    check_positive,
    common_arguments,
)
from ._threads import blas_threads

__all__ = ["METHODS", "PRESETS", "Config", "default_config", "distance", "format_summary",
           "inputs", "loss_and_gradient", "plot", "run", "train_step"]

#: ``--method``: the retraction of :func:`unitary_lowrank.step` for each name.
METHODS = {"transport": "exp", "project": "polar", "cayley": "cayley"}
SAMPLERS = ("column", "lsi", "randomized")
DTYPES = ("complex64", "complex128")
#: The expected loss ``‖U − U*‖²_F / n`` of two independent Haar-random unitaries.
BASELINE = 2.0
#: The paper's size (``--preset paper``); the step count is this project's choice.
PRESETS = {"paper": {"n": 2048, "steps": 2000, "eval_every": 20}}


@dataclasses.dataclass
class Config:
    """Settings of a ``toy`` run (see the module docstring).

    Attributes
    ----------
    n : int
        Size of ``U`` and ``U*``.
    ranks : tuple of int
        The ranks k, one run each (each at most `n`).
    batch : int
        Inputs per step, B.
    steps : int
        Steps of each run.
    lr : float
        Learning rate: the step is ``−lr·G`` before the sketch and the retraction.
    method : {"transport", "project", "cayley"}
        projUNN-T, projUNN-D or the Cayley retraction.
    sampler : {"column", "lsi", "randomized"}
        Sketch of ``G`` (the paper's figure: ``"column"``).
    oversample : int
        Extra columns of the column (or randomized) sampler; the paper: 0.
    eval_every : int
        Steps between two records of the expected loss.
    dtype : {"complex64", "complex128"}
        Precision of ``U``.
    seed : int
        Seed of ``U*``, the start, the inputs and the sketches.
    threads : int or None
        BLAS threads during the run (None: leave them alone).
    preset : str or None
        ``"paper"`` when the paper's size was asked for (reported only).
    """

    n: int = 256
    ranks: tuple[int, ...] = (1, 2, 4, 8, 16)
    batch: int = 16
    steps: int = 300
    lr: float = 8.0
    method: str = "transport"
    sampler: str = "column"
    oversample: int = 0
    eval_every: int = 10
    dtype: str = "complex64"
    seed: int = 0
    threads: int | None = 1
    preset: str | None = None

    def validate(self) -> None:
        """Raise :class:`ExperimentError` naming the first setting that cannot work."""
        for name in ("n", "batch", "steps", "eval_every"):
            check_positive(name, getattr(self, name))
        check_positive("seed", self.seed, least=0)
        check_positive("oversample", self.oversample, least=0)
        check_positive("lr", self.lr, integer=False, least=0)
        if self.threads is not None:
            check_positive("threads", self.threads)
        check_choice("method", self.method, METHODS)
        check_choice("sampler", self.sampler, SAMPLERS)
        check_choice("dtype", self.dtype, DTYPES)
        if not self.ranks:
            raise ExperimentError("--ranks must list at least one rank")
        for k in self.ranks:
            check_positive("ranks", k)
            if k > self.n:
                raise ExperimentError(f"--ranks must be at most --n ({self.n}), got {k}")


def default_config(preset: str | None = None, **overrides: Any) -> Config:
    """The defaults, then the preset, then `overrides` (None values ignored).

    Parameters
    ----------
    preset : {None, "paper"}
        ``"paper"``: n = 2048 (:data:`PRESETS`).
    **overrides
        Any :class:`Config` field. Without `ranks`, the default ranks up to `n`.

    Returns
    -------
    Config
        Validated.

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks.toy import default_config
    >>> default_config("paper").n, default_config(n=64, ranks=[1, 4]).ranks
    (2048, (1, 4))
    >>> default_config(n=6).ranks  # the default ranks up to n
    (1, 2, 4)
    """
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ExperimentError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        values.update(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "ranks" in values:
        values["ranks"] = tuple(values["ranks"])
    elif isinstance(values.get("n"), int) and values["n"] >= 1:
        # the default ranks that fit a small n (n = 8: 1, 2, 4, 8)
        values["ranks"] = tuple(k for k in Config.ranks if k <= values["n"])
    cfg = Config(preset=preset, **values)
    cfg.validate()
    return cfg


# ------------------------------------------------------------------------ the model
def inputs(n: int, batch: int, rng: np.random.Generator, dtype: str) -> np.ndarray:
    """A batch of inputs ``x ~ CN(0, I/n)`` as the columns of an ``(n, batch)`` array.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank.cli.tasks.toy import inputs
    >>> X = inputs(512, 2000, np.random.default_rng(0), "complex128")
    >>> round(float(np.mean(np.sum(np.abs(X) ** 2, axis=0))), 1)  # E‖x‖² = 1
    1.0
    """
    re = rng.standard_normal((n, batch))
    im = rng.standard_normal((n, batch))
    return ((re + 1j * im) / math.sqrt(2 * n)).astype(dtype)


def loss_and_gradient(U: np.ndarray, X: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
    """The batch loss ``(1/B) Σ_b ‖U x_b − y_b‖²`` and its gradient ``(2/B)(U X − Y) Xᴴ``.

    The gradient is the steepest-ascent direction for the real loss of the
    complex ``U`` (twice the conjugate Wirtinger derivative ``∂L/∂Ū``, the
    convention of torch's ``.grad``), so ``U − lr·G`` descends.

    Parameters
    ----------
    U : numpy.ndarray, shape (n, n)
        The current matrix.
    X, Y : numpy.ndarray, shape (n, B)
        Inputs and targets, one per column.

    Returns
    -------
    loss : float
    G : numpy.ndarray, shape (n, n)
    """
    B = X.shape[1]
    R = U @ X - Y
    loss = float(np.sum(np.abs(R) ** 2)) / B
    return loss, (2.0 / B) * (R @ X.conj().T)


def train_step(U: np.ndarray, X: np.ndarray, Y: np.ndarray, cfg: Config, k: int,
               rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """One step of rank `k` on the batch ``(X, Y)``: the new ``U`` and the batch loss before it.

    ``U ← step(U, G, lr, rank=k)`` with the gradient of :func:`loss_and_gradient`,
    the retraction of `cfg.method` and the sketch of `cfg.sampler`.

    Examples
    --------
    >>> import numpy as np, unitary_lowrank as ul
    >>> from unitary_lowrank.cli.tasks.toy import default_config, inputs, train_step
    >>> cfg = default_config(n=8, batch=4, dtype="complex128")
    >>> U, T = (ul.random_unitary(8, dtype="complex128", rng=s) for s in (1, 2))
    >>> X = inputs(8, 4, np.random.default_rng(0), "complex128")
    >>> V, loss = train_step(U, X, T @ X, cfg, 4, np.random.default_rng(0))
    >>> bool(ul.unitarity_error(V) < 1e-13), round(loss, 3) > 0
    (True, True)
    """
    loss, G = loss_and_gradient(U, X, Y)
    new = ul.step(U, G, cfg.lr, rank=k, method=cast(Method, METHODS[cfg.method]),
                  sampler=cast(Sampler, cfg.sampler),
                  oversample=cfg.oversample, rng=rng)
    return new, loss


def distance(U: np.ndarray, target: np.ndarray) -> float:
    """The expected loss ``E‖(U − U*)x‖² = ‖U − U*‖²_F / n`` for ``x ~ CN(0, I/n)``."""
    D = U.astype(np.complex128) - target.astype(np.complex128)
    return float(np.vdot(D, D).real) / U.shape[0]


def _unitarity(U: np.ndarray) -> float:
    return float(ul.unitarity_error(U, method="exact" if U.shape[0] <= 1024 else "probe"))


# -------------------------------------------------------------------------- the run
def run(cfg: Config, *, stream: TextIO | None = None, quiet: bool = False, bar: bool = True,
        prepared: Any = None) -> dict[str, Any]:
    """Learn ``U*`` once per rank of `cfg` and return the summary.

    Parameters
    ----------
    cfg : Config
        Settings.
    stream : file, optional
        Where the progress goes; default ``sys.stderr``.
    quiet : bool, default: False
        Print nothing.
    bar : bool, default: True
        A progress bar when `stream` is a terminal (else one line per record).
    prepared : None
        Unused (the toy needs no data files).

    Returns
    -------
    dict
        The settings, ``runs`` (one per rank: ``history`` of ``{"step",
        "loss"}`` records of the expected loss, ``train_loss`` of every
        ``eval_every``-th batch, ``final_loss``, ``steps_to_tenth`` (the first
        recorded step below 10 % of the initial loss, or None),
        ``unitarity_error``, ``seconds_per_step`` (steps after the first, which
        loads the compiled kernels)), ``iterations`` (steps done
        over all runs), ``wall_seconds`` and ``stop_reason`` (``"done"``).

    Raises
    ------
    ExperimentInterrupted
        On Ctrl-C: carries the summary of the steps done (``stop_reason``
        ``"interrupted"``).

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks.toy import default_config, run
    >>> s = run(default_config(n=16, ranks=[1, 16], steps=20, eval_every=10), quiet=True)
    >>> [r["rank"] for r in s["runs"]], s["runs"][1]["final_loss"] < s["runs"][0]["final_loss"]
    ([1, 16], True)
    """
    cfg.validate()
    report = Reporter(stream, cfg.steps * len(cfg.ranks), quiet=quiet, bar=bar)
    seeds = np.random.SeedSequence(cfg.seed).spawn(4)
    target = ul.random_unitary(cfg.n, dtype=cfg.dtype, rng=np.random.default_rng(seeds[0]))
    start = ul.random_unitary(cfg.n, dtype=cfg.dtype, rng=np.random.default_rng(seeds[1]))
    sketch_seeds = seeds[3].spawn(len(cfg.ranks))
    runs: list[dict[str, Any]] = []
    reason = "done"
    t0 = time.perf_counter()
    with blas_threads(cfg.threads):
        try:
            for i, k in enumerate(cfg.ranks):
                record: dict[str, Any] = {"rank": k, "history": [], "train_loss": [],
                                          "steps_done": 0, "seconds": 0.0}
                runs.append(record)
                _one_rank(cfg, k, start.copy(), target, np.random.default_rng(seeds[2]),
                          np.random.default_rng(sketch_seeds[i]), record, report,
                          i * cfg.steps)
        except KeyboardInterrupt:
            reason = "interrupted"
            report.say("interrupted: the summary reports the steps done")
    report.close()
    summary = _summary(cfg, runs, time.perf_counter() - t0, reason)
    if reason == "interrupted":
        raise ExperimentInterrupted(summary)
    return summary


def _one_rank(cfg: Config, k: int, U: np.ndarray, target: np.ndarray,
              data: np.random.Generator, sketch: np.random.Generator,
              record: dict[str, Any], report: Reporter, offset: int) -> None:
    """The run of rank `k`, recorded into `record` as it goes (an interrupt keeps it)."""
    first = distance(U, target)
    record["history"].append({"step": 0, "loss": first})
    record["U"] = U
    report.say(f"k = {k:>3}  step {0:>6}  loss {first:.4g}")
    running = None
    t_start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        X = inputs(cfg.n, cfg.batch, data, cfg.dtype)
        U, batch_loss = train_step(U, X, target @ X, cfg, k, sketch)
        record["U"] = U
        record["steps_done"] = step
        if step == 1:  # the first step loads the compiled kernels: not timed
            t_start = time.perf_counter()
        record["seconds"] = time.perf_counter() - t_start
        running = batch_loss if running is None else 0.9 * running + 0.1 * batch_loss
        if step % cfg.eval_every == 0 or step == cfg.steps:
            loss = distance(U, target)
            record["history"].append({"step": step, "loss": loss})
            record["train_loss"].append({"step": step, "loss": batch_loss})
            report.say(f"k = {k:>3}  step {step:>6}  loss {loss:.4g} "
                       f"({100 * loss / first:.2f}% of the start)  batch loss "
                       f"{batch_loss:.4g}  {report.elapsed():.0f}s")
        if report.enabled and (step % 25 == 0 or step == cfg.steps):
            report.update(offset + step, running, running / BASELINE, _unitarity(U))


def _summary(cfg: Config, runs: list[dict[str, Any]], wall: float,
             reason: str) -> dict[str, Any]:
    out = []
    for r in runs:
        U = r.pop("U", None)
        hist = r["history"]
        first = hist[0]["loss"] if hist else None
        tenth = next((h["step"] for h in hist if first and h["loss"] < 0.1 * first), None)
        out.append({
            "rank": r["rank"],
            "steps_done": r["steps_done"],
            "final_loss": hist[-1]["loss"] if hist else None,
            "initial_loss": first,
            "steps_to_tenth": tenth,
            "unitarity_error": None if U is None else _unitarity(U),
            "seconds_per_step": (r["seconds"] / (r["steps_done"] - 1)
                                 if r["steps_done"] > 1 else None),
            "history": hist,
            "train_loss": r["train_loss"],
        })
    settings = dataclasses.asdict(cfg)
    settings["ranks"] = list(cfg.ranks)
    settings["retraction"] = METHODS[cfg.method]
    return {
        "experiment": "toy",
        "figure": "Fig. 2b",
        **settings,
        "baseline_loss": BASELINE,
        "iterations": sum(r["steps_done"] for r in out),
        "wall_seconds": wall,
        "stop_reason": reason,
        "runs": out,
    }


# ----------------------------------------------------------------------- reporting
def format_summary(s: dict[str, Any]) -> str:
    """The lines printed at the end of a ``toy`` run.

    Parameters
    ----------
    s : dict
        A summary from :func:`run`.

    Returns
    -------
    str
    """
    name = {"transport": "projUNN-T", "project": "projUNN-D", "cayley": "Cayley"}[s["method"]]
    sampler = ("column sampling (c = k + "
               f"{s['oversample']} columns)" if s["sampler"] == "column" else
               f"{s['sampler']} sketch")
    lines = [
        f"toy (Fig. 2b): learn a Haar-random {s['n']}×{s['n']} unitary U* from y = U* x, "
        f"batch {s['batch']}, {s['steps']} steps a rank",
        f"  U updated by    {name}, rank k with {sampler}, lr {s['lr']:g}, {s['dtype']}, "
        f"seed {s['seed']}",
        f"  loss            E‖Ux − y‖² = ‖U − U*‖²_F / n (a random U: {s['baseline_loss']:g})",
        f"  wall time       {s['wall_seconds']:.1f} s"
        + ("  (stopped: interrupted)" if s["stop_reason"] == "interrupted" else ""),
        "     k   steps   final loss   % of start   steps to 10%   ‖UᴴU − I‖₂   ms/step",
    ]
    for r in s["runs"]:
        frac = (100 * r["final_loss"] / r["initial_loss"]
                if r["final_loss"] is not None and r["initial_loss"] else math.nan)
        tenth = "-" if r["steps_to_tenth"] is None else str(r["steps_to_tenth"])
        ue = "-" if r["unitarity_error"] is None else f"{r['unitarity_error']:.1e}"
        ms = "-" if r["seconds_per_step"] is None else f"{1e3 * r['seconds_per_step']:.1f}"
        pct = f"{frac:.2f}%" if not frac < 0.01 else f"{frac:.1e}%"
        lines.append(f"  {r['rank']:>4}  {r['steps_done']:>6}   {r['final_loss']:>10.4g}   "
                     f"{pct:>10}   {tenth:>12}   {ue:>10}   {ms:>7}")
    return "\n".join(lines)


def plot(s: dict[str, Any], path: str) -> None:
    """PNG of the expected loss against steps, one curve per rank k (log scale).

    Parameters
    ----------
    s : dict
        A summary from :func:`run`.
    path : str
        Output file.
    """
    check_plot_available()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.3), dpi=110)
    ax = fig.subplots()
    for r in s["runs"]:
        pts = [(h["step"], h["loss"]) for h in r["history"] if h["loss"] is not None
               and h["loss"] > 0]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=".", ms=3, label=f"k = {r['rank']}")
    ax.axhline(s["baseline_loss"], color="k", ls="--", lw=1, label="random U")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss ‖U − U*‖²_F / n")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    name = {"transport": "projUNN-T", "project": "projUNN-D", "cayley": "Cayley"}[s["method"]]
    ax.set_title(f"Learning a random {s['n']}×{s['n']} unitary (batch {s['batch']}): "
                 f"{name}, {s['sampler']} sampling", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, format="png")


# ----------------------------------------------------------------- command line
def add_arguments(p: Any, types: Any) -> None:
    """The options of ``unitary-lowrank toy`` (`types`: the parser's value checkers)."""
    d = Config()
    p.add_argument("--preset", choices=list(PRESETS),
                   help="the paper's size: n = 2048, 2000 steps a rank (meant for a GPU or a "
                        "patient CPU). Explicit options override it")
    p.add_argument("--n", type=types.positive_int, help=f"size of U; default: {d.n}")
    p.add_argument("--ranks", type=types.int_list,
                   help="ranks k, comma separated, one run each; default: "
                        + ",".join(map(str, d.ranks)))
    p.add_argument("--batch", type=types.positive_int,
                   help=f"inputs per step; default: {d.batch}")
    p.add_argument("--steps", type=types.positive_int,
                   help=f"steps of each run; default: {d.steps}")
    p.add_argument("--lr", type=types.positive_float,
                   help=f"learning rate (inputs have E‖x‖² = 1); default: {d.lr:g}")
    p.add_argument("--method", choices=list(METHODS),
                   help=f"retraction: transport (projUNN-T), project (projUNN-D) or cayley; "
                        f"default: {d.method}")
    p.add_argument("--sampler", choices=SAMPLERS,
                   help=f"sketch of the gradient (the paper's figure: column); default: "
                        f"{d.sampler}")
    p.add_argument("--oversample", type=types.non_negative_int,
                   help=f"extra sampled columns (c = k + oversample); default: {d.oversample}")
    p.add_argument("--eval-every", type=types.positive_int,
                   help=f"steps between records of the loss; default: {d.eval_every}")
    p.add_argument("--dtype", choices=DTYPES, help=f"default: {d.dtype}")
    common_arguments(p, types)


def config_from_args(args: Any) -> Config:
    """The validated :class:`Config` of parsed command-line arguments."""
    fields = {f.name for f in dataclasses.fields(Config)} - {"preset"}
    return default_config(args.preset, **{k: v for k, v in vars(args).items() if k in fields})


def prepare(cfg: Config, *, plot_path: str | None = None, quiet: bool = False) -> None:
    """Nothing to load; checks that matplotlib is there when a plot is asked for."""
    if plot_path is not None:
        check_plot_available()
