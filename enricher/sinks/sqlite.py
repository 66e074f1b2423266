"""The SQLite store (sqlite-utils). Table layout::

    readings(event_id TEXT PRIMARY KEY, device_id TEXT, epoch TEXT, seq INTEGER, time TEXT, site TEXT,
             location TEXT, late INTEGER, flags TEXT, readings TEXT, derived TEXT, processed_at TEXT)
        index readings_device_time (device_id, time)        -- latest per device, device over a time range
        index readings_device_epoch_seq (device_id, epoch, seq)   -- an event by its identity
    sink_offsets(topic TEXT, partition INTEGER, next_offset INTEGER, PRIMARY KEY (topic, partition))
    sink_quarantine(original_topic, original_partition, original_offset, reason, error_class, error,
                    key BLOB, value BLOB, quarantined_at, PRIMARY KEY (the three original_*))

    aggregates(key TEXT PRIMARY KEY, kind TEXT, device_id TEXT, measurement TEXT, window_start TEXT,
               window_end TEXT, count INTEGER, min, max, mean, last, last_time TEXT, unit TEXT,
               final INTEGER)                               -- with [sink] aggregates = true
        index aggregates_device_start (device_id, measurement, window_start)

``aggregates`` holds the latest record of each key of ``iot.aggregates``: upserted, so a window's row
follows its figures until it is final; a ``too_late`` row holds a (device, measurement)'s too-late count.
``flags``, ``readings`` and ``derived`` hold JSON (query with ``json_extract``). ``epoch`` is ``""``
for events without one, and for rows written before the column existed (:func:`migrate` adds it to an
older database and replaces its ``(device_id, seq)`` index, which no longer identifies an event: a
device that lost its state starts seqs again at 1 in a new epoch). Latest per device::

    SELECT * FROM readings WHERE device_id = ? ORDER BY time DESC LIMIT 1
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from enricher.sinks.quarantine import QUARANTINE_COLUMNS, Batch, insert_rows
from enricher.sinks.rows import AGGREGATE_COLUMNS, COLUMNS, AggregateRow, Row

__all__ = ["SqliteStore", "migrate"]

_INSERT = (f"INSERT OR IGNORE INTO readings ({', '.join(COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(COLUMNS))})")
# the latest record of a key supersedes the earlier ones (they come in partition order)
_UPSERT = (f"INSERT INTO aggregates ({', '.join(AGGREGATE_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(AGGREGATE_COLUMNS))}) ON CONFLICT (key) DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in AGGREGATE_COLUMNS[1:]))
_QUARANTINE = (f"INSERT OR IGNORE INTO sink_quarantine ({', '.join(QUARANTINE_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(QUARANTINE_COLUMNS))})")
# What is a row's fault: a constraint or trigger refusing it, a value SQLite cannot take. Anything else
# (a locked or full database, a missing table) is the database's, and must not quarantine the stream.
REFUSALS: tuple[type[BaseException], ...] = (sqlite3.IntegrityError, sqlite3.DataError, OverflowError)


def migrate(db: sqlite_utils.Database) -> None:
    """Create the tables, or bring an older database up to date; idempotent."""
    if "readings" not in db.table_names():
        db["readings"].create({  # type: ignore[union-attr]
            "event_id": str, "device_id": str, "epoch": str, "seq": int, "time": str, "site": str,
            "location": str, "late": int, "flags": str, "readings": str, "derived": str,
            "processed_at": str,
        }, pk="event_id", defaults={"epoch": ""}, not_null={"epoch"})
    elif "epoch" not in db["readings"].columns_dict:
        db.execute("ALTER TABLE readings ADD COLUMN epoch TEXT NOT NULL DEFAULT ''")
    db.execute("DROP INDEX IF EXISTS readings_device_seq")
    db.execute("CREATE INDEX IF NOT EXISTS readings_device_time ON readings (device_id, time)")
    db.execute("CREATE INDEX IF NOT EXISTS readings_device_epoch_seq ON readings (device_id, epoch, seq)")
    if "aggregates" not in db.table_names():
        db["aggregates"].create({  # type: ignore[union-attr]
            "key": str, "kind": str, "device_id": str, "measurement": str, "window_start": str,
            "window_end": str, "count": int, "min": float, "max": float, "mean": float, "last": float,
            "last_time": str, "unit": str, "final": int,
        }, pk="key")
    db.execute("CREATE INDEX IF NOT EXISTS aggregates_device_start "
               "ON aggregates (device_id, measurement, window_start)")
    if "sink_offsets" not in db.table_names():
        db["sink_offsets"].create({"topic": str, "partition": int, "next_offset": int},  # type: ignore[union-attr]
                                  pk=("topic", "partition"))
    if "sink_quarantine" not in db.table_names():
        db["sink_quarantine"].create({  # type: ignore[union-attr]
            "original_topic": str, "original_partition": int, "original_offset": int, "reason": str,
            "error_class": str, "error": str, "key": bytes, "value": bytes, "quarantined_at": str,
        }, pk=("original_topic", "original_partition", "original_offset"))


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.db = sqlite_utils.Database(path)
        self.db.enable_wal()
        self.db.execute("PRAGMA synchronous=FULL")  # a committed batch survives power loss with its offsets
        with self.db.conn:
            migrate(self.db)

    def offsets(self, topic: str) -> dict[int, int]:
        rows = self.db.execute("SELECT partition, next_offset FROM sink_offsets WHERE topic = ?", [topic])
        return {int(p): int(o) for p, o in rows.fetchall()}

    def write(self, batch: Batch) -> int:
        conn = self.db.conn
        with conn:  # one transaction: the rows, the quarantined records and the offsets, or none
            # BEGIN first: a SAVEPOINT outside a transaction would start one, and its RELEASE commit it
            conn.execute("BEGIN")
            if batch.table == "aggregates":
                inserted = insert_rows(batch, self._upsert_all, self._upsert_one, self._savepoint, REFUSALS)
            else:
                inserted = insert_rows(batch, self._insert_all, self._insert_one, self._savepoint, REFUSALS)
            conn.executemany(_QUARANTINE, batch.quarantined)
            conn.executemany(
                "INSERT INTO sink_offsets (topic, partition, next_offset) VALUES (?,?,?) "
                "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                [(batch.topic, p, o) for p, o in batch.offsets.items()])
        return inserted

    def _insert_all(self, rows: list[Row]) -> int:
        return self.db.conn.executemany(_INSERT, rows).rowcount

    def _insert_one(self, row: Row) -> int:
        return self.db.conn.execute(_INSERT, row).rowcount

    def _upsert_all(self, rows: list[AggregateRow]) -> int:
        return self.db.conn.executemany(_UPSERT, rows).rowcount

    def _upsert_one(self, row: AggregateRow) -> int:
        return self.db.conn.execute(_UPSERT, row).rowcount

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        conn = self.db.conn
        conn.execute("SAVEPOINT row")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK TO row")
            conn.execute("RELEASE row")
            raise
        conn.execute("RELEASE row")

    def close(self) -> None:
        self.db.close()
