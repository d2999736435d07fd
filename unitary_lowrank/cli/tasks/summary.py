"""The summary of a run: the dict :func:`~.loop.train` returns, its text, JSON and plot.

The summary holds the settings of the run and what it did (:func:`summarize`);
:func:`format_summary` prints it on one screen, :func:`write_json` saves it, and
:func:`plot_histories` draws one or more of them.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .config import LOWRANK_METHODS, Config, ConfigError

__all__ = [
    "PIXEL_TARGETS",
    "STOP_REASONS",
    "check_plot_available",
    "format_summary",
    "percent",
    "plot_histories",
    "summarize",
    "write_json",
]

#: Why a run stopped (the summary's ``stop_reason``): it ran all its steps, met the
#: ``stop_below`` test, diverged, was interrupted (Ctrl-C), or its validation accuracy
#: stopped improving (``plateau``: `patience` evaluations without a new best after the
#: last of its `max_decays` learning-rate decays; pixels).
STOP_REASONS = ("steps", "target", "diverged", "interrupted", "plateau")

#: Pixels: the test accuracy a run must reach (``target_met``), by dataset. Digits: the
#: issue's bar for the CPU defaults; the others have no target of this project's own.
PIXEL_TARGETS = {"digits": 0.95}

def percent(frac: float) -> str:
    """A fraction as a percentage: two decimals, or three digits once it is huge."""
    return f"{100 * frac:.2f}%" if abs(frac) < 1e4 else f"{100 * frac:.3g}%"


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _settings(cfg: Config) -> dict[str, Any]:
    """The settings half of the summary (None for those the method does not use)."""
    lowrank = cfg.method in LOWRANK_METHODS
    pixels = cfg.task == "pixels"
    return {
        "task": cfg.task,
        "method": cfg.method,
        "rank": cfg.rank if lowrank else None,
        "sampler": cfg.sampler if lowrank else None,
        "oversample": cfg.oversample if lowrank and cfg.sampler != "lsi" else None,
        "seq_len": cfg.seq_len,
        "hidden": cfg.hidden,
        "batch": cfg.batch,
        "steps": cfg.steps,
        "lr": cfg.lr,
        "unitary_lr_divider": cfg.unitary_lr_divider,
        "unitary_direction": (
            None if cfg.method in ("frozen", "unconstrained") else cfg.unitary_direction
        ),
        "lr_decay": cfg.lr_decay,
        "decay_below": None if pixels else cfg.decay_below,
        "stop_below": cfg.stop_below,
        "stop_recall": cfg.stop_recall if cfg.task == "copy" else None,
        "epoch_steps": cfg.epoch_steps,
        "epoch_decay": cfg.epoch_decay if cfg.epoch_steps is not None else None,
        "patience": cfg.patience,
        "max_decays": cfg.max_decays if cfg.patience is not None else None,
        "nonlinearity": cfg.nonlinearity,
        "init": cfg.init,
        "io_init": cfg.io_init,
        "seed": cfg.seed,
        "dtype": cfg.dtype,
        "backend": cfg.backend,
        "dataset": cfg.dataset if pixels else None,
        "downsample": cfg.downsample if pixels else None,
        "permute": cfg.permute if pixels else None,
        "train_size": None if pixels else cfg.train_size,
        "markers": None if pixels else cfg.markers,
        "hidden_bias": cfg.hidden_bias,
        "output_bias": cfg.output_bias,
    }


def summarize(run: Any, final: dict[str, Any], wall: float) -> dict[str, Any]:
    """The summary of a run: its settings, then what it did (see :func:`~.loop.train`).

    `run` is the finished run of the loop (its settings, history, events, task and
    update of U), `final` the evaluation the summary reports and `wall` the seconds
    the steps took.
    """
    cfg, done, baseline, update_U = run.cfg, run.done, run.task.baseline, run.update_U
    reason = run.stop_reason
    summary = {
        **_settings(cfg),
        "iterations": done,
        "wall_seconds": wall,
        "seconds_per_step": wall / max(done, 1),
        "final_loss": _finite_or_none(final["loss"]),
        "baseline_loss": baseline,
        "loss_fraction": _finite_or_none(final["loss"] / baseline),
        "accuracy": final["accuracy"],
        "unitarity_error": _finite_or_none(final["unitarity_error"]),
        "seconds_per_update": update_U.seconds / update_U.count if update_U.count else 0.0,
        "stop_reason": reason,
        "diverged": reason == "diverged",
        "stopped_early": reason in ("target", "plateau") and done < cfg.steps,
        "target_met": _target_met(cfg, final, baseline),
        "target": _target(cfg, baseline),
        "events": run.events,
        "history": [
            {k: (_finite_or_none(v) if isinstance(v, float) else v) for k, v in h.items()}
            for h in run.history
        ],
    }
    if run.task.pixels is not None:
        px = run.task.pixels
        best = next((h for h in run.history if run.best and h["step"] == run.best[1]), None)
        summary["seq_len"] = run.task.seq_len
        summary.update({
            "side": int(px.side),
            "train_size": int(px.train_x.shape[0]),
            "val_size": int(px.val_x.shape[0]),
            "test_size": int(px.test_x.shape[0]),
            "best_step": None if run.best is None else run.best[1],
            "val_loss": None if best is None else _finite_or_none(best["loss"]),
            "val_accuracy": None if best is None else best["accuracy"],
        })
    return summary


def _target(cfg: Config, baseline: float) -> dict[str, Any] | None:
    """The target a run is measured against, for the plots: loss and/or accuracy."""
    if cfg.task == "copy":
        return {"loss": 0.02 * baseline, "accuracy": 0.99}
    if cfg.task == "adding":
        return {"loss": 0.01, "accuracy": None}
    acc = PIXEL_TARGETS.get(cfg.dataset)
    return None if acc is None else {"loss": None, "accuracy": acc}


def _target_met(cfg: Config, final: dict[str, Any], baseline: float) -> bool | None:
    """Whether the run met its target.

    Copy: below 2 % of the baseline with >= 99 % recall; adding: MSE below 0.01;
    pixels: the test accuracy of :data:`PIXEL_TARGETS` (None: no target).
    """
    loss = final["loss"]
    if cfg.task == "pixels":
        goal = PIXEL_TARGETS.get(cfg.dataset)
        if goal is None:
            return None
        return bool(final["accuracy"] is not None and final["accuracy"] >= goal)
    if not math.isfinite(loss):
        return False
    if cfg.task == "copy":
        return bool(loss < 0.02 * baseline and final["accuracy"] >= 0.99)
    return bool(loss < 0.01)


def format_summary(s: dict[str, Any]) -> str:
    """The one-screen summary printed at the end of a run.

    Parameters
    ----------
    s : dict
        A summary from :func:`~.loop.train`.

    Returns
    -------
    str
        Several lines of text.
    """
    if s["method"] in LOWRANK_METHODS:
        how = f"{s['method']} (rank {s['rank']}, {s['sampler']} sampler)"
    else:
        how = s["method"]
    size = "delay T" if s["task"] == "copy" else "length T"
    if s["task"] == "pixels":
        side = s.get("side")
        what = f"{s.get('dataset')} {side}×{side}" if side else str(s.get("dataset"))
        size = f"{what}{', permuted' if s.get('permute') else ''}, length T"
    lines = [
        (
            f"{s['task']} task, {size} = {s['seq_len']}, hidden {s['hidden']}, "
            f"batch {s['batch']}, {s['nonlinearity']}, {s['init']} init, seed {s['seed']}"
        ),
        f"  U updated by    {how}, lr {s['lr']:g} / {s['unitary_lr_divider']:g}"
        + {"rmsprop": " along RMSprop's direction", "adam": " along Adam's direction"}.get(
            str(s.get("unitary_direction")), ""),
        f"  backend         {s['backend']}, {s['dtype']}",
        f"  steps           {s['iterations']} of {s['steps']}{_why_stopped(s)}",
        (
            f"  wall time       {s['wall_seconds']:.1f} s ({1e3 * s['seconds_per_step']:.1f} "
            f"ms a step; U update alone {1e3 * s['seconds_per_update']:.3f} ms)"
        ),
    ]
    loss, frac = s["final_loss"], s["loss_fraction"]
    if not s["history"]:
        lines.append("  test loss       not evaluated")
    elif loss is None:
        lines.append("  test loss       not finite")
    else:
        lines.append(
            f"  test loss       {loss:.4g} = {percent(frac)} of the baseline "
            f"{s['baseline_loss']:.4g}"
        )
    if s["task"] == "pixels":
        if s["accuracy"] is not None:
            lines.append(f"  test accuracy   {100 * s['accuracy']:.2f}% of {s.get('test_size')} "
                         "images")
        if s.get("val_accuracy") is not None:
            lines.append(f"  validation      {100 * s['val_accuracy']:.2f}% (the state "
                         f"reported: its best, at step {s['best_step']})")
    elif s["accuracy"] is not None:
        lines.append(f"  recall          {100 * s['accuracy']:.2f}% of the recalled symbols right")
    ue = s["unitarity_error"]
    lines.append("  ‖UᵀU − I‖₂      " + ("not finite" if ue is None else f"{ue:.2e}"))
    target: str | None
    if s["task"] == "copy":
        target = "< 2% of the baseline and >= 99% recall"
    elif s["task"] == "adding":
        target = "MSE < 0.01"
    else:
        goal = (s.get("target") or {}).get("accuracy")
        target = None if goal is None else f"test accuracy >= {100 * goal:g}%"
    if target is not None and s.get("target_met") is not None:
        lines.append(f"  target ({target}): {'met' if s['target_met'] else 'NOT met'}")
    return "\n".join(lines)


def _stop_reason(s: dict[str, Any]) -> str:
    """Why the run of summary `s` stopped, one of :data:`STOP_REASONS`.

    A summary without a ``stop_reason`` key gets it from its ``diverged`` and
    ``stopped_early`` flags.
    """
    reason = s.get("stop_reason")
    if reason in STOP_REASONS:
        return reason
    if s.get("diverged"):
        return "diverged"
    return "target" if s.get("stopped_early") else "steps"


def _why_stopped(s: dict[str, Any]) -> str:
    """The end of the summary's steps line: why the run stopped where it did."""
    reason = _stop_reason(s)
    if reason == "diverged":
        return " (stopped: DIVERGED)"
    if reason == "interrupted":
        return " (stopped: interrupted)"
    if reason == "steps":
        return ""
    if reason == "plateau":
        return (f" (stopped early: no better validation accuracy in {s.get('patience')} "
                "evaluations)")
    test = "the stop test passed"
    if s.get("stop_below") is not None:
        test = f"below {100 * s['stop_below']:g}% of the baseline"
        if s.get("stop_recall") is not None:
            test += f" with >= {100 * s['stop_recall']:g}% recall"
    if s["iterations"] < s["steps"]:
        return f" (stopped early: {test})"
    return f" ({test} at the last step)"


