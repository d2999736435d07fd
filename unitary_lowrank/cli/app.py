"""The command line's parser and subcommands (see :mod:`unitary_lowrank.cli`).

Each subcommand checks its options and output paths first, reporting a bad
command line as one line and exit status 2, then hands the work to
:mod:`unitary_lowrank.cli.tasks.train` (``copy``, ``adding``, ``pixels``), to
the paper's experiments in :mod:`unitary_lowrank.cli.tasks` (``toy``,
``spectrum``, ``cnn``), to :mod:`unitary_lowrank.cli.bench` (``bench``) or to
the plot of saved runs (``plot``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import unitary_lowrank

__all__ = ["main"]

PROG = "unitary-lowrank"


class _UsageError(Exception):
    """A bad command line: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises instead of printing the usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: error: {message}")


def _rank(text: str) -> int | str:
    """A positive int, or the word ``full``."""
    return "full" if text.strip().lower() == "full" else _positive_int(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def _int_list(text: str) -> list[int]:
    return [_positive_int(part) for part in text.split(",") if part.strip()]


def _str_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _add_train_options(p: argparse.ArgumentParser, task: str) -> None:
    from .tasks import train as T

    d = T.default_config(task)
    paper = {
        "copy": "T=1000, hidden 190, batch 128, lr 7e-4, divider 32, rank 1 by column "
                "sampling of c = k columns, lr x 0.9 every 4000 steps, 20000 steps, a fixed "
                "training set of 512000 sequences, the script's marker, no hidden bias",
        "adding": "T=200, hidden 170, batch 50, lr 1e-3, divider 32, identity init, lr x 0.94 "
                  "every 2000 steps, 100000 steps, a fixed training set of 100000 sequences, "
                  "the script's markers, no hidden bias, PyTorch's output bias",
        "pixels": "permuted 28x28 MNIST, modReLU, projUNN-D (project), identity init, hidden "
                  "170 (or --hidden 116/360/512), batch 128, lr 1e-3, no divider, LSI rank 1, "
                  "lr x 0.2 every 60 epochs, 200 epochs, PyTorch's output bias",
    }[task]
    p.add_argument("--preset", choices=["paper"],
                   help=f"the settings of the paper's code ({paper}; U along RMSprop's "
                        "direction); meant for a GPU. Explicit options override it")
    p.add_argument("--method", choices=T.METHODS,
                   help="update of U: transport (projUNN-T), project (projUNN-D), cayley, "
                        "dense-polar (dense SVD each step), unconstrained (RMSprop on U), "
                        f"frozen (never trained); default: {d.method}"
                        + (" (--preset paper: project)" if task == "pixels" else ""))
    p.add_argument("--rank", type=_rank,
                   help="rank of the sketched step on U, or 'full' (no sketch: the dense "
                        f"retraction of the whole step); default: {d.rank}")
    p.add_argument("--sampler", choices=T.SAMPLERS,
                   help=f"sketch of the step on U; default: {d.sampler}")
    p.add_argument("--oversample", type=_non_negative_int,
                   help="extra columns of the sketch: the randomized sampler draws rank + "
                        "oversample Gaussian columns, the column sampler rank + oversample "
                        "columns of the gradient (the paper's code: 0); default: "
                        f"{d.oversample}")
    if task != "pixels":
        p.add_argument("--seq-len", type=_positive_int,
                       help=("delay T between the symbols and the marker" if task == "copy"
                             else "sequence length T") + f"; default: {d.seq_len}")
    p.add_argument("--hidden", type=_positive_int, help=f"hidden size; default: {d.hidden}")
    p.add_argument("--batch", type=_positive_int, help=f"batch size; default: {d.batch}")
    p.add_argument("--steps", type=_positive_int,
                   help=f"maximum number of training steps; default: {d.steps}")
    p.add_argument("--lr", type=_positive_float,
                   help=f"RMSprop learning rate; default: {d.lr:g}")
    p.add_argument("--unitary-lr-divider", type=_positive_float,
                   help="the step on U is -(lr / divider) times its direction (see "
                        "--unitary-direction); "
                        f"default: {d.unitary_lr_divider:g}")
    p.add_argument("--unitary-direction", choices=T.DIRECTIONS,
                   help="direction of the step on U: the gradient itself, RMSprop's "
                        "gradient / (sqrt(running mean of gradient^2) + eps), as in the "
                        "projUNN paper's code, or Adam's (momentum and a bias-corrected "
                        f"second moment); default: {d.unitary_direction}")
    if task == "pixels":
        p.add_argument("--lr-decay", type=_positive_float,
                       help="multiply both learning rates by this after --patience "
                            "evaluations without a better validation accuracy (1: never); "
                            f"default: {d.lr_decay:g}")
        p.add_argument("--patience", type=_positive_int,
                       help="evaluations without a better validation accuracy before a "
                            f"decay (or the early stop); default: {d.patience}")
        p.add_argument("--max-decays", type=_non_negative_int,
                       help="stop at the next plateau after this many decays; default: "
                            f"{d.max_decays}")
    else:
        p.add_argument("--lr-decay", type=_positive_float,
                       help="multiply both learning rates by this once the test loss is below "
                            f"--decay-below times the baseline (1: never); default: "
                            f"{d.lr_decay:g}")
        p.add_argument("--decay-below", type=_positive_float,
                       help=f"see --lr-decay; default: {d.decay_below:g}")
        p.add_argument("--stop-below", type=_non_negative_float,
                       help="stop once the test loss is below this times the baseline (and, "
                            "on copy, --stop-recall of the recalled test symbols are right); "
                            "0: never; default: "
                            + ("0" if d.stop_below is None else f"{d.stop_below:g}"))
    p.add_argument("--epoch-steps", type=_positive_int,
                   help="steps of an epoch of --epoch-decay (the paper's schedule); default: "
                        + ("none" if d.epoch_steps is None else str(d.epoch_steps)))
    p.add_argument("--epoch-decay", type=_fraction,
                   help="multiply both learning rates by this after every --epoch-steps "
                        f"steps (1: never); default: {d.epoch_decay:g}")
    if task == "copy":
        p.add_argument("--stop-recall", type=_fraction,
                       help="with --stop-below: the fraction of recalled test symbols that "
                            f"must be right to stop (1: all); default: {d.stop_recall:g}")
    p.add_argument("--nonlinearity", choices=["relu", "modrelu"],
                   help=f"default: {d.nonlinearity}")
    p.add_argument("--init", choices=["henaff", "haar", "identity"],
                   help="initial U: Henaff (2x2 rotations, angles U(-pi, pi)), Haar or the "
                        f"identity; default: {d.init}")
    p.add_argument("--io-init", choices=["default", "paper"],
                   help="W_in and V: He-normal and Glorot-normal, or drawn as the paper's "
                        f"code draws them for this task (the preset's); default: {d.io_init}")
    if task != "pixels":
        p.add_argument("--train-size", type=_positive_int, metavar="N",
                       help="train on a fixed set of N sequences drawn once, reshuffled every "
                            "epoch (at least --batch); default: a fresh batch every step "
                            "(--preset paper: " + ("512000" if task == "copy" else "100000")
                            + ")")
        p.add_argument("--markers", choices=["default", "paper"],
                       help=("the marker after T-1 blanks, the recall after it (default), or "
                             "after T blanks, on the first recall step (paper: copy_task.py)"
                             if task == "copy" else
                             "the two marked steps in [0, T//2) and [T//2, T) (default), or "
                             "split at (T-1)//2 (paper: adding_task.py)")
                            + f"; default: {d.markers} (--preset paper: paper)")
    p.add_argument("--hidden-bias", action=argparse.BooleanOptionalAction,
                   help="a trainable bias b in relu(W_in x + U h + b) (--no-hidden-bias: none, "
                        "as the paper's copy and adding network; ReLU only); default: "
                        + ("--hidden-bias" if d.hidden_bias else "--no-hidden-bias")
                        + ("" if task == "pixels" else " (--preset paper: --no-hidden-bias)"))
    p.add_argument("--output-bias", choices=["zero", "torch"],
                   help="initial bias of the readout: zero, or PyTorch's nn.Linear default "
                        f"U(+-1/sqrt(hidden)); default: {d.output_bias}"
                        + ("" if task == "copy" else " (--preset paper: torch)"))
    p.add_argument("--seed", type=_non_negative_int, default=0,
                   help="seed of the data, initialisation and sketches (an integer >= 0); "
                        "default: %(default)s")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="default: %(default)s")
    p.add_argument("--backend", choices=T.BACKENDS, default="numpy",
                   help="array library (cupy: a CUDA GPU); default: %(default)s")
    if task == "pixels":
        p.add_argument("--eval-every", type=_positive_int,
                       help=f"steps between validation evaluations; default: {d.eval_every}")
        p.add_argument("--test-batch", type=_positive_int,
                       help="images per minibatch of the validation and test evaluations "
                            f"(bounds their memory); default: {d.test_batch}")
    else:
        p.add_argument("--eval-every", type=_positive_int,
                       help=f"steps between test evaluations; default: {d.eval_every}")
        p.add_argument("--test-batch", type=_positive_int,
                       help=f"size of the fixed test batch; default: {d.test_batch}")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="BLAS threads (small products run best on one); default: %(default)s")
    p.add_argument("--json", metavar="PATH", help="write a JSON summary here")
    p.add_argument("--plot", metavar="PATH",
                   help="write a PNG of the run here: test loss"
                        + (" and accuracy" if task != "adding" else "")
                        + ", ‖UᵀU − I‖₂, the decays and the stop (needs matplotlib)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar, even on a terminal: a plain line per evaluation "
                        "(as when stderr is not a terminal), then the summary")


