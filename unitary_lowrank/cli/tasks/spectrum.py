r"""``unitary-lowrank spectrum``: how low-rank are the gradients of unitary weights? (Fig. 1a).

Fig. 1a of the projUNN paper shows that a rank-k approximation captures most of
the Frobenius norm of the gradient of an orthogonal weight during training
(the 512×512 blocks of a convolution of ResNet-9 on CIFAR-10; its appendix E
the recurrent matrix of an RNN), which is what makes the rank-1 to rank-16 steps
of projUNN work. This command measures the same on two small networks trained
here with :class:`~unitary_lowrank.torch.ProjUNN` (projUNN-T, rank 1, LSI
sketch, RMSprop's direction):

``rnn``
    An :class:`~unitary_lowrank.torch.OrthogonalRNN` (modReLU, Henaff
    initialisation) on the copy-memory task (the batches of
    :func:`unitary_lowrank.cli.tasks.data.copy_batch`, cross-entropy at every
    step); the gradient of its recurrent matrix ``weight_hh`` (hidden ×
    hidden). (The NumPy training loop of ``copy``/``adding``/``pixels`` keeps its
    gradient inside the loop, so a torch network stands in for it.)
``conv``
    The plain CNN of ``unitary-lowrank cnn`` (zero-padding lift, orthogonal
    convolutions and MaxMin, linear read-out) on scikit-learn's 8×8 digits; the
    gradient of the last convolution, one ``C × C`` block per frequency.

At the recorded steps the singular values ``σ_1 >= σ_2 >= …`` of each gradient
are computed in double precision (before the optimizer's step) and stored
normalised by ``σ_1``, with the fraction of the energy ``Σ_{i<=k} σ_i² / Σ σ_i²``
that the best rank-k approximation keeps, for k in `ranks` (1, 4, 16). For the
convolution the fraction is that of the whole layer's gradient kept by a rank-k
approximation of every frequency (what ProjUNN's batched step sketches), and the
median over the frequencies. For scale, ``random_reference`` gives the same
fractions for a Gaussian matrix of the same shape.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, TextIO

import numpy as np

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

__all__ = ["PARTS", "Config", "cumulative_energy", "default_config", "energy_fractions",
           "format_summary", "plot", "run", "singular_values"]

PARTS = ("rnn", "conv")


@dataclasses.dataclass
class Config:
    """Settings of a ``spectrum`` run (see the module docstring).

    Attributes
    ----------
    parts : tuple of str
        Which networks: ``"rnn"``, ``"conv"`` or both.
    steps : int
        Training steps of each network.
    record_every : int
        Steps between two records (step 1, the first gradient, and the last step
        are always recorded).
    ranks : tuple of int
        The k of the energy fractions.
    hidden, seq_len, rnn_batch : int
        RNN: hidden size, the copy task's delay T, batch size.
    channels, depth, conv_batch : int
        CNN: channels, orthogonal convolutions, batch size.
    lr, lr_divider : float
        ProjUNN's learning rate (RMSprop's direction), divided by `lr_divider`
        for the orthogonal weights.
    seed, threads : int
        Seed; torch threads.
    """

    parts: tuple[str, ...] = PARTS
    steps: int = 300
    record_every: int = 100
    ranks: tuple[int, ...] = (1, 4, 16)
    hidden: int = 128
    seq_len: int = 50
    rnn_batch: int = 64
    channels: int = 32
    depth: int = 4
    conv_batch: int = 64
    lr: float = 1e-3
    lr_divider: float = 8.0
    seed: int = 0
    threads: int | None = 1

    def validate(self) -> None:
        """Raise :class:`ExperimentError` naming the first setting that cannot work."""
        if not self.parts:
            raise ExperimentError("--parts must name rnn, conv or both")
        for p in self.parts:
            check_choice("parts", p, PARTS)
        for name in ("steps", "record_every", "hidden", "seq_len", "rnn_batch", "channels",
                     "depth", "conv_batch"):
            check_positive(name, getattr(self, name))
        check_positive("seed", self.seed, least=0)
        if self.threads is not None:
            check_positive("threads", self.threads)
        check_positive("lr", self.lr, integer=False, least=0)
        check_positive("lr_divider", self.lr_divider, integer=False, least=0)
        if self.channels % 2:
            raise ExperimentError(f"--channels must be even (MaxMin sorts pairs of channels), "
                                  f"got {self.channels}")
        if not self.ranks:
            raise ExperimentError("--ranks must list at least one rank")
        for k in self.ranks:
            check_positive("ranks", k)


def default_config(**overrides: Any) -> Config:
    """The defaults with `overrides` (None values ignored), validated.

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks.spectrum import default_config
    >>> default_config(parts=["rnn"], steps=10).parts
    ('rnn',)
    """
    values = {k: v for k, v in overrides.items() if v is not None}
    for key in ("parts", "ranks"):
        if key in values:
            values[key] = tuple(dict.fromkeys(values[key]))
    cfg = Config(**values)
    cfg.validate()
    return cfg


# ------------------------------------------------------------------------ measures
def singular_values(G: Any) -> np.ndarray:
    """Singular values of a matrix or a batch of matrices, descending, in float64.

    Parameters
    ----------
    G : torch.Tensor or numpy.ndarray, shape (..., m, n)
        Real or complex.

    Returns
    -------
    numpy.ndarray, shape (..., min(m, n))
    """
    a = G.detach().cpu().numpy() if hasattr(G, "detach") else np.asarray(G)
    a = a.astype(np.complex128 if np.iscomplexobj(a) else np.float64)
    return np.linalg.svd(a, compute_uv=False)


def energy_fractions(s: np.ndarray, ranks: tuple[int, ...]) -> dict[str, float | None]:
    """``Σ_{i<=k} σ_i² / Σ σ_i²`` for each k of `ranks` (the best rank-k approximation's share).

    Parameters
    ----------
    s : numpy.ndarray, shape (..., r)
        Singular values, descending along the last axis; leading axes are
        summed over (a batch of blocks: the share of the whole).
    ranks : tuple of int
        The k; a k above r gives 1.

    Returns
    -------
    dict
        ``{str(k): fraction}`` (None when the gradient is zero).

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank.cli.tasks.spectrum import energy_fractions
    >>> energy_fractions(np.array([3.0, 1.0, 0.0]), (1, 2, 16))
    {'1': 0.9, '2': 1.0, '16': 1.0}
    """
    sq = np.asarray(s, dtype=np.float64) ** 2
    total = float(sq.sum())
    cum = np.cumsum(sq, axis=-1)
    out: dict[str, float | None] = {}
    for k in ranks:
        kept = float(cum[..., min(k, sq.shape[-1]) - 1].sum())
        out[str(k)] = None if total == 0 else kept / total
    return out


def _normalised(s: np.ndarray) -> list[float]:
    return (s / s[0]).tolist() if s.size and s[0] > 0 else s.tolist()


def _random_reference(shape: tuple[int, ...], complex_: bool, ranks: tuple[int, ...],
                      seed: int) -> dict[str, float | None]:
    rng = np.random.default_rng(seed)
    G = rng.standard_normal(shape)
    if complex_:
        G = G + 1j * rng.standard_normal(shape)
    return energy_fractions(singular_values(G), ranks)


def cumulative_energy(s: np.ndarray) -> list[float]:
    """The energy share of every rank k = 1 … r (leading axes of `s` summed over).

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank.cli.tasks.spectrum import cumulative_energy
    >>> cumulative_energy(np.array([[2.0, 1.0], [1.0, 0.0]]))
    [0.8333333333333334, 1.0]
    """
    sq = np.asarray(s, dtype=np.float64) ** 2
    total = float(sq.sum())
    if total == 0:
        return []
    cum = np.cumsum(sq, axis=-1).reshape(-1, sq.shape[-1]).sum(axis=0)
    return (cum / total).tolist()


def _record_matrix(step: int, loss: float, s: np.ndarray, ranks: tuple[int, ...]
                   ) -> dict[str, Any]:
    return {"step": step, "loss": loss, "gradient_norm": float(np.sqrt(np.sum(s**2))),
            "energy": energy_fractions(s, ranks), "cumulative_energy": cumulative_energy(s),
            "singular_values": _normalised(s)}


def _record_blocks(step: int, loss: float, s: np.ndarray, ranks: tuple[int, ...]
                   ) -> dict[str, Any]:
    """A record of a convolution: ``s`` (frequencies, C) singular values per frequency."""
    per = [energy_fractions(row, ranks) for row in s]
    norms = np.sqrt(np.sum(s**2, axis=1))
    top = int(np.argmax(norms))
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = s / s[:, :1]
    scaled = scaled[np.isfinite(scaled).all(axis=1)]
    return {
        "step": step, "loss": loss, "gradient_norm": float(np.sqrt(np.sum(norms**2))),
        "energy": energy_fractions(s, ranks),
        "cumulative_energy": cumulative_energy(s),
        "median_energy": {str(k): float(np.median([p[str(k)] for p in per
                                                   if p[str(k)] is not None]))
                          if any(p[str(k)] is not None for p in per) else None
                          for k in ranks},
        "frequencies": int(s.shape[0]),
        "singular_values": (np.median(scaled, axis=0).tolist() if scaled.size
                            else s[0].tolist()),
        "largest_frequency_singular_values": _normalised(s[top]),
    }


def _conv_singular_values(conv: Any) -> np.ndarray:
    parts = [singular_values(p.grad) for p in (conv.weight_real, conv.weight_complex)
             if p is not None and p.grad is not None]
    return np.concatenate(parts, axis=0)


# -------------------------------------------------------------------------- the run
def _recorded(step: int, cfg: Config) -> bool:
    return step == 1 or step % cfg.record_every == 0 or step == cfg.steps


def run(cfg: Config, *, stream: TextIO | None = None, quiet: bool = False, bar: bool = True,
        prepared: Any = None) -> dict[str, Any]:
    """Train the networks of `cfg`, recording the spectra of their gradients.

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
    prepared : optional
        The digits as :class:`~unitary_lowrank.cli.tasks.cnn.ImageData`
        (loaded here when None and ``"conv"`` is asked for).

    Returns
    -------
    dict
        The settings, ``results`` (``{"rnn": {...}, "conv": {...}}``, each with
        its ``shape``, ``records`` (``step``, ``loss``, ``gradient_norm``,
        ``energy`` per k, ``cumulative_energy`` for every k, ``singular_values``
        normalised by the largest; for
        the convolution also ``median_energy`` over the frequencies) and
        ``random_reference``; ``diverged_at`` and ``diverged_because`` when
        ProjUNN refused a step), ``iterations``, ``wall_seconds`` and
        ``stop_reason`` (``"done"``, ``"diverged"``).

    Raises
    ------
    ExperimentInterrupted
        On Ctrl-C, carrying the records so far.

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks.spectrum import default_config, run
    >>> s = run(default_config(parts=["rnn"], steps=2, hidden=8, seq_len=3, rnn_batch=4),
    ...         quiet=True)
    >>> [r["step"] for r in s["results"]["rnn"]["records"]], s["results"]["rnn"]["shape"]
    ([1, 2], [8, 8])
    """
    cfg.validate()
    torch = import_torch()
    report = Reporter(stream, cfg.steps * len(cfg.parts), quiet=quiet, bar=bar)
    parts: dict[str, dict[str, Any]] = {}
    reason = "done"
    t0 = time.perf_counter()
    with blas_threads(cfg.threads):
        try:
            for i, part in enumerate(cfg.parts):
                parts[part] = {"records": [], "steps_done": 0}
                if part == "rnn":
                    _rnn(cfg, parts[part], report, i * cfg.steps, torch)
                else:
                    _conv(cfg, parts[part], report, i * cfg.steps, torch, prepared)
        except KeyboardInterrupt:
            reason = "interrupted"
            report.say("interrupted: the summary reports the records so far")
    report.close()
    if reason == "done" and any("diverged_at" in p for p in parts.values()):
        reason = "diverged"
    settings = dataclasses.asdict(cfg)
    settings["parts"], settings["ranks"] = list(cfg.parts), list(cfg.ranks)
    summary = {"experiment": "spectrum", "figure": "Fig. 1a", **settings, "results": parts,
               "iterations": sum(p["steps_done"] for p in parts.values()),
               "wall_seconds": time.perf_counter() - t0, "stop_reason": reason}
    if reason == "interrupted":
        raise ExperimentInterrupted(summary)
    return summary


def _optimizer(cfg: Config, model: Any) -> Any:
    from unitary_lowrank.torch import ProjUNN, param_groups

    groups = param_groups(model)
    for g in groups:
        if g["constrained"]:
            g["lr"] = cfg.lr / cfg.lr_divider
    return ProjUNN(groups, lr=cfg.lr, method="exp", rank=1, sampler="lsi",
                   direction="rmsprop", generator=cfg.seed)


def _step(opt: Any, out: dict[str, Any], step: int, report: Reporter, part: str) -> bool:
    """The optimizer's step; False (the part stops, diverged) when ProjUNN refuses it."""
    try:
        opt.step()
    except ValueError as exc:  # a gradient that is not finite, or whose square overflows
        why = " ".join(str(exc).split())
        out["diverged_at"], out["diverged_because"] = step, why
        report.say(f"{part:>4}  step {step:>5}  the step was refused ({why}): stopping "
                   "(diverged)")
        return False
    return True


def _say(report: Reporter, part: str, rec: dict[str, Any]) -> None:
    shares = "  ".join(f"top-{k} {100 * v:.1f}%" for k, v in rec["energy"].items()
                       if v is not None)
    report.say(f"{part:>4}  step {rec['step']:>5}  loss {rec['loss']:.4g}  |G| "
               f"{rec['gradient_norm']:.3g}  energy {shares}")


def _rnn(cfg: Config, out: dict[str, Any], report: Reporter, offset: int, torch: Any) -> None:
    from unitary_lowrank.torch import OrthogonalRNN

    from .data import MARKER, N_SYMBOLS, copy_batch

    torch.manual_seed(cfg.seed)
    n_in, n_out = MARKER + 1, N_SYMBOLS + 1
    model = OrthogonalRNN(n_in, cfg.hidden, nonlinearity="modrelu", init="henaff",
                          output_size=n_out, batch_first=False)
    opt = _optimizer(cfg, model)
    rng = np.random.default_rng(cfg.seed)
    eye_in = torch.eye(n_in)
    out["shape"] = [cfg.hidden, cfg.hidden]
    out["task"] = f"copy, T = {cfg.seq_len}, hidden {cfg.hidden}, batch {cfg.rnn_batch}"
    out["random_reference"] = _random_reference((cfg.hidden, cfg.hidden), False, cfg.ranks,
                                                cfg.seed)
    running = None
    for step in range(1, cfg.steps + 1):
        x, y = copy_batch(cfg.rnn_batch, cfg.seq_len, rng)
        logits, _ = model(eye_in[torch.from_numpy(x)])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, n_out),
                                                 torch.from_numpy(y).reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        value = loss.item()
        if _recorded(step, cfg):
            rec = _record_matrix(step, value, singular_values(model.weight_hh.grad), cfg.ranks)
            out["records"].append(rec)
            _say(report, "rnn", rec)
        if not _step(opt, out, step, report, "rnn"):
            return
        out["steps_done"] = step
        running = value if running is None else 0.9 * running + 0.1 * value
        if report.enabled and step % 10 == 0:
            report.update(offset + step, running, running / math.log(N_SYMBOLS + 1), 0.0)


