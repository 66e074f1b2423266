"""What every local broker has in common: one process, one state folder, a readiness probe.

Fault injection is only as good as its proof: every lifecycle step here checks that it happened
(the process answering is ours, a paused process is stopped, a killed one is gone) and raises
otherwise, because a test that freezes a broker which was never frozen passes or fails for nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from edgebridge.devbrokers._process import (
    owns_listener,
    pid_matches,
    spawn,
    stop_pid,
    thread_states,
    wait_until,
)
from edgebridge.errors import BrokerFaultError, BrokerStartError

__all__ = ["ManagedBroker"]


class ManagedBroker(ABC):
    """A broker process we start, probe and stop, living entirely under ``state_dir``.

    ``stop``/``start`` keep the data folder and the port, so a restart looks to clients like the same
    broker coming back: fault-injection tests rely on that. ``kill`` is SIGKILL, ``pause``/``resume``
    are SIGSTOP/SIGCONT (a broker that hangs without closing its sockets). Each returns only once the
    process is in the promised state, and raises :class:`BrokerFaultError` when it is not ours, not
    running, or does not get there.

    The process started here stays our child (its ``Popen`` is kept) and is reaped by ``stop``,
    ``kill`` and ``is_running``, so no zombies pile up in a long test session. A process that must
    outlive us (``edgebridge brokers up``) is handed over with :meth:`detach`; one found through a pid
    saved by an earlier run is recognised by pid *and* marker, and reaped by whoever its parent is.
    """

    name = "broker"

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.pid: int | None = None
        self.port: int = 0  # the TCP port clients use; start() checks that our process listens on it
        self.ready_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

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

    def check_identity(self) -> None:
        """Raise BrokerStartError when what answered the probe on ``port`` is not this broker.

        Called by ``start`` once the probe succeeds, after checking that our process is alive and
        before checking it holds the listening socket. The default has nothing more to compare;
        Kafka compares cluster ids.
        """
        return None

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
        """True when our process is alive (a stopped, paused one included). Reaps our child if it died."""
        child = self._child()
        if child is not None:
            return child.poll() is None
        return self.pid is not None and pid_matches(self.pid, self.marker)

    def is_paused(self) -> bool:
        """True when our process is alive and every one of its threads is stopped (state ``T``)."""
        if not self.is_running():
            return False
        assert self.pid is not None
        try:
            return all(state == "T" for state in thread_states(self.pid))
        except ProcessLookupError:
            return False

    def start(self, timeout: float = 60.0) -> None:
        """Start the broker and return once *our* process answers its protocol; BrokerStartError if not.

        "Ours" is checked, not assumed. A port found free can be taken by another broker before ours
        binds it (other test sessions share the machine, and a leftover broker of an earlier run may
        hold a port saved in state.json): that broker would answer the probe while ours dies of
        "address in use", and every later pause or kill would reach nobody. So once the probe
        succeeds, the process we spawned must still run, pass :meth:`check_identity`, and hold the
        listening socket of ``port``; otherwise it is killed and the start fails.
        """
        if self.is_running():
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        began = time.monotonic()
        proc = spawn(self.command(), self.log_path, env=self.env())
        self._proc, self.pid = proc, proc.pid

        def ready() -> bool:
            if proc.poll() is not None:
                raise BrokerStartError(self.name, f"exited with code {proc.returncode}", str(self.log_path))
            try:
                return self.probe()
            except OSError:
                return False

        if not wait_until(ready, timeout, interval=0.2):
            self._discard()
            raise BrokerStartError(self.name, f"not ready after {timeout:.0f}s", str(self.log_path))
        try:
            self._check_ours(proc)
        except BaseException:
            self._discard()
            raise
        self.ready_seconds = round(time.monotonic() - began, 2)

    def _check_ours(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            raise BrokerStartError(
                self.name, f"port {self.port} answered, but our process (pid {proc.pid}) is not running: "
                "another broker holds the port", str(self.log_path))
        self.check_identity()
        if not owns_listener(proc.pid, self.port):
            raise BrokerStartError(
                self.name, f"port {self.port} answered, but its listening socket is not our process's "
                f"(pid {proc.pid}): another program holds the port", str(self.log_path))

    def detach(self) -> None:
        """Hand the running process over: it outlives this Python process (`edgebridge brokers up`).

        Afterwards it is found, like one of an earlier run, by pid and marker; nothing here waits for it.
        """
        if self._proc is not None and self._proc.poll() is None:
            # Popen warns (ResourceWarning) when collected while its child runs, and queues it for
            # reaping: neither applies to a process we deliberately leave running.
            self._proc.returncode = 0
        self._proc = None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (SIGKILL after ``timeout``); return once the process is gone and reaped.

        Does nothing when the broker is not running: teardown calls it whatever the test did.
        """
        if self.pid is not None:
            stop_pid(self.pid, self.marker, timeout)
            if not self._gone(self.pid, 10.0):
                raise BrokerFaultError(self.name, "still running after SIGTERM and SIGKILL", self.pid)

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL (a crash: no shutdown, connections reset); return once the process is gone and reaped.

        Raises BrokerFaultError when it is not running or not ours, or still there after ``timeout``.
        """
        pid = self.signal(signal.SIGKILL)
        if not self._gone(pid, timeout):
            raise BrokerFaultError(self.name, f"SIGKILL sent, still running after {timeout:g}s", pid)

    def pause(self, timeout: float = 10.0) -> None:
        """SIGSTOP: freeze the broker, its connections open and unanswered.

        Returns only once every thread is stopped (state ``T`` in /proc/PID/task/*/stat): a JVM's
        hundred threads stop one by one, and until the last has, the broker may still answer.
        Raises BrokerFaultError when it is not running or not ours, or not all stopped within ``timeout``.
        """
        pid = self.signal(signal.SIGSTOP)

        def stopped() -> bool:
            # A process already on its way out (killed, its memory released, not yet a zombie) takes
            # the signal and then vanishes: that is "not running", not a broker that refuses to stop.
            if not self.is_running():
                raise BrokerFaultError(self.name, "not running: exited instead of stopping", pid)
            return self.is_paused()

        if not wait_until(stopped, timeout, interval=0.01):
            raise BrokerFaultError(self.name, f"SIGSTOP sent, but after {timeout:g}s its threads are in "
                                   f"states {self._states(pid)}, not all T (stopped)", pid)

    def resume(self, timeout: float = 10.0) -> None:
        """SIGCONT; return once no thread is stopped any more. BrokerFaultError otherwise (as ``pause``)."""
        pid = self.signal(signal.SIGCONT)

        def thawed() -> bool:
            try:
                return "T" not in thread_states(pid)
            except ProcessLookupError:
                raise BrokerFaultError(self.name, "exited instead of resuming", pid) from None

        if not wait_until(thawed, timeout, interval=0.01):
            raise BrokerFaultError(self.name, f"SIGCONT sent, but after {timeout:g}s its threads are in "
                                   f"states {self._states(pid)}", pid)

    def signal(self, sig: int) -> int:
        """Send ``sig`` to our broker process and return its pid.

        Raises BrokerFaultError when there is nothing of ours to signal: never started, exited, or the
        pid now belongs to another program (its command line lacks our marker). This once did nothing
        silently, and a test believed Kafka frozen while it confirmed 245 messages.
        """
        pid = self.pid
        if pid is None:
            raise BrokerFaultError(self.name, "not started: no process to signal")
        child = self._child()
        if child is not None:
            if child.poll() is not None:
                raise BrokerFaultError(self.name, f"not running: exited with code {child.returncode}", pid)
        elif not pid_matches(pid, self.marker):
            raise BrokerFaultError(self.name, f"not running, or the pid is not ours (its command line does "
                                   f"not name {self.marker})", pid)
        try:
            # A pid found by marker could in theory be recycled between the check and this call;
            # our own child's cannot, until we reap it.
            os.kill(pid, sig)
        except ProcessLookupError as exc:
            raise BrokerFaultError(self.name, "exited before it could be signalled", pid) from exc
        return pid

    def _child(self) -> subprocess.Popen[bytes] | None:
        """The Popen of ``pid`` when we started it (and did not detach it), else None.

        For our own child, ``poll()`` is the whole truth: its pid cannot be recycled before we reap
        it. (Its command line is no guide right after spawn: it reads empty until the exec completes.)
        """
        if self._proc is not None and self._proc.pid == self.pid:
            return self._proc
        return None

    def _gone(self, pid: int, timeout: float) -> bool:
        """Wait until ``pid`` has exited (and reap it when it is our child)."""
        child = self._child()
        if child is not None and child.pid == pid:
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        # Not our child (started by an earlier `brokers up`): its parent reaps it. A zombie has an
        # empty command line, so it no longer matches. No waitpid here: were the pid recycled into
        # another child of ours, we would steal that child's exit status.
        return wait_until(lambda: not pid_matches(pid, self.marker), timeout)

    def _discard(self) -> None:
        """Kill and reap the process of a failed start, whatever state it is in."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(10)

    def _states(self, pid: int) -> str:
        try:
            states = thread_states(pid)
        except ProcessLookupError:
            return "(gone)"
        return " ".join(f"{s}x{states.count(s)}" for s in sorted(set(states)))
