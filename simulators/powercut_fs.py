"""The power-cut file system's server: the FUSE operations over a store folder and the durability model
of :mod:`simulators.powercut` (whose docstring says what is modelled), in a process of its own.

Run as ``python -m simulators.powercut_fs STORE MOUNTPOINT`` (:class:`simulators.powercut.PowerCutFS`
does). It reads one JSON command a line on stdin (``arm``, ``cut``, ``sync``, ``on``, ``stats``,
``quit``) and answers each with a line holding ``ok`` on stdout, where a cut that an ``arm`` set off is
reported as ``{"event": "cut", ...}`` when it happens.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import random
import re
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MUTATING", "mounted", "serve", "umount"]

MUTATING = frozenset({"create", "write", "truncate", "fsync", "fsyncdir", "unlink", "rename", "mkdir",
                      "rmdir"})


def mounted(mountpoint: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == mountpoint for line in f)


def umount(mountpoint: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(mountpoint.encode(), 0) != 0 and ctypes.get_errno() == errno.EBUSY:
        libc.umount2(mountpoint.encode(), 2)  # MNT_DETACH: the kernel lets go once nothing uses it


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
    is_up = threading.Event()  # the mount is back

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
                is_up.clear()
                umount(mountpoint)
                remount.set()
                ok = is_up.wait(30)
                out.send({"ok": ok, "ops": server.ops, "cuts": server.cuts, "files": len(server.nodes)})
            elif name == "stats":
                out.send({"ok": True, "ops": server.ops, "cuts": server.cuts})
            elif name == "quit":
                break
        state["quit"] = True
        umount(mountpoint)

    threading.Thread(target=control, daemon=True, name="control").start()

    def watch_mount() -> None:
        while not mounted(mountpoint):
            time.sleep(0.002)
        is_up.set()

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


if __name__ == "__main__":
    serve(Path(sys.argv[1]), sys.argv[2])
