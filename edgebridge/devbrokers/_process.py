"""Starting, probing and stopping the broker processes we own.

A broker process is started in its own session (``start_new_session``) so that ``edgebridge brokers up``
can exit and leave it running, and so that a terminal's Ctrl-C does not reach it. It is identified later
by pid *and* by a marker in its command line (its state folder), so ``down`` never signals a recycled pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from edgebridge.errors import ToolMissingError

__all__ = [
    "free_port",
    "owns_listener",
    "pid_matches",
    "require_tool",
    "spawn",
    "stop_pid",
    "thread_states",
    "wait_until",
]


def require_tool(tool: str, package: str) -> str:
    """The absolute path of ``tool``, or a one-line error naming the Debian package to install."""
    found = shutil.which(tool) or (shutil.which(tool, path="/usr/sbin:/sbin"))
    if not found:
        raise ToolMissingError(tool, package)
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the usual bind-to-0 trick; racy, but only locally)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def spawn(cmd: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` detached from our session, stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )


def pid_matches(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive and its command line contains ``marker``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # A zombie has an empty command line: it is no longer running.
    return bool(cmdline) and marker.encode() in cmdline


def thread_states(pid: int) -> list[str]:
    """The state letter of every thread of ``pid`` (``R``, ``S``, ``D``, ``T`` stopped, ``Z``, ...).

    Read from ``/proc/PID/task/*/stat``. Raises ProcessLookupError when the process is gone.
    """
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError as exc:
        raise ProcessLookupError(pid) from exc
    states = []
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread exited between the listing and the read
        # The thread name sits in parentheses and may itself contain ") ": the state follows the last one.
        states.append(stat.rpartition(")")[2].split()[0])
    if not states:
        raise ProcessLookupError(pid)
    return states


def owns_listener(pid: int, port: int) -> bool:
    """True when ``pid`` holds a TCP socket listening on ``port`` (any local address, IPv4 or IPv6).

    An answer on a port proves only that *somebody* listens there; this ties the listener to a process,
    through the socket inodes of ``/proc/net/tcp*`` and the descriptors in ``/proc/PID/fd``.
    """
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            # sl local_address rem_address st ... inode: st 0A is LISTEN, the port is hex after the colon
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                listening.add(f"socket:[{fields[9]}]")
    if not listening:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in listening:
                return True
        except OSError:
            continue  # closed meanwhile
    return False


def stop_pid(pid: int, marker: str, timeout: float = 30.0, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` and wait up to ``timeout`` for the process to exit; SIGKILL after that.

    Returns False when the process was not running (or is not ours). A stopped (SIGSTOP) process is
    continued first, or it could never act on SIGTERM.
    """
    if not pid_matches(pid, marker):
        return False
    try:
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    if wait_until(lambda: not pid_matches(pid, marker), timeout):
        return True
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    wait_until(lambda: not pid_matches(pid, marker), 10.0)
    return True


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
