"""Writing a deployment's files: secrets are 0600 from the moment they exist, replacements are atomic.

A secret is created with its final mode by ``open(O_CREAT | O_EXCL, 0o600)``, never written first and
restricted after (a reader could open it in between). Files that a running broker reads (its password
file) are replaced with a rename, so it reloads either the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PUBLIC", "SECRET", "replace", "write_new"]

SECRET = 0o600
PUBLIC = 0o644


def write_new(path: Path, data: bytes | str, mode: int, owner: int | None = None) -> Path:
    """Create ``path`` (it must not exist) holding ``data`` with ``mode``, its folder made if needed;
    ``owner``: the uid (and gid) it is given, before anything is written to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, mode)  # the umask may have narrowed a public file's mode
        if owner is not None:
            os.fchown(fd, owner, owner)
        f.write(raw)
        f.flush()
        os.fsync(fd)
    return path


def replace(path: Path, data: bytes | str, mode: int, owner: int | None = None) -> Path:
    """Replace ``path`` with ``data`` (mode ``mode``) atomically: a temporary file renamed over it."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.unlink(missing_ok=True)  # left by an interrupted earlier run
    write_new(tmp, data, mode, owner)
    os.replace(tmp, path)
    return path
