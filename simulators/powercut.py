"""A file system that loses power: what the power-cut suite puts the agent's outbox on.

A FUSE file system (fusepy over libfuse 2, one Python process of its own: a process must never serve a
FUSE mount it also uses, or a page fault on a mapped file deadlocks it) that keeps, besides the live
state every reader sees, what a disk would still hold after a power cut. :meth:`PowerCutFS.cut` throws
the difference away and from then on answers every operation with ``EIO`` until :meth:`power_on`,
which unmounts (the kernel's page cache goes with the mount) and mounts the durable state again.

What it models, strictly by POSIX:

- file data: a ``write`` or ``truncate`` is volatile until an ``fsync``/``fdatasync`` of that file
  (both count as full syncs); a cut restores every file to its content and size at its last sync
  (kept as an undo log of the writes since, so a sync costs nothing). With ``keep`` > 0, a cut lets
  each volatile write reach the disk with that probability instead (the page cache writes back any
  subset, in any order): holes where a later write landed and an earlier one did not read as zeros;
- names: ``create``, ``mkdir``, ``unlink``, ``rename`` are volatile until an ``fsync`` of the directory
  holding them; a cut puts every directory back to its entries at its last sync (a created file that
  was never named durably is gone even if its data was synced; an unlinked or renamed-over one is back).

What it does not model: the ordering guarantees of real file systems beyond POSIX (ext4's journal
makes a new file's name durable with its first fsync; here only the directory's fsync does), torn
writes inside one ``write`` call (sector-sized), volatile namespace operations surviving a cut, a disk
that lies about flushes, metadata other than size (times, modes), hard and symbolic links, and
crashes of the file system itself.

Operations are serialised (single-threaded libfuse loop and one lock) and counted: :meth:`arm` makes
the file system cut itself just before the N-th mutating operation (create, write, truncate, fsync,
fsyncdir, unlink, rename, mkdir, rmdir), so a cut lands at a reproducible point of a writer's work.

The file system is :mod:`simulators.powercut_fs`, a server run as ``python -m simulators.powercut_fs
STORE MOUNTPOINT`` that reads JSON commands on stdin and answers on stdout; :class:`PowerCutFS`, here,
starts and drives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from simulators.powercut_fs import mounted, umount

__all__ = ["PowerCutFS", "fuse_unavailable"]


def fuse_unavailable() -> str | None:
    """Why this machine cannot mount a power-cut file system, or ``None`` when it can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    try:
        import fuse  # noqa: F401  (fusepy: loads libfuse.so.2 at import)
    except (ImportError, OSError) as exc:
        return f"fusepy or libfuse2 missing: {exc}"
    if os.geteuid() != 0:
        return "mounting without fusermount needs root"
    return None


class PowerCutFS:
    """The power-cut file system mounted at ``mountpoint``, its files kept in ``store``.

    ``with PowerCutFS(store, mnt) as fs:`` ... ``fs.arm(after=500)`` ... ``fs.wait_cut()`` (or ``fs.cut()``),
    kill the writers, ``fs.power_on()``: the mount holds only what was durable.
    """

    def __init__(self, store: Path, mountpoint: Path, log: Path | None = None) -> None:
        self.store = Path(store)
        self.mountpoint = Path(mountpoint)
        self.log = log or self.store.with_name(self.store.name + ".log")
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self._events: list[dict[str, Any]] = []
        self._reader: threading.Thread | None = None

    def start(self) -> PowerCutFS:
        self.store.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "simulators.powercut_fs", str(self.store), str(self.mountpoint)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
        self._reader = threading.Thread(target=self._read, daemon=True, name="powercut-client")
        self._reader.start()
        deadline = time.monotonic() + 20
        while not mounted(str(self.mountpoint)):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"power-cut file system did not mount; see {self.log}")
            time.sleep(0.01)
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(json.loads(line))

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"power-cut file system silent for {timeout}s; see {self.log}") from None

    def _ask(self, timeout: float = 30, **cmd: Any) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(cmd) + "\n")
        self._proc.stdin.flush()
        while True:
            msg = self._next(timeout)
            if "ok" in msg:
                return msg
            self._events.append(msg)

    def arm(self, after: int, keep: float = 0.0, seed: int = 0, only: str | None = None) -> None:
        """Cut the power just before the ``after``-th mutating operation from now (counting only those
        whose ``"op path"``, e.g. ``"rename /outbox.db.seq.tmp"``, matches the regex ``only``)."""
        self._events.clear()
        self._ask(cmd="arm", after=after, keep=keep, seed=seed, only=only)

    def wait_cut(self, timeout: float, alive: Any = None) -> dict[str, Any] | None:
        """The armed cut's report, once it happened; ``None`` if ``alive()`` turns false first."""
        deadline = time.monotonic() + timeout
        while not self._events:
            if alive is not None and not alive():
                return None
            if time.monotonic() > deadline:
                raise TimeoutError(f"no power cut within {timeout}s")
            with contextlib.suppress(TimeoutError):
                msg = self._next(0.02)
                if msg.get("event") == "cut":
                    self._events.append(msg)
        return self._events.pop(0)

    def cut(self, keep: float = 0.0, seed: int = 0) -> dict[str, Any]:
        """Cut the power now."""
        return self._ask(cmd="cut", keep=keep, seed=seed)

    def power_on(self) -> dict[str, Any]:
        """Unmount and mount the durable state again; every process using the old mount must be gone."""
        reply = self._ask(cmd="on")
        if not reply["ok"]:
            raise RuntimeError(f"power-cut file system did not come back; see {self.log}")
        return reply

    def sync(self) -> None:
        self._ask(cmd="sync")

    def stop(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)
        if self._reader is not None:
            self._reader.join(10)
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        if mounted(str(self.mountpoint)):
            umount(str(self.mountpoint))
        self._proc = None

    def __enter__(self) -> PowerCutFS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
