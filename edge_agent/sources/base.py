"""What a source is, and the bounded intake queue threaded sources feed.

Two shapes, both tiny:

- :class:`PolledSource` (the simulated sensors): the agent loop calls ``poll(max_events)``; no thread.
- :class:`ThreadedSource` (serial port, local ingest socket): a library owns a blocking read, so the
  source runs its own thread and hands events to :class:`Intake`.

A source turns its input into validated events (``edgebridge.envelope.new_reading``, with a placeholder
``seq`` the outbox replaces at commit). A bad line or datagram is counted in ``bad`` and logged,
rate-limited; it never stops the source.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from edgebridge.envelope import Event

__all__ = ["Intake", "IntakeStats", "PolledSource", "SourceStats", "ThreadedSource"]


@dataclass
class SourceStats:
    read: int = 0  # events produced
    bad: int = 0  # lines or datagrams refused
    reopened: int = 0  # device reopened after an error
    heartbeat: float = 0.0  # monotonic time of the last loop iteration: the watchdog's "progress"


@runtime_checkable
class PolledSource(Protocol):
    name: str
    stats: SourceStats

    def poll(self, max_events: int) -> list[Event]: ...

    def set_interval(self, seconds: float) -> None: ...


@runtime_checkable
class ThreadedSource(Protocol):
    name: str
    stats: SourceStats

    def start(self, intake: Intake) -> None: ...

    def stop(self) -> None: ...

    def set_interval(self, seconds: float) -> None: ...


@dataclass
class IntakeStats:
    blocked: int = 0  # puts that found the queue full and had to wait (policy: block the producer)


class Wakeable(Protocol):
    """What wakes the agent loop: a ``threading.Event`` or :class:`edge_agent.waker.Waker`."""

    def set(self) -> None: ...


class Intake:
    """A bounded queue from source threads to the agent loop.

    Overflow policy ``block``: a full queue blocks the producing source (a serial port then buffers
    in the kernel and the device's flow control; an ingest client waits), each such wait counted in
    ``stats.blocked``. Nothing is dropped here: what is dropped is decided by the outbox bound, which
    announces it. ``put`` gives up only when ``stop`` is set (the event was never committed).
    """

    def __init__(self, maxsize: int, wake: Wakeable, stop: threading.Event) -> None:
        self._queue: queue.Queue[Event] = queue.Queue(maxsize)
        self._wake = wake
        self._stop = stop
        self.stats = IntakeStats()

    def put(self, event: Event) -> bool:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.stats.blocked += 1
            while True:
                if self._stop.is_set():
                    return False
                try:
                    self._queue.put(event, timeout=0.1)
                    break
                except queue.Full:
                    continue
        self._wake.set()
        return True

    def take(self, max_events: int) -> list[Event]:
        out: list[Event] = []
        get = self._queue.get_nowait
        try:
            while len(out) < max_events:
                out.append(get())
        except queue.Empty:
            pass
        return out

    def qsize(self) -> int:
        return self._queue.qsize()


def beat(stats: SourceStats) -> None:
    stats.heartbeat = time.monotonic()
