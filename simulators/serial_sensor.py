"""A virtual serial sensor on a pty pair: what the agent's serial source reads in tests and on a desk.

:class:`SerialSensor` makes a pseudo-terminal and points a stable symlink at its device node (``link``,
like ``/dev/serial/by-id/usb-...``: the path the agent is configured with). It writes readings of a
:mod:`simulators.sensors` model as lines in one of the agent's protocols (``json``, ``kv``, ``csv`` with
its header after every plug-in), and injects the faults a real sensor has:

- ``garbage()``: a line the agent must count as bad (not UTF-8, or not the protocol);
- ``reading(partial=True)``: a good line written in two pieces, the second a little later;
- ``flood(n)``: n good lines in one write, faster than the agent reads; ``overlong(n)``: a line longer
  than the agent's ``max_line``, whose tail (a valid line by itself) must not become a reading;
- ``unplug()`` / ``plug()``: the pty closed (the agent's read fails) and a new one behind the same link.

Counts (``stats``) say what was written, so a test can check the agent's counts against them. Lines are
only worth writing once the agent has the port open (``wait_opened``): a pty not yet in raw mode echoes
and may mangle what it buffers. :meth:`run` is the paced loop of ``edgebridge simulate serial``.
"""

from __future__ import annotations

import fcntl
import os
import random
import struct
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from simulators.sensors import Sensor, sensor

__all__ = ["PROTOCOLS", "SerialSensor", "SerialStats", "agent_serial_settings"]

PROTOCOLS = ("json", "kv", "csv")
_CSV_HEADER = b"time,temp,hum\n"


def agent_serial_settings(link: Path | str, protocol: str) -> dict[str, Any]:
    """The agent's ``[serial]`` table that reads this simulator (units for json and kv, columns for csv)."""
    return {
        "enabled": True,
        "port": str(link),
        "protocol": protocol,
        "units": {"temperature": "Cel", "humidity": "%RH"},
        "csv_columns": {"temp": "temperature:Cel", "hum": "humidity:%RH"},
    }


@dataclass
class SerialStats:
    good: int = 0  # lines that must become readings (partial and flooded lines included)
    garbage: int = 0  # lines that must be counted bad (an overlong line counts once)
    unplugs: int = 0


