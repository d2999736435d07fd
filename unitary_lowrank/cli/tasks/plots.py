"""The figure of one or more training runs (``--plot`` and ``unitary-lowrank plot``).

A figure a reader can read without the log: the test loss (pixels: the
validation loss) against steps with the memoryless baseline and the target, a
panel of the accuracy (copy: the recall; pixels: the validation accuracy, and
the final test accuracy as a star) when the task has one, and a panel of
``‖UᵀU − I‖₂``; the learning-rate decays are dotted vertical lines and the early
stop (or divergence) a cross, in the colour of their run; the title names the
task, its sizes, the seed(s) and the method(s).
"""

from __future__ import annotations

from typing import Any

__all__ = ["LOWRANK_METHODS", "plot_histories"]

#: Methods whose label carries a rank.
LOWRANK_METHODS = ("transport", "project", "cayley")

_LABEL_KEYS = ("unitary_direction", "nonlinearity", "sampler", "init", "hidden", "rank",
               "seq_len", "lr", "unitary_lr_divider", "dtype", "dataset", "downsample",
               "permute", "seed")


def _label(s: dict[str, Any], varying: list[str]) -> str:
    """The legend entry of a run: its method and whatever differs between the runs."""
    label = s["method"]
    if s["method"] in LOWRANK_METHODS and s.get("rank") is not None:
        label += f" (rank {s['rank']})"
    for k in varying:
        if k == "rank" or s.get(k) is None:
            continue
        if k == "unitary_direction":
            label += f", {s[k]} direction"
        elif k == "permute":
            label += ", permuted" if s[k] else ", in order"
        else:
            label += f", {k.replace('_', ' ')} {s[k]}"
    return label


def _title(summaries: list[dict[str, Any]]) -> str:
    first = summaries[0]
    task = first["task"]
    if task == "pixels":
        side = first.get("side")
        what = f"{first.get('dataset')}" + (f" {side}×{side}" if side else "")
        head = f"pixels: {what}{', permuted' if first.get('permute') else ''}"
    else:
        head = f"{task}, T = {first['seq_len']}"
    head += f", hidden {first['hidden']}"
    seeds = sorted({str(s.get("seed")) for s in summaries})
    methods = list(dict.fromkeys(s["method"] for s in summaries))
    return (f"{head}\n{'seed' if len(seeds) == 1 else 'seeds'} {', '.join(seeds)}; "
            f"{', '.join(methods)}")