def _conv(cfg: Config, out: dict[str, Any], report: Reporter, offset: int, torch: Any,
          prepared: Any) -> None:
    from . import cnn

    ccfg = cnn.default_config(dataset="digits", depth=cfg.depth, channels=cfg.channels,
                              nonlinearity="maxmin", seed=cfg.seed, threads=None)
    data = prepared if prepared is not None else cnn.load_data(ccfg, quiet=True)
    torch.manual_seed(cfg.seed)
    model = cnn.build_model(ccfg, data.shape)
    convs = cnn.orthogonal_convs(model)
    last = convs[-1]
    opt = _optimizer(cfg, model)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(data.train_y)
    out["shape"] = [cfg.channels, cfg.channels]
    out["task"] = (f"digits 8×8, plain CNN of {cfg.depth} orthogonal convolutions of "
                   f"{cfg.channels} channels, batch {cfg.conv_batch}; the last convolution")
    out["random_reference"] = _random_reference((cfg.channels, cfg.channels), True, cfg.ranks,
                                                cfg.seed)
    order, at, running = torch.randperm(n, generator=gen), 0, None
    for step in range(1, cfg.steps + 1):
        if at + cfg.conv_batch > n:
            order, at = torch.randperm(n, generator=gen), 0
        idx = order[at:at + cfg.conv_batch]
        at += cfg.conv_batch
        loss = torch.nn.functional.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        value = loss.item()
        if _recorded(step, cfg):
            rec = _record_blocks(step, value, _conv_singular_values(last), cfg.ranks)
            out["records"].append(rec)
            _say(report, "conv", rec)
        if not _step(opt, out, step, report, "conv"):
            return
        out["steps_done"] = step
        running = value if running is None else 0.9 * running + 0.1 * value
        if report.enabled and step % 10 == 0:
            report.update(offset + step, running, running / math.log(10),
                          last.orthogonality_error())


