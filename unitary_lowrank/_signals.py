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
    """Run the body with SIGINT recorded instead of raised; deliver it after.

    Only in the main thread (the only one where Python runs signal handlers and
    where a handler can be installed), and only when the current handler was set
    from Python or is the default action: the body then runs under a handler that
    records the signal. Once the body is over (done or failed), the previous
    handler is put back and a recorded signal is raised again, so it reaches that
    handler as if it had arrived just then (for Python's default handler:
    `KeyboardInterrupt` right after the ``with`` block). Nested uses hold the
    signal until the outermost one ends.

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
    except (ValueError, OSError):  # pragma: no cover - no signals here
        previous = None
    if previous is None or previous == signal.SIG_IGN or getattr(
            previous, "_unitary_lowrank_deferring", False):
        yield  # a handler installed from C (not restorable), ignored, or already held
        return
    received: list[int] = []

    def record(signum: int, frame: Any) -> None:
        received.append(signum)

    record._unitary_lowrank_deferring = True  # type: ignore[attr-defined]
    try:
        signal.signal(signal.SIGINT, record)
    except (ValueError, OSError):  # pragma: no cover - e.g. an embedded interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)
