"""What every local broker has in common: one process, one state folder, a readiness probe."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from edgebridge.devbrokers._process import pid_matches, spawn, stop_pid, wait_until
from edgebridge.errors import BrokerStartError

__all__ = ["ManagedBroker"]


class ManagedBroker(ABC):
    """A broker process we start, probe and stop, living entirely under ``state_dir``.

    ``stop``/``start`` keep the data folder and the port, so a restart looks to clients like the same
    broker coming back: fault-injection tests rely on that. ``kill`` is SIGKILL, ``pause``/``resume``
    are SIGSTOP/SIGCONT (a broker that hangs without closing its sockets).
    """

    name = "broker"

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.pid: int | None = None
        self.ready_seconds: float | None = None

    # -- what each broker defines -------------------------------------------------------------
    @abstractmethod
    def prepare(self) -> None:
        """Write configuration and initialise data on disk (idempotent)."""

    @abstractmethod
    def command(self) -> list[str]:
        """The command line that runs the broker in the foreground."""

    @abstractmethod
    def probe(self) -> bool:
        """True when the broker answers a real protocol request."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What `status` shows and the state file keeps."""

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    @property
    def marker(self) -> str:
        # Every broker's command line names its own state folder: that is how we recognise our pid.
        return str(self.state_dir)

    def env(self) -> dict[str, str] | None:
        return None

    def is_running(self) -> bool:
        return self.pid is not None and pid_matches(self.pid, self.marker)

    def start(self, timeout: float = 60.0) -> None:
        """Start the broker and return once it answers its protocol; raise BrokerStartError if not."""
        if self.is_running():
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        began = time.monotonic()
        proc = spawn(self.command(), self.log_path, env=self.env())
        self.pid = proc.pid

        def ready() -> bool:
            if proc.poll() is not None:
                raise BrokerStartError(self.name, f"exited with code {proc.returncode}", str(self.log_path))
            try:
                return self.probe()
            except OSError:
                return False

        if not wait_until(ready, timeout, interval=0.2):
            self.kill()
            raise BrokerStartError(self.name, f"not ready after {timeout:.0f}s", str(self.log_path))
        self.ready_seconds = round(time.monotonic() - began, 2)
        # The Popen object is dropped on purpose: the process outlives this one when run by the CLI.
        # A child reaper is not needed there; in-process users (tests) call stop(), which polls /proc.
        proc.returncode = 0  # silence Popen's ResourceWarning about a child still running

    def stop(self, timeout: float = 30.0) -> None:
        if self.pid is not None:
            stop_pid(self.pid, self.marker, timeout)
            self._reap()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        wait_until(lambda: not self.is_running(), 10.0)
        self._reap()

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def signal(self, sig: int) -> None:
        if self.pid is not None and pid_matches(self.pid, self.marker):
            os.kill(self.pid, sig)

    def _reap(self) -> None:
        if self.pid is None:
            return
        # ChildProcessError: not our child (started by an earlier `brokers up`); nothing to reap.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, os.WNOHANG)