# ----------------------------------------------------------------------- reporting
def format_summary(s: dict[str, Any]) -> str:
    """The lines printed at the end of a ``spectrum`` run.

    Parameters
    ----------
    s : dict
        A summary from :func:`run`.

    Returns
    -------
    str
    """
    ks = [str(k) for k in s["ranks"]]
    lines = [f"spectrum (Fig. 1a): singular values of the gradients of unitary weights, "
             f"{s['steps']} training steps (projUNN-T rank 1), seed {s['seed']}",
             f"  wall time       {s['wall_seconds']:.1f} s"
             + {"interrupted": "  (stopped: interrupted)",
                "diverged": "  (a network stopped: DIVERGED)"}.get(s["stop_reason"], "")]
    head = "  ".join(f"top-{k:<3}" for k in ks)
    for name, p in s["results"].items():
        shape = "×".join(map(str, p.get("shape", [])))
        lines.append(f"  {name}: {p.get('task', '')} ({shape} gradient"
                     + (", per frequency" if name == "conv" else "") + ")")
        if p.get("diverged_at") is not None:
            lines.append(f"    DIVERGED at step {p['diverged_at']}: {p['diverged_because']}")
        lines.append(f"    step    {head}   (energy kept by the best rank-k approximation)")
        for r in p["records"]:
            cells = "  ".join(f"{100 * r['energy'][k]:5.1f}%" if r["energy"][k] is not None
                              else "    - " for k in ks)
            extra = ""
            if "median_energy" in r:
                extra = "   median over frequencies " + ", ".join(
                    f"{100 * r['median_energy'][k]:.1f}%" for k in ks
                    if r["median_energy"][k] is not None)
            lines.append(f"    {r['step']:>5}   {cells}{extra}")
        ref = p.get("random_reference") or {}
        lines.append("    a Gaussian matrix of the same shape: " + ", ".join(
            f"top-{k} {100 * ref[k]:.1f}%" for k in ks if ref.get(k) is not None))
    return "\n".join(lines)