def _add_pixel_options(p: argparse.ArgumentParser) -> None:
    from .tasks.datasets import DATASETS

    p.add_argument("--dataset", choices=DATASETS,
                   help="digits: scikit-learn's bundled 8x8 digits (T = 64, no files); mnist, "
                        "fashion-mnist: the 28x28 IDX files (.gz or raw) of --data-dir; "
                        "default: digits (--preset paper: mnist)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder of the IDX files (fashion-mnist also looks in "
                        "/usr/share/datasets/fashion-mnist, where Debian's "
                        "dataset-fashion-mnist puts them)")
    p.add_argument("--download", action="store_true",
                   help="fetch missing files from --mirror into --data-dir (SHA-256 checked)")
    p.add_argument("--mirror", metavar="URL",
                   help="base URL of the files for --download; default: the dataset's "
                        "documented mirror")
    p.add_argument("--downsample", type=_positive_int,
                   help="average s x s blocks of pixels (must divide the side: 2 gives "
                        "14x14, T = 196); default: 1")
    p.add_argument("--permute", action=argparse.BooleanOptionalAction,
                   help="feed the pixels in the fixed random order of expRNN and projUNN "
                        "(numpy.random.RandomState(92916)); default: --permute")


_EXIT_STATUS = ("Exit status: 0 done, 1 the run diverged (or an output could not be written), "
                "2 a bad command line, 130 interrupted (Ctrl-C); the summary's stop_reason "
                "says why a run stopped (steps, target, diverged, interrupted).")


