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

Run as ``python -m simulators.powercut STORE MOUNTPOINT``: the server; it reads JSON commands on stdin
and answers on stdout. :class:`PowerCutFS` starts and drives it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import queue
import random
import re
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PowerCutFS", "fuse_unavailable"]

MUTATING = frozenset({"create", "write", "truncate", "fsync", "fsyncdir", "unlink", "rename", "mkdir",
                      "rmdir"})


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


def _mounted(mountpoint: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == mountpoint for line in f)


def _umount(mountpoint: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(mountpoint.encode(), 0) != 0 and ctypes.get_errno() == errno.EBUSY:
        libc.umount2(mountpoint.encode(), 2)  # MNT_DETACH: the kernel lets go once nothing uses it


# -- the server ------------------------------------------------------------------------------------


@dataclass
class _Change:
    """One volatile change of a file: enough to undo it (``old``: the bytes it replaced, ``size``: the
    size before) and to redo it (``data`` written at ``offset``, or a truncate to ``offset``)."""

    offset: int
    old: bytes
    size: int
    data: bytes | None  # None: a truncate


@dataclass(eq=False)
class _Node:
    ino: int
    mode: int
    fd: int = -1  # files: the open backing file
    changes: list[_Change] = field(default_factory=list)  # files: volatile since the last fsync
    entries: dict[str, _Node] = field(default_factory=dict)  # dirs: live
    durable: dict[str, _Node] = field(default_factory=dict)  # dirs: as of the last fsync

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


class _Server:
    """The FUSE operations (path-based, fusepy's ``Operations`` protocol) over one store folder."""

    use_ns = True

    def __init__(self, store: Path, out: _Out) -> None:
        self.store = store
        self.out = out
        self.mutex = threading.Lock()
        self.dead = False
        self.armed: tuple[int, float, int, re.Pattern[str] | None] | None = None  # see arm()
        self.ops = 0
        self.cuts = 0
        self._next_ino = 1
        self.nodes: dict[int, _Node] = {}
        self.root = self._new(stat.S_IFDIR | 0o755)

    # fusepy calls ``ops(name, path, *args)`` for the operations this class has (so: no ``lock``, the
    # kernel keeps POSIX locks itself): one place for the mutex, the cut and the counter
    def __call__(self, op: str, *args: Any) -> Any:
        from fuse import FuseOSError

        with self.mutex:
            if self.dead and op not in ("flush", "release", "releasedir", "destroy", "init"):
                raise FuseOSError(errno.EIO)
            if op in MUTATING:
                at = f"{op} {args[0]}"
                if self.armed is not None:
                    left, keep, seed, only = self.armed
                    if only is None or only.search(at):
                        if left <= 0:
                            self.cut(keep, seed, at=at)
                            raise FuseOSError(errno.EIO)
                        self.armed = (left - 1, keep, seed, only)
                self.ops += 1
            method = getattr(self, op, None)
            if method is None:
                raise FuseOSError(errno.ENOSYS)
            return method(*args)

    # -- state ---------------------------------------------------------------------------------------

    def _new(self, mode: int) -> _Node:
        node = _Node(self._next_ino, mode)
        self._next_ino += 1
        if not node.is_dir:
            node.fd = os.open(self.store / str(node.ino), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.nodes[node.ino] = node
        return node

    def _lookup(self, path: str) -> _Node:
        from fuse import FuseOSError

        node = self.root
        for part in filter(None, path.split("/")):
            if not node.is_dir or part not in node.entries:
                raise FuseOSError(errno.ENOENT)
            node = node.entries[part]
        return node

    def _parent(self, path: str) -> tuple[_Node, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        return self._lookup(head or "/"), name

    def cut(self, keep: float, seed: int, at: str = "") -> dict[str, Any]:
        """Power is gone: every file and directory back to what is durable (called with the lock)."""
        rng = random.Random(seed)
        dropped = kept = 0
        for node in list(self.nodes.values()):
            if node.is_dir:
                node.entries = dict(node.durable)
                continue
            for change in reversed(node.changes):
                os.ftruncate(node.fd, change.size)
                os.pwrite(node.fd, change.old, change.offset)
            for change in node.changes:
                if keep and rng.random() < keep:
                    kept += 1
                    self._apply(node, change)
                else:
                    dropped += 1
            node.changes = []
        self.dead = True
        self.armed = None
        self.cuts += 1
        self._collect()
        event = {"event": "cut", "at": at, "ops": self.ops, "dropped": dropped, "kept": kept}
        self.out.send(event)
        return event

    def _apply(self, node: _Node, change: _Change) -> None:
        if change.data is None:
            os.ftruncate(node.fd, change.offset)
        else:
            os.pwrite(node.fd, change.data, change.offset)

    def _collect(self) -> None:
        """Forget the nodes no directory names any more, live or durable."""
        reachable: set[int] = set()
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node.ino in reachable:
                continue
            reachable.add(node.ino)
            stack.extend(node.entries.values())
            stack.extend(node.durable.values())
        for ino in [i for i in self.nodes if i not in reachable]:
            node = self.nodes.pop(ino)
            if not node.is_dir:
                os.close(node.fd)
                os.unlink(self.store / str(ino))

    def sync(self) -> None:
        """Make everything durable (a clean shutdown)."""
        for node in self.nodes.values():
            node.changes = []
            node.durable = dict(node.entries)

    # -- FUSE operations -----------------------------------------------------------------------------

    def init(self, path: str) -> None:
        return None

    def destroy(self, path: str) -> None:
        return None

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        node = self._lookup(path)
        size = 4096 if node.is_dir else os.fstat(node.fd).st_size
        now = time.time_ns()
        return {"st_mode": node.mode, "st_nlink": 2 if node.is_dir else 1, "st_size": size,
                "st_uid": 0, "st_gid": 0, "st_atime": now, "st_mtime": now, "st_ctime": now,
                "st_blocks": (size + 511) // 512}

    def access(self, path: str, amode: int) -> int:
        self._lookup(path)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self.store)
        keys = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree",
                "f_favail", "f_flag", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *self._lookup(path).entries]

    def opendir(self, path: str) -> int:
        self._lookup(path)
        return 0

    def releasedir(self, path: str, fh: int) -> int:
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        node = self._lookup(path)
        node.durable = dict(node.entries)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        parent, name = self._parent(path)
        parent.entries[name] = self._new(stat.S_IFDIR | (mode & 0o7777))
        return 0

    def rmdir(self, path: str) -> int:
        from fuse import FuseOSError

        parent, name = self._parent(path)
        if self._lookup(path).entries:
            raise FuseOSError(errno.ENOTEMPTY)
        del parent.entries[name]
        return 0

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        parent, name = self._parent(path)
        node = self._new(stat.S_IFREG | (mode & 0o7777))
        parent.entries[name] = node
        return node.ino

    def open(self, path: str, flags: int) -> int:
        return self._lookup(path).ino

    def release(self, path: str, fh: int) -> int:
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(self.nodes[fh].fd, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        node = self.nodes[fh]
        size = os.fstat(node.fd).st_size
        old = os.pread(node.fd, max(0, min(len(data), size - offset)), offset)
        node.changes.append(_Change(offset, old, size, bytes(data)))
        return os.pwrite(node.fd, data, offset)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        node = self.nodes[fh] if fh else self._lookup(path)
        size = os.fstat(node.fd).st_size
        old = os.pread(node.fd, size - length, length) if length < size else b""
        node.changes.append(_Change(length, old, size, None))
        os.ftruncate(node.fd, length)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        self.nodes[fh].changes = []
        return 0

    def unlink(self, path: str) -> int:
        parent, name = self._parent(path)
        self._lookup(path)
        del parent.entries[name]
        return 0

    def rename(self, old: str, new: str) -> int:
        node = self._lookup(old)
        old_parent, old_name = self._parent(old)
        new_parent, new_name = self._parent(new)
        del old_parent.entries[old_name]
        new_parent.entries[new_name] = node
        return 0

    def chmod(self, path: str, mode: int) -> int:
        node = self._lookup(path)
        node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        return 0

    def utimens(self, path: str, times: Any = None) -> int:
        return 0


class _Out:
    """Lines to the client, from the FUSE thread (a cut) and the control thread (answers)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()


def serve(store: Path, mountpoint: str) -> None:
    """Mount at ``mountpoint`` until told to quit; remount after each power cut."""
    from fuse import FUSE

    out = _Out()
    server = _Server(store, out)
    state = {"quit": False}
    remount = threading.Event()
    mounted = threading.Event()

    def control() -> None:
        for line in sys.stdin:
            cmd = json.loads(line)
            name = cmd["cmd"]
            if name == "arm":
                with server.mutex:
                    only = re.compile(cmd["only"]) if cmd.get("only") else None
                    server.armed = (cmd["after"], cmd.get("keep", 0.0), cmd.get("seed", 0), only)
                out.send({"ok": True})
            elif name == "cut":
                with server.mutex:
                    out.send(server.cut(cmd.get("keep", 0.0), cmd.get("seed", 0)) | {"ok": True})
            elif name == "sync":
                with server.mutex:
                    server.sync()
                out.send({"ok": True})
            elif name == "on":
                mounted.clear()
                _umount(mountpoint)
                remount.set()
                ok = mounted.wait(30)
                out.send({"ok": ok, "ops": server.ops, "cuts": server.cuts, "files": len(server.nodes)})
            elif name == "stats":
                out.send({"ok": True, "ops": server.ops, "cuts": server.cuts})
            elif name == "quit":
                break
        state["quit"] = True
        _umount(mountpoint)

    threading.Thread(target=control, daemon=True, name="control").start()

    def watch_mount() -> None:
        while not _mounted(mountpoint):
            time.sleep(0.002)
        mounted.set()

    while not state["quit"]:
        threading.Thread(target=watch_mount, daemon=True).start()
        FUSE(server, mountpoint, foreground=True, nothreads=True, big_writes=True, hard_remove=True,
             fsname="powercut")
        if state["quit"]:
            break
        if not remount.wait(60):
            break  # unmounted by someone else, nobody asked for power: stop
        remount.clear()
        with server.mutex:
            server.dead = False


# -- the client ------------------------------------------------------------------------------------


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
                [sys.executable, "-m", "simulators.powercut", str(self.store), str(self.mountpoint)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
        self._reader = threading.Thread(target=self._read, daemon=True, name="powercut-client")
        self._reader.start()
        deadline = time.monotonic() + 20
        while not _mounted(str(self.mountpoint)):
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
        if _mounted(str(self.mountpoint)):
            _umount(str(self.mountpoint))
        self._proc = None

    def __enter__(self) -> PowerCutFS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), sys.argv[2])
