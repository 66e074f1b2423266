"""Process lifecycle: SIGTERM/SIGINT ask the service to stop, nothing more.

A signal handler runs between two bytecodes of the main thread, wherever that thread happens to be:
inside a SQLite transaction, holding the logging lock, halfway through a publish. So the handler only
sets the stop event (or calls ``stop()``); the service's loops notice it at their next wait, which every
wait in edgebridge watches (see :mod:`edgebridge.retry`), and shut down in their own order::

    stop = threading.Event()
    restore = install_stop_handlers(stop)
    try:
        agent.run(stop)          # returns once stop is set and the outbox is committed
    finally:
        restore()
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

__all__ = ["install_stop_handlers"]


def install_stop_handlers(
    stop: threading.Event | Callable[[], None],
    signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> Callable[[], None]:
    """Make ``signals`` set ``stop`` (an Event) or call it; return a function restoring the old handlers.

    Must be called from the main thread (a ``signal`` module rule; ``ValueError`` otherwise). A second
    SIGINT does not force an exit: a stop that hangs is a bug to fix, and systemd's SIGKILL after
    ``TimeoutStopSec`` is the backstop.
    """
    callback = stop.set if isinstance(stop, threading.Event) else stop

    def handler(signum: int, frame: FrameType | None) -> None:
        # no logging here: the interrupted code may hold the handler's lock
        callback()

    previous: dict[signal.Signals, Any] = {}
    try:
        for sig in signals:
            previous[sig] = signal.signal(sig, handler)
    except BaseException:
        _restore(previous)
        raise

    def restore() -> None:
        _restore(previous)

    return restore


def _restore(previous: dict[signal.Signals, Any]) -> None:
    for sig, old in previous.items():
        # None means the old handler was not installed from Python; the default is the best we can do
        signal.signal(sig, old if old is not None else signal.SIG_DFL)