def _build_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="Orthogonal RNNs trained with projUNN's low-rank unitary updates.",
        epilog=_EXIT_STATUS,
    )
    parser.add_argument("--version", action="version",
                        version=f"{PROG} {unitary_lowrank.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for task, text in (("copy", "copy-memory task (remember 10 symbols over a delay T)"),
                       ("adding", "adding problem (sum of two marked values)"),
                       ("pixels", "pixel-by-pixel image classification task (one pixel a "
                                  "step, in a fixed random order)")):
        p = sub.add_parser(task, help=f"train on the {text}",
                           description=f"Train an orthogonal RNN on the {text}.",
                           epilog=_EXIT_STATUS)
        if task == "pixels":
            _add_pixel_options(p)
        _add_train_options(p, task)
    b = sub.add_parser("bench", help="time the low-rank updates against dense references",
                       description="Time project, transport and Cayley updates of an n x n "
                                   "unitary against their dense references in double "
                                   "precision (SVD polar factor, SciPy's expm, Cayley solve).")
    b.add_argument("--n", type=_positive_int, default=1024, help="matrix size; default: 1024")
    b.add_argument("--rank", type=_int_list, action="append",
                   help="rank(s) of the step, repeatable or comma separated; default: 1,4")
    b.add_argument("--dtype", type=_str_list, action="append",
                   help="dtype(s), repeatable or comma separated; default: float64,float32")
    b.add_argument("--repeats", type=_positive_int, default=5, help="default: 5")
    b.add_argument("--json", metavar="PATH", help="write the rows as JSON here")
    pl = sub.add_parser("plot", help="plot saved runs side by side",
                        description="Draw the test loss (and accuracy) and ‖UᵀU − I‖₂ of "
                                    "runs saved with --json, one curve each, with a legend.")
    pl.add_argument("runs", nargs="+", metavar="RUN.json")
    pl.add_argument("--out", required=True, metavar="PATH", help="PNG to write")
    pl.add_argument("--title", help="figure title")
    _add_paper_commands(sub)
    return parser


