"""Time stamps of an event: the device wall clock, plus what lets downstream correct it.

Every event carries ``time`` (wall clock, RFC 3339), ``bootid`` (``/proc/sys/kernel/random/boot_id``),
``monotime`` (milliseconds of ``CLOCK_BOOTTIME`` since that boot: it keeps counting through suspend, and
never jumps when NTP steps the wall clock) and ``clocksynced``.

``clocksynced`` (``[clock] trust = "auto"``) comes from the kernel: ``adjtimex(2)`` in read-only mode
returns ``TIME_ERROR`` (5) while the clock is not synchronised (no NTP daemon has disciplined it yet:
a Raspberry Pi without an RTC boots in 1970 or at its last shutdown time). That is the state
``timedatectl``'s "System clock synchronized" reads, without needing systemd or D-Bus. The answer is
cached for a few seconds. ``always``/``never`` override it (a device with a GPS clock, a test).

Under the hardened systemd unit (``ProtectClock=yes``) the kernel refuses ``adjtimex(2)`` altogether,
read only or not (EPERM). The answer then comes from systemd-timesyncd (the NTP client of Raspberry Pi
OS and Debian), which keeps the file ``/run/systemd/timesync/synchronized`` while the clock is synced.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from edgebridge.envelope import now_rfc3339

__all__ = ["Clock", "Stamp", "boot_id", "kernel_clock_synced"]

_TIME_ERROR = 5
TIMESYNCD_FLAG = "/run/systemd/timesync/synchronized"


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown-" + uuid.uuid4().hex  # not Linux: at least unique per process


def kernel_clock_synced(timesyncd_flag: str = TIMESYNCD_FLAG) -> bool | None:
    """True/False from adjtimex(2), or from systemd-timesyncd's flag file when a seccomp filter
    (``ProtectClock=``) refuses the call; None when it cannot be asked (not Linux, no libc)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        if ctypes.get_errno() == errno.EPERM:
            return os.path.exists(timesyncd_flag)
        return None
    return bool(state != _TIME_ERROR)


@dataclass(frozen=True, slots=True)
class Stamp:
    time: str
    bootid: str
    monotime: int
    clocksynced: bool


class Clock:
    def __init__(
        self, trust: Literal["auto", "always", "never"] = "auto", cache_seconds: float = 5.0
    ) -> None:
        self.trust = trust
        self.bootid = boot_id()
        self._cache_seconds = cache_seconds
        self._synced = False
        self._checked = -1e9

    def synced(self) -> bool:
        if self.trust != "auto":
            return self.trust == "always"
        now = time.monotonic()
        if now - self._checked > self._cache_seconds:
            self._synced = bool(kernel_clock_synced())
            self._checked = now
        return self._synced

    def stamp(self) -> Stamp:
        mono = time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1_000_000
        return Stamp(now_rfc3339(), self.bootid, mono, self.synced())

    def fields(self) -> dict[str, object]:
        """Keyword arguments for ``new_reading``/``new_gap``: bootid, monotime, clocksynced."""
        s = self.stamp()
        return {"time": s.time, "bootid": s.bootid, "monotime": s.monotime, "clocksynced": s.clocksynced}
