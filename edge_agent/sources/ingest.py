"""Local ingest: other programs on the device hand readings to the agent over a UNIX datagram socket.

Why a UNIX datagram socket: no port to firewall, file permissions (``mode``, default 0660, plus the
service's group) decide who may write, one datagram is one reading (no framing), and a full socket
buffer makes the sender wait: backpressure without an HTTP stack. Send one JSON object per datagram,
either reading data ``{"temperature": {"v": 21.5, "u": "Cel"}}`` or ``{"data": {...}, "time": "..."}``
(``time`` optional: the device clock at send time when given). Example::

    python3 -c 'import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM);
                s.sendto(b"{\"door\": {\"v\": true}}", "/var/lib/edge-agent/ingest.sock")'

A datagram that is not a valid reading is counted in ``stats.bad``, logged (rate-limited) and dropped;
the sender gets no reply (datagrams are fire-and-forget; check the agent's metrics).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from pathlib import Path

import orjson

from edge_agent.clock import Clock
from edge_agent.config import IngestConfig
from edge_agent.sources.base import Intake, SourceStats
from edgebridge.envelope import new_reading
from edgebridge.errors import EnvelopeError
from edgebridge.logs import rate_limited

__all__ = ["IngestSource"]

log = logging.getLogger(__name__)


class IngestSource:
    name = "ingest"

    def __init__(self, deviceid: str, clock: Clock, path: Path, config: IngestConfig) -> None:
        self.deviceid = deviceid
        self.clock = clock
        self.path = Path(path)
        self.config = config
        self.stats = SourceStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._intake: Intake | None = None

    def set_interval(self, seconds: float) -> None:
        """Senders choose their own pace."""

    def start(self, intake: Intake) -> None:
        self._intake = intake
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket of a previous run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        os.chmod(self.path, self.config.mode)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="source-ingest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _run(self) -> None:
        assert self._sock is not None and self._intake is not None
        while not self._stop.is_set():
            self.stats.heartbeat = time.monotonic()
            try:
                datagram = self._sock.recv(self.config.max_datagram)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            self._datagram(datagram)

    def _datagram(self, datagram: bytes) -> None:
        assert self._intake is not None
        try:
            obj = orjson.loads(datagram)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            data, when = (obj["data"], obj.get("time")) if "data" in obj else (obj, None)
            stamp = self.clock.stamp()
            event = new_reading(
                self.deviceid,
                1,
                data,
                time=when or stamp.time,
                bootid=stamp.bootid,
                monotime=stamp.monotime,
                clocksynced=stamp.clocksynced,
            )
        except (ValueError, EnvelopeError) as exc:  # orjson.JSONDecodeError is a ValueError
            self.stats.bad += 1
            rate_limited(log, "bad-datagram", 10.0).warning("bad ingest datagram dropped",
                                                            extra={"error": str(exc)})
            return
        if self._intake.put(event):
            self.stats.read += 1