def _points(s: dict[str, Any], key: str) -> tuple[list[float], list[float]]:
    pts = [(h["step"], h[key]) for h in s["history"] if h.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def _stop_step(s: dict[str, Any]) -> tuple[int, str] | None:
    """Where and why the run stopped before its last step (or diverged), else None."""
    reason = s.get("stop_reason")
    if reason is None:
        reason = "diverged" if s.get("diverged") else (
            "target" if s.get("stopped_early") else "steps")
    if reason in ("target", "plateau", "diverged", "interrupted") and (
            reason != "target" or s.get("iterations", 0) < s.get("steps", 0)):
        return int(s.get("iterations", 0)), reason
    return None


def plot_histories(summaries: list[dict[str, Any]], path: str, *, title: str | None = None) -> None:
    r"""PNG of the evaluations of one or more runs of one task, with a legend.

    Parameters
    ----------
    summaries : list of dict
        Summaries from :func:`unitary_lowrank.cli.tasks.train.train` (or read
        back from their JSON), of one task.
    path : str
        Output PNG file (written at `path` exactly, whatever its extension).
    title : str, optional
        Figure title; default: the task, its sizes, the seeds and methods.

    Examples
    --------
    >>> import os, pathlib, tempfile
    >>> from unitary_lowrank.cli.tasks.plots import plot_histories
    >>> run = {"task": "adding", "method": "frozen", "seq_len": 8, "hidden": 4, "seed": 0,
    ...        "baseline_loss": 1 / 6, "target": {"loss": 0.01, "accuracy": None},
    ...        "history": [{"step": 0, "loss": 0.2, "accuracy": None, "unitarity_error": 1e-7},
    ...                    {"step": 5, "loss": 0.1, "accuracy": None, "unitarity_error": 1e-7}]}
    >>> path = os.path.join(tempfile.mkdtemp(), "run.png")
    >>> plot_histories([run], path)
    >>> pathlib.Path(path).read_bytes()[1:4] == b"PNG"
    True
    """
    from matplotlib.figure import Figure

    first = summaries[0]
    task = first["task"]
    has_acc = any(h.get("accuracy") is not None for s in summaries for h in s["history"])
    has_uerr = any(h.get("unitarity_error") is not None for s in summaries for h in s["history"])
    rows = 1 + has_acc + has_uerr
    heights = [3.0] + [2.0] * (rows - 1)
    fig = Figure(figsize=(7.0, sum(heights) + 0.9), dpi=110)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": heights})[:, 0]
    ax_loss = axes[0]
    ax_acc = axes[1] if has_acc else None
    ax_u = axes[-1] if has_uerr else None
    varying = [k for k in _LABEL_KEYS
               if len({str(t.get(k)) for t in summaries if t.get(k) is not None}) > 1]
    split = "validation" if task == "pixels" else "test"
    marked: set[str] = set()

    def once(kind: str) -> str | None:  # a legend entry for the first mark of each kind
        if kind in marked:
            return None
        marked.add(kind)
        return kind

    for s in summaries:
        steps, losses = _points(s, "loss")
        line = ax_loss.plot(steps, losses, marker=".", ms=3, label=_label(s, varying))[0]
        color = line.get_color()
        if ax_acc is not None:
            a_steps, accs = _points(s, "accuracy")
            ax_acc.plot(a_steps, [100 * a for a in accs], marker=".", ms=3, color=color)
            best = s.get("best_step")
            if task == "pixels" and s.get("accuracy") is not None and best is not None:
                ax_acc.plot([best], [100 * s["accuracy"]], marker="*", ms=11,
                            color=color, mec="k", ls="none",
                            label=once("test accuracy (best validation state)"))
        if ax_u is not None:
            u_steps, uerrs = _points(s, "unitarity_error")
            kept = [(st, u) for st, u in zip(u_steps, uerrs, strict=True) if u > 0]
            if kept:  # exactly 0 (an identity start) has no place on a log scale
                ax_u.plot(*zip(*kept, strict=True), marker=".", ms=3, color=color)
        for e in s.get("events") or []:
            if e.get("event") == "decay":
                for ax in axes:
                    ax.axvline(e["step"], color=color, ls=":", lw=1, alpha=0.7)
                ax_loss.plot([], [], color="0.4", ls=":", lw=1,
                             label=once("learning rates decayed"))
        stop = _stop_step(s)
        if stop is not None and steps:
            at, reason = stop
            y = next((v for st, v in zip(steps, losses, strict=True) if st == at), losses[-1])
            ax_loss.plot([at], [y], marker="X", ms=10, color=color, mec="k", ls="none",
                         label=once("early stop" if reason in ("target", "plateau")
                                    else reason))
    baseline = first["baseline_loss"]
    base_label = {"copy": "memoryless baseline", "adding": "baseline (predict 1)",
                  "pixels": "baseline (ln 10: a uniform guess)"}.get(task, "baseline")
    ax_loss.axhline(baseline, color="k", ls="--", lw=1, label=base_label)
    target = first.get("target")
    if target is None and task in ("copy", "adding"):  # summaries of older versions
        target = {"loss": 0.02 * baseline if task == "copy" else 0.01,
                  "accuracy": 0.99 if task == "copy" else None}
    if target and target.get("loss") is not None:
        ax_loss.axhline(target["loss"], color="tab:green", ls="-.", lw=1,
                        label=f"target ({target['loss']:.3g})")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel({"copy": f"{split} cross-entropy", "adding": f"{split} MSE"}.get(
        task, f"{split} cross-entropy"))
    ax_loss.grid(True, which="both", alpha=0.3)
    ax_loss.legend(fontsize="x-small", loc="best")
    if ax_acc is not None:
        if target and target.get("accuracy") is not None:
            ax_acc.axhline(100 * target["accuracy"], color="tab:green", ls="-.", lw=1,
                           label=f"target ({100 * target['accuracy']:g}%)")
        later = [100 * h["accuracy"] for t in summaries for h in t["history"]
                 if h.get("accuracy") is not None and h["step"] > 0]
        if later:  # zoom on where the runs end up, past the chance level of step 0
            ax_acc.set_ylim(max(0.0, min(later) - 3.0), 100.5)
        ax_acc.set_ylabel("recall (%)" if task == "copy" else f"{split} accuracy (%)")
        ax_acc.grid(True, alpha=0.3)
        if ax_acc.get_legend_handles_labels()[0]:
            ax_acc.legend(fontsize="x-small", loc="lower right")
    if ax_u is not None:
        ax_u.set_yscale("log")
        ax_u.set_ylabel("‖UᵀU − I‖₂")
        ax_u.grid(True, which="both", alpha=0.3)
    axes[-1].set_xlabel("training step")
    fig.suptitle(title or _title(summaries), fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, format="png")
