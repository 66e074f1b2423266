"""What ``edgebridge agent status`` shows of an outbox, read while the agent may be running."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def read_status(path: Path) -> dict[str, object]:
    """What ``edgebridge agent status`` shows, read through a read-only connection (the agent may run)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        rows, size = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
        oldest = db.execute("SELECT seq, created_ms FROM outbox ORDER BY seq LIMIT 1").fetchone()
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        seqs = dict(db.execute("SELECT deviceid, last_seq FROM seqs").fetchall())
        version = db.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        epoch = db.execute("SELECT value FROM meta WHERE name = 'epoch'").fetchone() if version >= 2 else None
    finally:
        db.close()
    now_ms = int(time.time() * 1000)
    last_ack_ms = counters.get("last_ack_ms")
    unreceipted_ms = counters.get("oldest_unreceipted_ms")
    return {
        "backlog_rows": rows,
        "backlog_bytes": size,
        "oldest_seq": oldest[0] if oldest else None,
        "oldest_age_s": round((now_ms - oldest[1]) / 1000, 3) if oldest else None,
        "last_seq": seqs,
        "epoch": epoch[0] if epoch else "",
        "evicted": counters.get("evicted", 0),
        "rejected": counters.get("rejected", 0),
        # the last deletion: after a receipt (after a PUBACK with receipts = "off")
        "last_ack_seq": counters.get("last_ack_seq", 0),
        "last_ack_age_s": round((now_ms - last_ack_ms) / 1000, 3) if last_ack_ms else None,
        # as of the agent's last commit
        "unreceipted": counters.get("unreceipted", 0),
        "oldest_unreceipted_age_s": round((now_ms - unreceipted_ms) / 1000, 3) if unreceipted_ms else None,
        "resends": counters.get("resends", 0),
        "schema_version": version,
        "file_bytes": path.stat().st_size,
    }