def plot(s: dict[str, Any], path: str) -> None:
    """PNG: normalised singular values (log scale) at each recorded step, and energy against k.

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

    parts = [(name, p) for name, p in s["results"].items() if p["records"]]
    fig = Figure(figsize=(4.2 * (len(parts) + 1), 4.0), dpi=110)
    axes = fig.subplots(1, len(parts) + 1, squeeze=False)[0]
    cmap = matplotlib.colormaps["viridis"]
    ax_e = axes[-1]
    for ax, (name, p) in zip(axes, parts, strict=False):
        recs = p["records"]
        for j, r in enumerate(recs):
            sv = [v for v in r["singular_values"] if v > 0]
            ax.plot(range(1, len(sv) + 1), sv, color=cmap(j / max(len(recs) - 1, 1)),
                    label=f"step {r['step']}")
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xlabel("index i")
        ax.set_ylabel(r"$\sigma_i / \sigma_1$" + (" (median over frequencies)" if name == "conv"
                                                    else ""))
        shape = "×".join(map(str, p.get("shape", [])))
        ax.set_title(f"{name}: {shape} gradient" + (" per frequency" if name == "conv" else ""),
                     fontsize="medium")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="x-small")
        for j, r in enumerate(recs):
            cum = r.get("cumulative_energy") or []
            if cum:
                ax_e.plot(range(1, len(cum) + 1), [100 * c for c in cum],
                          ls="-" if name == "rnn" else "--", lw=1.2,
                          color=cmap(j / max(len(recs) - 1, 1)),
                          label=f"{name}, step {r['step']}")
    ax_e.set_xscale("log")
    ax_e.set_xlabel("rank k")
    ax_e.set_ylabel("energy kept by rank k (%)")
    ax_e.set_title(r"$\sum_{i\leq k}\sigma_i^2 / \sum_i \sigma_i^2$ (conv: whole layer)",
                   fontsize="medium")
    ax_e.grid(True, which="both", alpha=0.3)
    ax_e.legend(fontsize="x-small")
    fig.suptitle(f"Gradient spectra during training (projUNN-T rank 1), seed {s['seed']}",
                 fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, format="png")


# ----------------------------------------------------------------- command line
def _parts(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def add_arguments(p: Any, types: Any) -> None:
    """The options of ``unitary-lowrank spectrum`` (`types`: the parser's value checkers)."""
    d = Config()
    p.add_argument("--parts", type=_parts,
                   help="comma separated: rnn (copy task), conv (CNN on digits); default: "
                        + ",".join(d.parts))
    p.add_argument("--steps", type=types.positive_int,
                   help=f"training steps of each network; default: {d.steps}")
    p.add_argument("--record-every", type=types.positive_int,
                   help="steps between records (step 1 and the last are recorded too); "
                        f"default: {d.record_every}")
    p.add_argument("--ranks", type=types.int_list,
                   help="k of the energy fractions, comma separated; default: "
                        + ",".join(map(str, d.ranks)))
    p.add_argument("--hidden", type=types.positive_int, help=f"RNN hidden size; default: "
                                                             f"{d.hidden}")
    p.add_argument("--seq-len", type=types.positive_int,
                   help=f"copy task delay T; default: {d.seq_len}")
    p.add_argument("--rnn-batch", type=types.positive_int, help=f"default: {d.rnn_batch}")
    p.add_argument("--channels", type=types.positive_int,
                   help=f"CNN channels (even); default: {d.channels}")
    p.add_argument("--depth", type=types.positive_int,
                   help=f"CNN orthogonal convolutions; default: {d.depth}")
    p.add_argument("--conv-batch", type=types.positive_int, help=f"default: {d.conv_batch}")
    p.add_argument("--lr", type=types.positive_float, help=f"default: {d.lr:g}")
    p.add_argument("--lr-divider", type=types.positive_float,
                   help=f"the orthogonal weights step at lr / divider; default: "
                        f"{d.lr_divider:g}")
    common_arguments(p, types)


def config_from_args(args: Any) -> Config:
    """The validated :class:`Config` of parsed command-line arguments."""
    fields = {f.name for f in dataclasses.fields(Config)}
    return default_config(**{k: v for k, v in vars(args).items() if k in fields})


def prepare(cfg: Config, *, plot_path: str | None = None, quiet: bool = False) -> Any:
    """Check matplotlib (for a plot) and load the digits when the CNN is asked for."""
    if plot_path is not None:
        check_plot_available()
    import_torch()
    if "conv" in cfg.parts:
        from . import cnn

        return cnn.load_data(cnn.default_config(dataset="digits"), quiet=quiet)
    return None
