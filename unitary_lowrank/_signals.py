"""Hold Ctrl-C (SIGINT) back while a short piece of work must finish or not start.

:func:`deferred_interrupts` is used where an interruption half-way would leave
the caller's state torn: the final write loop of the torch optimizer (every
weight new, or none), the lazy import of the compiled engines (a module half
imported poisons later calls). Only SIGINT with Python's own handler is held,
and only in the main thread (the only one where Python runs signal handlers);
anywhere else the context does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["deferred_interrupts"]


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Run the body with SIGINT recorded instead of raised; re-deliver it after.

    When a SIGINT arrives inside the body, the previous handler is called with
    it once the body has finished (normally, for Python's default handler,
    raising `KeyboardInterrupt` right after the ``with`` block). Nested uses
    hold the signal until the outermost one ends.

    Examples
    --------
    >>> from unitary_lowrank._signals import deferred_interrupts
    >>> with deferred_interrupts():
    ...     done = sum(range(10))
    >>> done
    45
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGINT)
    except ValueError:  # a sub-interpreter: no signal handling here
        yield
        return
    if not callable(previous) or getattr(previous, "_unitary_lowrank_deferring", False):
        yield  # SIG_IGN / SIG_DFL / a handler not set from Python, or already deferring
        return
    caught: list[tuple[int, Any]] = []

    def record(signum: int, frame: Any) -> None:
        caught.append((signum, frame))

    record._unitary_lowrank_deferring = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGINT, record)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            previous(*caught[0])