class SerialSensor:
    """One virtual sensor behind ``link``; plugged in on construction. Not thread-safe: one writer."""

    def __init__(
        self,
        link: Path,
        protocol: str = "json",
        model: Sensor | None = None,
        seed: int = 0,
        step: float = 1.0,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
        self.link = Path(link)
        self.protocol = protocol
        self.model = model or sensor("indoor", seed)
        self.rng = random.Random(seed)
        self.stats = SerialStats()
        self.t = 0.0  # the model's time of the next reading, seconds
        self.step = step  # model seconds between readings: more than 1/rate runs the day faster
        self._master = self._slave = -1
        self._header_due = False
        self.plug()

    # -- the device node ------------------------------------------------------------------------------

    def plug(self) -> None:
        """A new pty behind ``link`` (replaced atomically: the agent never sees the link missing)."""
        self._master, self._slave = os.openpty()
        tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(self._slave))
        tmp.replace(self.link)
        self._header_due = self.protocol == "csv"  # a device sends its header when it powers up

    def unplug(self) -> None:
        """Close both ends: the agent's next read fails as on a pulled USB cable."""
        if self._master >= 0:
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = -1
            self.stats.unplugs += 1

    def close(self, drain: float = 5.0) -> None:
        """The end: once the reader has taken what was written (up to ``drain`` seconds), close and
        remove the link."""
        self.wait_drained(drain)
        self.unplug()
        self.stats.unplugs -= 1  # closing at the end is not a fault
        self.link.unlink(missing_ok=True)

    def opened(self) -> bool:
        """The agent has the port open: pyserial switched the line to raw mode (no echo)."""
        return self._slave >= 0 and not termios.tcgetattr(self._slave)[3] & termios.ECHO

    def wait_opened(self, timeout: float, stop: threading.Event | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while not self.opened():
            if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                return False
            time.sleep(0.05)
        return True

    def drained(self) -> bool:
        """The reader has taken every byte written so far (nothing waits in the pty's input queue)."""
        if self._slave < 0:
            return True
        pending = fcntl.ioctl(self._slave, termios.TIOCINQ, b"\0\0\0\0")
        return struct.unpack("i", pending)[0] == 0

    def wait_drained(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait until :meth:`drained` has held for 0.3 s: bytes just written reach the queue a moment
        later (the kernel pushes them from the master's side in a work item, which a loaded machine
        may run late; microseconds usually, so 0.3 s of an empty queue is a wide margin)."""
        deadline = time.monotonic() + timeout
        held = 0
        while held < 15:
            if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                return False
            held = held + 1 if self.drained() else 0
            time.sleep(0.02)
        return True

    def write(self, data: bytes) -> None:
        """Raw bytes to the port; the header (CSV) first if the device has not sent it since plug-in."""
        if self._header_due:
            self._header_due = False
            os.write(self._master, _CSV_HEADER)
        view = memoryview(data)
        while view:  # a pty takes a few KiB at a time
            view = view[os.write(self._master, view) :]

    # -- lines ----------------------------------------------------------------------------------------

    def line(self, t: float) -> bytes:
        """The model's reading at ``t`` as one line of the protocol."""
        data = self.model.read(t)
        temp, hum = data["temperature"]["v"], data["humidity"]["v"]
        if self.protocol == "json":
            return orjson.dumps({"temperature": temp, "humidity": hum}) + b"\n"
        if self.protocol == "kv":
            return b"temperature=%r humidity=%r\n" % (temp, hum)
        return b"%d,%r,%r\n" % (int(t), temp, hum)

    def _next_line(self) -> bytes:
        line = self.line(self.t)
        self.t += self.step
        return line

    def reading(self, partial: bool = False, pause: float = 0.1) -> None:
        """One good line; ``partial``: its first half now, the rest after ``pause`` seconds."""
        line = self._next_line()
        if partial:
            cut = self.rng.randrange(1, len(line) - 1)
            self.write(line[:cut])
            time.sleep(pause)  # not a synchronisation: the agent keeps a partial line however it is cut
            line = line[cut:]
        self.write(line)
        self.stats.good += 1

    def garbage(self) -> None:
        """One line every protocol refuses, chosen by the seed."""
        bad = {
            "json": [b"{not json\n", b"[1, 2]\n", b'{"temperature": {"v": 1, "x": 2}}\n'],
            "kv": [b"no pairs here\n", b"temperature=nan\n", b"=5\n"],
            "csv": [b"1,2\n", b"1,2,3,4\n", b"1,,\n"],
        }[self.protocol] + [b"\x00\xff\xfe noise\n"]  # not UTF-8
        self.write(self.rng.choice(bad))
        self.stats.garbage += 1

    def flood(self, n: int) -> None:
        """``n`` good lines in one write: more than the agent reads per turn."""
        self.write(b"".join(self._next_line() for _ in range(n)))
        self.stats.good += n

    def overlong(self, max_line: int) -> None:
        """A line longer than ``max_line`` whose tail alone would be a good line: one bad line, not a
        reading (noise on the wire that lost the newlines)."""
        # max_line + 1 bytes are one full read of the agent's: the good line starts a read of its own
        self.write(b"y" * (max_line + 1) + self.line(self.t))  # the tail repeats the next reading
        self.stats.garbage += 1

    # -- the paced loop -------------------------------------------------------------------------------

    def run(
        self,
        rate: float,
        duration: float | None = None,
        garbage: float = 0.0,
        partial: float = 0.0,
        unplug_every: float | None = None,
        stop: threading.Event | None = None,
    ) -> SerialStats:
        """Write readings at ``rate`` a second until ``duration`` or ``stop``; a fraction ``garbage`` of
        lines is garbage, ``partial`` are split; every ``unplug_every`` seconds an unplug and replug.
        Writes only while a reader has the port open (waits for it after each plug)."""
        stop = stop or threading.Event()
        start = time.monotonic()
        end = None if duration is None else start + duration
        next_unplug = None if unplug_every is None else start + unplug_every
        due = start
        while not stop.is_set() and (end is None or time.monotonic() < end):
            if not self.opened():
                self.wait_opened(0.5, stop)
                due = time.monotonic()
                continue
            now = time.monotonic()
            if next_unplug is not None and now >= next_unplug:
                self.wait_drained(5.0, stop)  # pulled between lines the agent has read: exact counts
                self.unplug()
                self.plug()
                next_unplug = now + (unplug_every or 0.0)
                continue
            if now < due:
                stop.wait(min(due - now, 0.5))
                continue
            roll = self.rng.random()
            if roll < garbage:
                self.garbage()
            else:
                self.reading(partial=roll < garbage + partial, pause=min(0.1, 0.5 / rate))
            due += 1.0 / rate
        return self.stats