#: The paper's experiments (docs/paper.md): each command is a module of ``cli.tasks``.
_PAPER_COMMANDS = {
    "toy": "learn a random unitary from examples with column sampling at ranks k (Fig. 2b)",
    "spectrum": "singular values of the gradient of unitary weights during training (Fig. 1a)",
    "cnn": "a deep CNN of orthogonal convolutions against the unconstrained one (Fig. 5), "
           "or a ResNet-9 on CIFAR-10",
}


def _add_paper_commands(sub: Any) -> None:
    import importlib
    import types

    checkers = types.SimpleNamespace(
        positive_int=_positive_int, non_negative_int=_non_negative_int,
        positive_float=_positive_float, non_negative_float=_non_negative_float,
        fraction=_fraction, int_list=_int_list)
    for name, text in _PAPER_COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".",
                           epilog=_EXIT_STATUS)
        importlib.import_module(f".tasks.{name}", __package__).add_arguments(p, checkers)


def _check_writable(path: str | None, flag: str, command: str) -> None:
    """Refuse an output path that cannot be written, leaving nothing behind.

    An existing file is opened for appending (not changed); a new one is created
    and removed again, which tests the folder's permissions, the file system and
    the name itself.
    """
    if path is None:
        return
    where = f"{PROG} {command}: error: {flag} {path!r}"
    if os.path.isdir(path):
        raise _UsageError(f"{where} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise _UsageError(f"{where}: folder {folder} does not exist")
    try:
        if os.path.lexists(path):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NONBLOCK", 0))
            os.close(fd)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            os.close(fd)
            os.unlink(path)
    except OSError as exc:
        raise _UsageError(f"{where} cannot be written: {exc.strerror or exc}") from None


def _check_distinct(command: str, outputs: Sequence[tuple[str, str | None]],
                    inputs: Sequence[str] = ()) -> None:
    """Refuse two outputs, or an output and an input, that are the same file."""
    seen = {os.path.realpath(path): repr(path) for path in inputs}
    for flag, path in outputs:
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise _UsageError(f"{PROG} {command}: error: {flag} {path!r} is the same file "
                              f"as {seen[key]}")
        seen[key] = f"{flag} {path!r}"


def _run_training(args: argparse.Namespace) -> int:
    from .tasks import train as T

    _check_writable(args.json, "--json", args.command)
    _check_writable(args.plot, "--plot", args.command)
    _check_distinct(args.command, [("--json", args.json), ("--plot", args.plot)])
    fields = {f for f in T.Config.__dataclass_fields__ if f != "task"}
    overrides = {k: v for k, v in vars(args).items() if k in fields}
    try:
        cfg = T.default_config(args.command, args.preset, **overrides)
        cfg.validate()
        T.resolve_backend(cfg.backend)
        if args.plot is not None:
            T.check_plot_available()
    except T.ConfigError as exc:
        raise _UsageError(f"{PROG} {args.command}: error: {exc}") from None
    pixels = None
    if cfg.task == "pixels":
        from .tasks.datasets import DataError

        try:
            pixels = T.load_data(cfg, progress=False if args.quiet else None)
        except DataError as exc:
            raise _UsageError(f"{PROG} {args.command}: error: {exc}") from None
    try:
        summary = T.train(cfg, stream=sys.stderr, bar=not args.quiet, pixels=pixels)
    except T.TrainingInterrupted as exc:  # Ctrl-C: report the steps done, then exit 130
        summary = exc.summary
    print(T.format_summary(summary), flush=True)
    try:
        if args.json is not None:
            T.write_json(summary, args.json)
            print(f"  summary written to {args.json}", flush=True)
        if args.plot is not None:
            T.plot_histories([summary], args.plot)
            print(f"  plot written to {args.plot}", flush=True)
    except OSError as exc:
        print(f"{PROG} {args.command}: error: cannot write the output: {exc}",
              file=sys.stderr)
        return 1
    reason = summary["stop_reason"]
    if reason == "diverged":
        print(f"{PROG} {args.command}: error: the run diverged after {summary['iterations']} "
              "steps; try a smaller --lr or a larger --unitary-lr-divider", file=sys.stderr)
        return 1
    if reason == "interrupted":
        print(f"{PROG} {args.command}: interrupted after {summary['iterations']} steps",
              file=sys.stderr)
        return 130
    return 0


def _run_paper(args: argparse.Namespace) -> int:
    """Run one of the paper's experiments (:data:`_PAPER_COMMANDS`)."""
    import importlib

    from .tasks._experiment import ExperimentError, ExperimentInterrupted, write_json
    from .tasks.datasets import DataError

    command = args.command
    mod = importlib.import_module(f".tasks.{command}", __package__)
    _check_writable(args.json, "--json", command)
    _check_writable(args.plot, "--plot", command)
    _check_distinct(command, [("--json", args.json), ("--plot", args.plot)])
    try:
        cfg = mod.config_from_args(args)
        prepared = mod.prepare(cfg, plot_path=args.plot, quiet=args.quiet)
    except (ExperimentError, DataError) as exc:
        raise _UsageError(f"{PROG} {command}: error: {exc}") from None
    try:
        summary = mod.run(cfg, stream=sys.stderr, bar=not args.quiet, prepared=prepared)
    except ExperimentInterrupted as exc:  # Ctrl-C: report what was done, then exit 130
        summary = exc.summary
    print(mod.format_summary(summary), flush=True)
    try:
        if args.json is not None:
            write_json(summary, args.json)
            print(f"  summary written to {args.json}", flush=True)
        if args.plot is not None:
            mod.plot(summary, args.plot)
            print(f"  plot written to {args.plot}", flush=True)
    except OSError as exc:
        print(f"{PROG} {command}: error: cannot write the output: {exc}", file=sys.stderr)
        return 1
    if summary["stop_reason"] == "interrupted":
        print(f"{PROG} {command}: interrupted after {summary['iterations']} steps",
              file=sys.stderr)
        return 130
    if summary["stop_reason"] == "diverged":
        print(f"{PROG} {command}: error: a run diverged (its loss or gradient stopped being "
              "finite; see the summary); try a smaller --lr", file=sys.stderr)
        return 1
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    import json

    from unitary_lowrank.testing import DTYPE_NAMES

    _check_writable(args.json, "--json", "bench")
    ranks = [k for group in (args.rank or [[1, 4]]) for k in group]
    dtypes = [d for group in (args.dtype or [["float64", "float32"]]) for d in group]
    bad = [d for d in dtypes if d not in DTYPE_NAMES]
    if bad or not ranks or not dtypes:
        raise _UsageError(
            f"{PROG} bench: error: --dtype must be among {', '.join(DTYPE_NAMES)} and --rank "
            f"a list of positive integers, got dtypes {dtypes} and ranks {ranks}"
        )
    if max(ranks) > args.n:
        raise _UsageError(f"{PROG} bench: error: --rank must be at most --n ({args.n}), "
                          f"got {max(ranks)}")
    try:
        import scipy.linalg  # noqa: F401 - the dense references
    except ImportError:
        raise _UsageError(f"{PROG} bench: error: the benchmark compares with SciPy's dense "
                          "routines: pip install 'unitary_lowrank[bench]'") from None
    from .bench import bench

    rows = bench(n=args.n, ranks=ranks, dtypes=dtypes, repeats=args.repeats, stream=sys.stdout)
    if args.json is not None:
        text = json.dumps(rows, indent=2) + "\n"
        try:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            print(f"{PROG} bench: error: cannot write the rows: {exc}", file=sys.stderr)
            return 1
        print(f"rows written to {args.json}")
    return 0


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_summary(s: Any) -> bool:
    """Whether `s` has what :func:`plot_histories` reads from a ``--json`` summary."""
    return (
        isinstance(s, dict)
        and s.get("task") in ("copy", "adding", "pixels")
        and isinstance(s.get("method"), str)
        and _is_number(s.get("baseline_loss"))
        and isinstance(s.get("history"), list)
        and all(
            isinstance(h, dict) and _is_number(h.get("step"))
            and (h.get("loss") is None or _is_number(h.get("loss")))
            for h in s["history"]
        )
    )


def _run_plot(args: argparse.Namespace) -> int:
    import json

    from .tasks import train as T

    _check_writable(args.out, "--out", "plot")
    _check_distinct("plot", [("--out", args.out)], inputs=args.runs)
    summaries: list[dict[str, Any]] = []
    for path in args.runs:
        try:
            with open(path, encoding="utf-8") as f:
                s = json.load(f)
        except (OSError, ValueError) as exc:
            raise _UsageError(f"{PROG} plot: error: cannot read {path}: {exc}") from None
        if not _is_summary(s):
            raise _UsageError(f"{PROG} plot: error: {path} is not a summary written by --json")
        summaries.append(s)
    if len({s["task"] for s in summaries}) > 1:
        raise _UsageError(f"{PROG} plot: error: the runs mix tasks; plot one task at a time")
    try:
        T.plot_histories(summaries, args.out, title=args.title)
    except T.ConfigError as exc:
        raise _UsageError(f"{PROG} plot: error: {exc}") from None
    print(f"plot written to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default ``sys.argv[1:]``); return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after the program name.

    Returns
    -------
    int
        0 on success, 1 when a training run diverged (or an output could not
        be written, or an unexpected error), 2 for a bad command line, 130 when
        interrupted (Ctrl-C). Every failure ends with one line on stderr.

    Examples
    --------
    >>> from unitary_lowrank.cli import main
    >>> main(["adding", "--steps", "2", "--seq-len", "6", "--hidden", "4", "--quiet",
    ...       "--method", "frozen"])  # doctest: +ELLIPSIS
    adding task, length T = 6, hidden 4, batch 50, ...
    0
    """
    parser = _build_parser()
    who = PROG  # the start of an error line: the program, then its command once known
    try:
        args = parser.parse_args(argv)
        if args.command is not None:
            who = f"{PROG} {args.command}"
        if args.command is None:
            raise _UsageError(f"{PROG}: error: choose a command: copy, adding, pixels, "
                              f"{', '.join(_PAPER_COMMANDS)}, bench or plot (see {PROG} --help)")
        if args.command in ("copy", "adding", "pixels"):
            return _run_training(args)
        if args.command in _PAPER_COMMANDS:
            return _run_paper(args)
        if args.command == "bench":
            return _run_bench(args)
        return _run_plot(args)
    except _UsageError as exc:
        print(str(exc).replace("\n", " "), file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print(f"{who}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (``... | head``): no message
        try:  # and no second error when Python flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # stdout without a file descriptor
            pass
        return 1
    except MemoryError as exc:
        print(f"{who}: error: out of memory ({_one_line(exc) or 'no detail'}); "
              "choose smaller sizes", file=sys.stderr)
        return 2
    except Exception as exc:
        if sys.flags.dev_mode:  # python -X dev: the traceback, for debugging
            raise
        print(f"{who}: error: {type(exc).__name__}: {_one_line(exc)}",
              file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
