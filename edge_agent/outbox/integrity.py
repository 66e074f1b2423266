"""The check of an outbox file at open, and the quarantine of a corrupt one.

At open, ``PRAGMA quick_check`` (or ``integrity_check``); a corrupt file is renamed aside with its
``-wal``/``-shm`` (kept, never deleted), a new outbox starts, and the possibly lost range from the seq
sidecar (:mod:`edge_agent.outbox.seqfile`) is announced as a gap with reason ``quarantined``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)


def healthy(path: Path, mode: Literal["quick", "full", "off"]) -> bool:
    """Whether the existing file at ``path`` reads as an outbox; ``mode`` is ``integrity_check``."""
    try:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if mode == "off":
                return True
            pragma = "quick_check" if mode == "quick" else "integrity_check"
            result = [r[0] for r in db.execute(f"PRAGMA {pragma}")]
            db.execute("SELECT count(*), max(seq) FROM outbox").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        log.error("outbox unreadable", extra={"path": str(path), "error": str(exc)})
        return False
    if result != ["ok"]:
        log.error("outbox failed integrity check", extra={"path": str(path), "errors": result[:5]})
        return False
    return True


def quarantine(path: Path) -> None:
    """Rename the file at ``path`` and its ``-wal``/``-shm`` aside, never deleting them."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}-{os.getpid()}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            src.rename(Path(str(target) + suffix))
    log.error("outbox quarantined, starting a new one", extra={"moved_to": str(target)})
