"""The SQLite store (sqlite-utils). Table layout::

    readings(event_id TEXT PRIMARY KEY, device_id TEXT, seq INTEGER, time TEXT, site TEXT,
             location TEXT, late INTEGER, flags TEXT, readings TEXT, derived TEXT, processed_at TEXT)
        index readings_device_time (device_id, time)   -- latest per device, device over a time range
        index readings_device_seq (device_id, seq)
    sink_offsets(topic TEXT, partition INTEGER, next_offset INTEGER, PRIMARY KEY (topic, partition))

``flags``, ``readings`` and ``derived`` hold JSON (query with ``json_extract``). Latest per device::

    SELECT * FROM readings WHERE device_id = ? ORDER BY time DESC LIMIT 1
"""

from __future__ import annotations

from pathlib import Path

import sqlite_utils

from enricher.sinks.base import Row

__all__ = ["SqliteStore"]


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.db = sqlite_utils.Database(path)
        self.db.enable_wal()
        self.db.execute("PRAGMA synchronous=FULL")  # a committed batch survives power loss with its offsets
        if "readings" not in self.db.table_names():
            self.db["readings"].create({  # type: ignore[union-attr]
                "event_id": str, "device_id": str, "seq": int, "time": str, "site": str, "location": str,
                "late": int, "flags": str, "readings": str, "derived": str, "processed_at": str,
            }, pk="event_id")
            self.db["readings"].create_index(["device_id", "time"], "readings_device_time")  # type: ignore[union-attr]
            self.db["readings"].create_index(["device_id", "seq"], "readings_device_seq")  # type: ignore[union-attr]
        if "sink_offsets" not in self.db.table_names():
            self.db["sink_offsets"].create({"topic": str, "partition": int, "next_offset": int},  # type: ignore[union-attr]
                                           pk=("topic", "partition"))

    def offsets(self, topic: str) -> dict[int, int]:
        rows = self.db.execute("SELECT partition, next_offset FROM sink_offsets WHERE topic = ?", [topic])
        return {int(p): int(o) for p, o in rows.fetchall()}

    def write(self, rows: list[Row], topic: str, offsets: dict[int, int]) -> int:
        conn = self.db.conn
        with conn:  # one transaction: the rows and the offsets, or neither
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO readings VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            inserted = conn.total_changes - before
            conn.executemany(
                "INSERT INTO sink_offsets (topic, partition, next_offset) VALUES (?,?,?) "
                "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                [(topic, p, o) for p, o in offsets.items()])
        return inserted

    def close(self) -> None:
        self.db.close()
