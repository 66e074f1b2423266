"""The seq sidecar: a tiny file next to the outbox that survives the outbox itself.

``outbox.db.seq`` holds ``{"deviceid", "epoch", "reserved", "acked"}``:

- ``epoch`` is the outbox's epoch (see :mod:`edge_agent.outbox`): a new outbox file next to a surviving
  sidecar continues that epoch (its seqs go on above ``reserved``), so only the loss of both starts a new
  one. Absent in sidecars written before epochs: the legacy epoch ``""``.

- ``reserved`` is a high-water mark: no seq above it has ever been assigned. The outbox raises it by a
  block (default 100,000) *before* assigning a seq past it, so the file is written (fsync, rename, fsync
  of the folder) once per block, not once per commit.
- ``acked`` is a low-water mark: every seq up to it was PUBACKed. It is refreshed at each reservation and
  at a clean close, so it may lag: it is a lower bound, never more.

When the outbox file is corrupt and quarantined, the seqs it may have held but not delivered are within
``acked + 1 .. reserved``: the new outbox announces that range as a gap (a conservative superset: some of
those seqs may have been delivered, some never assigned) and continues at ``reserved + 1``, so a seq is
never reused, even with a brand-new database.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from edgebridge.envelope import is_epoch

__all__ = ["SeqMarks", "read_marks", "write_marks"]


@dataclass(frozen=True)
class SeqMarks:
    deviceid: str
    reserved: int = 0
    acked: int = 0
    epoch: str = ""


def read_marks(path: Path, deviceid: str) -> SeqMarks | None:
    """The marks for ``deviceid``, or ``None`` when the file is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
        if data.get("deviceid") != deviceid:
            return None
        epoch = data.get("epoch", "")
        if not isinstance(epoch, str) or (epoch and not is_epoch(epoch)):
            return None
        return SeqMarks(deviceid, int(data["reserved"]), int(data["acked"]), epoch)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_marks(path: Path, marks: SeqMarks) -> None:
    """Replace the file atomically and durably: a crash leaves the old or the new one, never half."""
    tmp = path.with_name(path.name + ".tmp")
    body = json.dumps({"deviceid": marks.deviceid, "epoch": marks.epoch, "reserved": marks.reserved,
                       "acked": marks.acked})
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            os.write(fd, body.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk: leave no half file behind, the old one stands
        raise
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
