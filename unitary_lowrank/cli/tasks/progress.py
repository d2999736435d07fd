"""The progress bar of a training run: tqdm on a terminal, a plain bar without it.

On a terminal (the stream's ``isatty()``) the bar shows the steps done, the
running training loss (and its fraction of the baseline), ``‖UᵀU − I‖₂`` and the
time per step, with an ETA: through tqdm when it is installed (the ``cli``
extra), else through a one-line bar of its own. Elsewhere (a log file, a pipe)
and with ``--quiet`` there is no bar; the training loop prints one plain line
per evaluation instead (unless quiet), which carries the same figures.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

__all__ = ["Progress"]


def _tqdm() -> Any:
    """The class of tqdm, or None when tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class Progress:
    """A progress bar on `stream` for `total` steps; inactive unless `stream` is a terminal.

    Parameters
    ----------
    stream : file
        Where the bar is drawn (stderr for the command line).
    total : int
        Number of steps of the run.
    enabled : bool
        False turns the bar off whatever the stream (``--quiet``).
    use_tqdm : bool, default: True
        Draw through tqdm when it is installed; False forces the built-in bar.

    Examples
    --------
    >>> import io
    >>> from unitary_lowrank.cli.tasks.progress import Progress
    >>> bar = Progress(io.StringIO(), 100, True)  # not a terminal: no bar
    >>> bar.enabled
    False
    >>> bar.update(10, 0.5, 0.25, 1e-6, 0.01)  # does nothing
    """

    def __init__(self, stream: TextIO, total: int, enabled: bool, *, use_tqdm: bool = True):
        self.stream, self.total = stream, total
        self.enabled = bool(enabled and getattr(stream, "isatty", lambda: False)())
        self.last = 0.0
        self.bar: Any = None
        tqdm = _tqdm() if (self.enabled and use_tqdm) else None
        if tqdm is not None:
            self.bar = tqdm(total=total, file=stream, unit="step", dynamic_ncols=True,
                            leave=False, mininterval=0.25, smoothing=0.1)

    def update(self, step: int, loss: float, frac: float, uerr: float, per_step: float,
               force: bool = False) -> None:
        """Show `step` steps done, the running `loss` (`frac` of the baseline), `uerr`.

        `per_step` (seconds) gives the built-in bar its ETA; tqdm measures its own.
        """
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(
                f"loss {loss:.4g} ({100 * frac:.1f}% of baseline) |UᵀU−I| {uerr:.1e}",
                refresh=False,
            )
            self.bar.update(step - self.bar.n)
            return
        now = time.perf_counter()
        if not force and now - self.last < 0.25:
            return
        self.last = now
        width = 24
        done = int(width * step / self.total)
        eta = per_step * (self.total - step)
        self.stream.write(
            f"\r[{'#' * done}{'.' * (width - done)}] {step}/{self.total} "
            f"loss {loss:.4g} ({100 * frac:.1f}% of baseline) "
            f"|UᵀU−I| {uerr:.1e} {1e3 * per_step:.1f} ms/step ETA {eta:.0f}s   "
        )
        self.stream.flush()

    def clear(self) -> None:
        """Erase the bar (before a line is printed above it)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.clear()
            return
        self.stream.write("\r" + " " * 110 + "\r")
        self.stream.flush()

    def refresh(self) -> None:
        """Draw the bar again after a line was printed."""
        if self.bar is not None:
            self.bar.refresh()

    def close(self) -> None:
        """Remove the bar for good (end of the run)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled:
            self.clear()