def write_json(summary: dict[str, Any], path: str) -> None:
    """Write a summary as JSON (non-finite numbers become null).

    Parameters
    ----------
    summary : dict
        A summary from :func:`~.loop.train`.
    path : str
        Output file.
    """
    text = json.dumps(summary, indent=2, allow_nan=False) + "\n"  # fails before opening
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def check_plot_available() -> None:
    """Raise :class:`~.config.ConfigError` with an install hint when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--plot needs matplotlib: pip install 'unitary_lowrank[plot]'"
        ) from None


def plot_histories(summaries: list[dict[str, Any]], path: str, *, title: str | None = None) -> None:
    """PNG of one or more runs of one task (see :mod:`unitary_lowrank.cli.tasks.plots`).

    Test loss (pixels: validation loss) against steps with the baseline and the
    target, the accuracy (copy: recall) when there is one, ``‖UᵀU − I‖₂``, the
    learning-rate decays and the early stop, one colour per run, with a legend.

    Parameters
    ----------
    summaries : list of dict
        Summaries from :func:`~.loop.train` (or read back from their JSON), of one task.
    path : str
        Output PNG file.
    title : str, optional
        Figure title; default: the task, its sizes, the seeds and methods.

    Raises
    ------
    ConfigError
        If matplotlib is not installed.
    """
    check_plot_available()
    from .plots import plot_histories as draw

    draw(summaries, path, title=title)
