"""systemd notifications without libsystemd: one datagram to ``$NOTIFY_SOCKET`` per message.

``READY=1`` once the outbox is open, ``STATUS=...`` with the backlog, ``WATCHDOG=1`` only while every
loop the agent depends on has shown progress recently (see :class:`Watchdog`), ``STOPPING=1`` at
shutdown. Without ``$NOTIFY_SOCKET`` (not under systemd, or ``Type=simple``) every call is a no-op.
Abstract sockets (``@name``) are supported, as systemd uses them.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

__all__ = ["Notifier", "Watchdog"]


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET") or ""
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_usec = int(usec) if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, message: str) -> bool:
        if self._sock is None:
            return False
        try:
            self._sock.sendto(message.encode(), self.address)
        except OSError:
            return False  # systemd gone or socket full: a missed ping is what the watchdog is for
        self.sent += 1
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Watchdog:
    """Sends ``WATCHDOG=1`` at most every ``interval`` seconds, and only while each probe's last
    heartbeat (a monotonic time) is younger than ``stall_after``. A stuck loop thus stops the pings and
    systemd restarts the service after ``WatchdogSec``."""

    def __init__(
        self,
        notifier: Notifier,
        probes: Mapping[str, Callable[[], float]],
        stall_after: float,
        interval: float | None = None,
    ) -> None:
        self.notifier = notifier
        self.probes = dict(probes)
        usec = notifier.watchdog_usec
        self.stall_after = stall_after or (usec / 2e6 if usec else 10.0)
        self.interval = interval if interval is not None else (usec / 4e6 if usec else 1.0)
        self._last = 0.0
        self.stalled: list[str] = []

    def stalled_now(self, now: float | None = None) -> list[str]:
        """The probes whose last heartbeat is older than ``stall_after`` (also the health check's)."""
        now = time.monotonic() if now is None else now
        return [name for name, beat in self.probes.items() if now - beat() > self.stall_after]

    def tick(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if now - self._last < self.interval:
            return False
        self._last = now
        self.stalled = self.stalled_now(now)
        if self.stalled:
            return False
        return self.notifier.notify("WATCHDOG=1")
