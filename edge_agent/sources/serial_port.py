"""A sensor on a serial port (pyserial), one thread: pyserial owns a blocking ``readline``.

- Open by path (``/dev/ttyUSB0`` or the stable ``/dev/serial/by-id/...``), with baud rate and framing,
  ``exclusive=True`` (a second program cannot steal lines).
- ``readline`` with a timeout; a partial line (no newline yet) is kept and completed by the next read.
- Unplugged device: ``is_open`` stays true after an unplug, so the loop relies on the exception
  (``SerialException``/``OSError``) and reopens with :class:`edgebridge.retry.Backoff`.
- A line that does not parse, or whose data is not a valid reading, is counted in ``stats.bad``,
  logged (rate-limited) and skipped; so is a line longer than ``max_line`` (all of it, up to its
  newline: the tail of a long line is not read as a line of its own).
"""

from __future__ import annotations

import logging
import threading
import time

import serial

from edge_agent.clock import Clock
from edge_agent.config import SerialConfig
from edge_agent.sources.base import Intake, SourceStats
from edge_agent.sources.lines import LineParser
from edgebridge.envelope import new_reading
from edgebridge.errors import EnvelopeError
from edgebridge.logs import rate_limited
from edgebridge.retry import Backoff

__all__ = ["SerialSource"]

log = logging.getLogger(__name__)


class SerialSource:
    name = "serial"

    def __init__(self, deviceid: str, clock: Clock, config: SerialConfig) -> None:
        self.deviceid = deviceid
        self.clock = clock
        self.config = config
        self.stats = SourceStats()
        self.parser = LineParser(config.protocol, config.units, config.csv_columns)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._intake: Intake | None = None

    def set_interval(self, seconds: float) -> None:
        """A serial sensor sends at its own pace; nothing to change here."""

    def start(self, intake: Intake) -> None:
        self._intake = intake
        self._thread = threading.Thread(target=self._run, name="source-serial", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _open(self) -> serial.Serial:
        c = self.config
        return serial.Serial(
            c.port,
            baudrate=c.baudrate,
            bytesize=c.bytesize,
            parity=c.parity,
            stopbits=c.stopbits,
            timeout=c.read_timeout,
            exclusive=True,
        )

    def _run(self) -> None:
        # Backoff, not tenacity's Retrying: this supervises a session that may read for months and resets
        # the delays after each successful open, and its waits keep the watchdog heartbeat beating
        backoff = Backoff(self.config.reopen_initial, self.config.reopen_max)
        while not self._stop.is_set():
            self.stats.heartbeat = time.monotonic()
            try:
                port = self._open()
            except (serial.SerialException, OSError) as exc:
                rate_limited(log, "open", 10.0).warning(
                    "serial port cannot be opened",
                    extra={"port": self.config.port, "error": str(exc)},
                )
                self._wait(backoff)
                continue
            backoff.reset()
            self.parser.reset()
            try:
                self._read(port)
            except (serial.SerialException, OSError) as exc:
                self.stats.reopened += 1
                rate_limited(log, "read", 10.0).warning(
                    "serial port failed, reopening",
                    extra={"port": self.config.port, "error": str(exc)},
                )
            finally:
                port.close()
            if not self._stop.is_set():
                self._wait(backoff)

    def _wait(self, backoff: Backoff) -> None:
        # keep the watchdog heartbeat alive while waiting for the device to come back
        end = time.monotonic() + backoff.next_delay()
        while not self._stop.is_set() and time.monotonic() < end:
            self.stats.heartbeat = time.monotonic()
            self._stop.wait(min(0.5, max(0.0, end - time.monotonic())))

    def _read(self, port: serial.Serial) -> None:
        partial = b""
        limit = self.config.max_line
        skipping = False  # inside a line already refused as too long
        while not self._stop.is_set():
            self.stats.heartbeat = time.monotonic()
            chunk = port.readline(limit + 1)
            if not chunk:
                continue
            if skipping:
                # the rest of a too-long line up to its newline: its tail alone may look like a good line
                skipping = not chunk.endswith(b"\n")
                continue
            partial += chunk
            if not partial.endswith(b"\n"):
                if len(partial) > limit:
                    self._bad("line too long", partial[:80])
                    partial, skipping = b"", True
                continue  # a partial line: keep it until its newline arrives
            line, partial = partial, b""
            if len(line) > limit + 1:  # its newline came in the read that made it too long
                self._bad("line too long", line[:80])
                continue
            self._line(line)

    def _line(self, raw: bytes) -> None:
        try:
            data = self.parser.parse(raw.decode("utf-8"))
            if data is None:
                return
            stamp = self.clock.stamp()
            event = new_reading(
                self.deviceid,
                1,
                data,
                time=stamp.time,
                bootid=stamp.bootid,
                monotime=stamp.monotime,
                clocksynced=stamp.clocksynced,
            )
        except (ValueError, UnicodeDecodeError, EnvelopeError) as exc:
            self._bad(str(exc), raw[:80])
            return
        assert self._intake is not None
        if self._intake.put(event):
            self.stats.read += 1

    def _bad(self, why: str, raw: bytes) -> None:
        self.stats.bad += 1
        rate_limited(log, "bad-line", 10.0).warning(
            "bad serial line skipped",
            extra={"error": why, "line": raw.decode("utf-8", "replace")},
        )
