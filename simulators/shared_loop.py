"""A loop driving many agents from one thread: the fleet's ``--loops K`` mode.

A thread per agent (``Agent.run``) wakes every 50 ms whether or not its device has work: 20 wake-ups a
second per device, which is what limits a fleet in one process. Here one thread waits, in one ``epoll``,
on the broker socket and the waker of each of its agents, and on a heap of the times their timers are
due (:meth:`Agent.due_at`: the next sample, a commit of pending events or receipts, reconnects,
keepalive); it steps an agent (``Agent.step(timeout=0)``, the agent's own step, only the wait is
here) when one of those comes. At 1 reading/s that is a few steps per device per second. A stopping
agent is stepped through ``Agent.stopping()`` (its drain of ``drain_on_stop``, then its ``offline``)
the same way, so a device draining never holds up the others.

Each agent stays a whole device: its outbox, seqs, epoch, forwarder, receipts and MQTT session are its
own and run the agent's code; only who waits changes. Several loops (``K``) let the SQLite commits'
fsyncs of different devices overlap (sqlite3 releases the GIL while it writes).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import select
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from edge_agent.agent import Agent
from edge_agent.waker import Waker

__all__ = ["SharedLoop"]

log = logging.getLogger(__name__)

_IN, _OUT = select.EPOLLIN | select.EPOLLPRI, select.EPOLLOUT


@dataclass(eq=False)
class _Driven:
    agent: Agent
    exited: Callable[[BaseException | None], None]  # called once, from the loop, when the agent is done
    sock: object | None = None  # the broker socket registered for this agent (its link's object)
    fd: int | None = None  # and its descriptor
    mask: int = 0
    due: float = 0.0
    fds: list[int] = field(default_factory=list)
    stopping: Iterator[float] | None = None  # the agent's stop, step by step, once its stop_event is set


class SharedLoop:
    """One thread stepping the agents added to it until each one's ``stop_event``, or :meth:`close`."""

    def __init__(self, name: str) -> None:
        self._epoll = select.epoll()
        self._wake = Waker()
        self._epoll.register(self._wake.fileno(), _IN)
        self._owner: dict[int, _Driven] = {}  # fd -> its agent
        self._driven: set[_Driven] = set()
        self._added: list[_Driven] = []
        self._lock = threading.Lock()  # only for _added: the one thing other threads hand in
        self._timers: list[tuple[float, int, _Driven]] = []
        self._order = itertools.count()
        self._closing = False
        self.steps = 0  # agent steps taken (a measure of the loop's work)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def add(self, agent: Agent, exited: Callable[[BaseException | None], None]) -> None:
        """Begin and drive ``agent`` from the loop; ``exited(error)`` once it has finished or failed."""
        with self._lock:
            self._added.append(_Driven(agent, exited))
        self._wake.set()

    def start(self) -> None:
        self.thread.start()

    def close(self, timeout: float) -> None:
        """Stop every agent (each drains as on a stop) and end the loop."""
        self._closing = True
        self._wake.set()
        self.thread.join(timeout)

    # -- the loop ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not (self._closing and not self._driven and not self._added):
                self._take_added()
                if self._closing:
                    for d in list(self._driven):
                        d.agent.stop()
                for d in self._ready():
                    if d in self._driven:
                        self._step(d)
        finally:
            self._epoll.close()
            self._wake.close()

    def _take_added(self) -> None:
        with self._lock:
            added, self._added = self._added, []
        for d in added:
            try:
                d.agent.begin()
            except BaseException as exc:
                d.exited(exc)
                continue
            self._driven.add(d)
            fd = d.agent.wake.fileno()
            self._epoll.register(fd, _IN)
            self._owner[fd] = d
            d.fds.append(fd)
            self._schedule(d, 0.0)

    def _ready(self) -> set[_Driven]:
        """Wait for a socket, a waker or the earliest timer; the agents that have work."""
        timers = self._timers
        while timers and (timers[0][2].due != timers[0][0] or timers[0][2] not in self._driven):
            heapq.heappop(timers)  # rescheduled or gone since
        timeout = max(0.0, min(timers[0][0] - time.monotonic(), 1.0)) if timers else 1.0
        ready: set[_Driven] = set()
        for fd, _ in self._epoll.poll(timeout):
            owner = self._owner.get(fd)
            if owner is not None:
                ready.add(owner)
            elif fd == self._wake.fileno():
                self._wake.clear()
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            due, _, d = heapq.heappop(timers)
            if d.due == due:
                ready.add(d)
        if self._closing:
            ready |= self._driven  # each one's stop_event is set: step them into their finish
        return ready

    def _step(self, d: _Driven) -> None:
        agent = d.agent
        try:
            if agent.stop_event.is_set():
                self._stop_step(d)
                return
            agent.step(timeout=0)
            self.steps += 1
        except BaseException as exc:  # one device failing costs that device
            self._end(d, exc)
            return
        self._watch_socket(d)
        self._schedule(d, agent.due_at())

    def _stop_step(self, d: _Driven) -> None:
        """One step of the agent's stop (its drain), then a wait on its socket as its step asks."""
        if d.stopping is None:
            d.stopping = d.agent.stopping()
        else:
            d.agent.link.poll(0)
        try:
            wait = next(d.stopping)
        except StopIteration:
            self._end(d, None)
            return
        self._watch_socket(d)
        self._schedule(d, time.monotonic() + wait)

    def _end(self, d: _Driven, error: BaseException | None) -> None:
        self._forget(d)
        try:
            d.agent.close()
        except BaseException as exc:
            log.exception("virtual device did not close", extra={"device": d.agent.config.device_id})
            error = error or exc
        d.exited(error)

    def _schedule(self, d: _Driven, due: float) -> None:
        d.due = due
        heapq.heappush(self._timers, (due, next(self._order), d))

    def _watch_socket(self, d: _Driven) -> None:
        """Follow the agent's broker socket: a new one after each reconnect, write interest while it
        has bytes waiting. A closed socket has already left the epoll (the kernel drops it at close)
        and its number may be the new socket's, or soon another agent's: the old number is unregistered
        only while this agent still owns it."""
        link = d.agent.link
        sock = link.socket
        mask = _IN | (_OUT if link.wants_write() else 0) if sock is not None else 0
        if sock is d.sock and mask == d.mask:
            return
        if sock is d.sock and sock is not None:
            self._epoll.modify(sock.fd, mask)
            d.mask = mask
            return
        if d.fd is not None:
            self._unregister(d, d.fd)
        d.sock, d.fd, d.mask = sock, None, 0
        if sock is not None:
            self._epoll.register(sock.fd, mask)
            self._owner[sock.fd] = d
            d.fd, d.mask = sock.fd, mask
            d.fds.append(sock.fd)

    def _unregister(self, d: _Driven, fd: int) -> None:
        if self._owner.get(fd) is not d:
            return
        del self._owner[fd]
        d.fds.remove(fd)
        with contextlib.suppress(OSError):  # closed already: the kernel removed it
            self._epoll.unregister(fd)

    def _forget(self, d: _Driven) -> None:
        self._driven.discard(d)
        for fd in list(d.fds):
            self._unregister(d, fd)
        d.sock = d.fd = None
