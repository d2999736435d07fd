"""What the paper's experiments (``toy``, ``spectrum``, ``cnn``) share on the command line.

Each experiment module (:mod:`~unitary_lowrank.cli.tasks.toy`,
:mod:`~unitary_lowrank.cli.tasks.spectrum`, :mod:`~unitary_lowrank.cli.tasks.cnn`)
exposes the same five names, which :mod:`unitary_lowrank.cli.app` calls:

``add_arguments(parser, types)``
    Its options (``types`` holds the parser's value checkers).
``config_from_args(args)``
    A validated configuration, or :class:`ExperimentError` (exit status 2).
``prepare(cfg)``
    What must exist before the run (data files, matplotlib); may raise
    :class:`ExperimentError` or :class:`~unitary_lowrank.cli.tasks.datasets.DataError`.
``run(cfg, *, stream, quiet, bar, prepared)``
    The summary (a JSON-ready dict whose ``stop_reason`` is ``"done"`` or
    ``"interrupted"``); Ctrl-C raises :class:`ExperimentInterrupted` carrying the
    summary so far.
``format_summary(summary)``, ``plot(summary, path)``
    The lines printed at the end, and the ``--plot`` figure.

This module holds the pieces they share: the errors, the progress display (the
bar of :class:`~unitary_lowrank.cli.tasks.progress.Progress` on a terminal, one
plain line per evaluation elsewhere), JSON writing and small checks.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

import numpy as np

from .progress import Progress

__all__ = [
    "ExperimentError",
    "ExperimentInterrupted",
    "Reporter",
    "check_choice",
    "check_plot_available",
    "check_positive",
    "common_arguments",
    "jsonable",
    "write_json",
]


class ExperimentError(ValueError):
    """A setting that cannot work; the command line reports it in one line, exit status 2."""


class ExperimentInterrupted(KeyboardInterrupt):
    """Ctrl-C during an experiment: a KeyboardInterrupt carrying the summary so far.

    Parameters
    ----------
    summary : dict
        The summary of what was completed, with ``stop_reason`` ``"interrupted"``.
    """

    def __init__(self, summary: dict[str, Any]):
        super().__init__(f"interrupted after {summary.get('iterations', 0)} steps")
        self.summary = summary


def flag(name: str) -> str:
    """The command-line flag of a setting: ``test_batch`` → ``--test-batch``."""
    return "--" + name.replace("_", "-")


def check_positive(name: str, value: Any, *, integer: bool = True, least: float = 1) -> None:
    """Raise :class:`ExperimentError` unless `value` is a number >= `least` (an int if asked).

    Parameters
    ----------
    name : str
        The setting (its flag is named in the message).
    value : object
        The value.
    integer : bool, default: True
        Require an integer (not a bool).
    least : float, default: 1
        Smallest value allowed.
    """
    if integer:
        ok = (not isinstance(value, bool) and isinstance(value, int | np.integer)
              and value >= least)
        what = f"an integer >= {least:g}" if least != 1 else "a positive integer"
    else:
        ok = (not isinstance(value, bool) and isinstance(value, int | float | np.floating)
              and math.isfinite(value) and value >= least and (least > 0 or value > 0))
        what = "a positive number"
    if not ok:
        raise ExperimentError(f"{flag(name)} must be {what}, got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    """Raise :class:`ExperimentError` unless `value` is one of `choices`."""
    choices = tuple(choices)
    if value not in choices:
        raise ExperimentError(f"{flag(name)} must be one of {', '.join(choices)}, got {value!r}")


def check_plot_available() -> None:
    """Raise :class:`ExperimentError` with an install hint when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ExperimentError("--plot needs matplotlib: pip install 'unitary_lowrank[plot]'") \
            from None


def import_torch() -> Any:
    """torch, or :class:`ExperimentError` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ExperimentError("this experiment needs PyTorch, which is not installed "
                              "(pip install torch)") from None
    return torch


def jsonable(x: Any) -> Any:
    """`x` with NumPy scalars and arrays as Python values and non-finite floats as None."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    return x


def write_json(summary: dict[str, Any], path: str) -> None:
    """Write a summary as JSON (non-finite numbers become null).

    Parameters
    ----------
    summary : dict
        A summary of one of the experiments.
    path : str
        Output file.
    """
    text = json.dumps(jsonable(summary), indent=2, allow_nan=False) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def common_arguments(p: Any, types: Any) -> None:
    """The options of every experiment: ``--seed``, ``--threads``, ``--json``, ``--plot``."""
    p.add_argument("--seed", type=types.non_negative_int, default=0,
                   help="seed of everything random (an integer >= 0); default: %(default)s")
    p.add_argument("--threads", type=types.positive_int, default=1,
                   help="BLAS (and torch) threads; default: %(default)s")
    p.add_argument("--json", metavar="PATH",
                   help="write every resolved setting and the results as JSON here")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of the results here "
                                                  "(needs matplotlib)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar, even on a terminal: a plain line per record")


class Reporter:
    r"""The progress of an experiment: a bar on a terminal, plain lines elsewhere.

    Parameters
    ----------
    stream : file, optional
        Where the bar and the lines go; default ``sys.stderr``.
    total : int
        Steps of the whole experiment (the bar's length).
    quiet : bool
        Print nothing at all.
    bar : bool
        Draw the bar when `stream` is a terminal (``--quiet`` on the command line
        turns it off, leaving the plain lines).

    Examples
    --------
    >>> import io
    >>> from unitary_lowrank.cli.tasks._experiment import Reporter
    >>> out = io.StringIO()
    >>> r = Reporter(out, total=10, quiet=False, bar=True)
    >>> r.say("k = 1  step 0  loss 2.0")
    >>> r.update(5, 1.0, 0.5, 1e-7)  # not a terminal: no bar
    >>> r.close(); out.getvalue()
    'k = 1  step 0  loss 2.0\n'
    """

    def __init__(self, stream: TextIO | None, total: int, *, quiet: bool, bar: bool):
        self.stream = sys.stderr if stream is None else stream
        self.quiet = quiet
        self.progress = Progress(self.stream, max(int(total), 1), bar and not quiet)
        self.start = time.perf_counter()

    @property
    def enabled(self) -> bool:
        """Whether a bar is drawn (the stream is a terminal and the bar was asked for)."""
        return self.progress.enabled

    def elapsed(self) -> float:
        """Seconds since the reporter was made."""
        return time.perf_counter() - self.start

    def say(self, line: str) -> None:
        """Print a line above the bar, unless quiet."""
        if self.quiet:
            return
        self.progress.clear()
        print(line, file=self.stream, flush=True)
        self.progress.refresh()

    def update(self, done: int, loss: float, frac: float, uerr: float) -> None:
        """Move the bar to `done` steps: running `loss`, its `frac` of the baseline, `uerr`."""
        if self.progress.enabled and done > 0:
            self.progress.update(done, loss, frac, uerr, self.elapsed() / done)

    def close(self) -> None:
        """Remove the bar."""
        self.progress.close()
