"""The PostgreSQL store (psycopg 3): the SQLite layout, ``jsonb`` for the JSON columns, ``timestamptz``
for the times, ``bytea`` for a quarantined record's bytes; ``ON CONFLICT DO NOTHING`` on the event id,
offsets upserted in the same transaction; ``aggregates`` upserted by key (the latest figures of a
window). :data:`SCHEMA` creates the tables or brings an older database up to date (the ``epoch`` column
and the ``(device_id, epoch, seq)`` index, see :mod:`enricher.sinks.sqlite`; the ``commit_tx`` column);
it is idempotent and runs at every start.

``commit_tx`` is the id of the transaction that wrote the row (``pg_current_xact_id()``, the column's
default): what a reader follows to find the rows committed since its last look, whatever their device
times (``dashboard/readings_pg.py``), as SQLite's rowid is followed. Added without a default first,
then given one: the rows written before it existed keep NULL (no rewrite of the table; nothing to
follow in them), and every row written after gets its transaction's id. ``xid8`` and
``pg_current_xact_id()``: PostgreSQL 13 or later."""

from __future__ import annotations

from contextlib import AbstractContextManager

import psycopg

from enricher.sinks.quarantine import QUARANTINE_COLUMNS, Batch, insert_rows
from enricher.sinks.rows import AGGREGATE_COLUMNS, COLUMNS, AggregateRow, Row

__all__ = ["PostgresStore"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    event_id text PRIMARY KEY, device_id text NOT NULL, epoch text NOT NULL DEFAULT '', seq bigint NOT NULL,
    time timestamptz NOT NULL, site text, location text, late boolean NOT NULL, flags jsonb, readings jsonb,
    derived jsonb, processed_at timestamptz);
ALTER TABLE readings ADD COLUMN IF NOT EXISTS epoch text NOT NULL DEFAULT '';
ALTER TABLE readings ADD COLUMN IF NOT EXISTS commit_tx xid8;
ALTER TABLE readings ALTER COLUMN commit_tx SET DEFAULT pg_current_xact_id();
CREATE INDEX IF NOT EXISTS readings_commit_tx ON readings (commit_tx);
CREATE INDEX IF NOT EXISTS readings_device_time ON readings (device_id, time DESC);
DROP INDEX IF EXISTS readings_device_seq;
CREATE INDEX IF NOT EXISTS readings_device_epoch_seq ON readings (device_id, epoch, seq);
CREATE TABLE IF NOT EXISTS aggregates (
    key text PRIMARY KEY, kind text NOT NULL, device_id text NOT NULL, measurement text NOT NULL,
    window_start timestamptz, window_end timestamptz, count bigint NOT NULL, min double precision,
    max double precision, mean double precision, last double precision, last_time timestamptz, unit text,
    final boolean);
CREATE INDEX IF NOT EXISTS aggregates_device_start ON aggregates (device_id, measurement, window_start);
CREATE TABLE IF NOT EXISTS sink_offsets (
    topic text NOT NULL, partition integer NOT NULL, next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS sink_quarantine (
    original_topic text NOT NULL, original_partition integer NOT NULL, original_offset bigint NOT NULL,
    reason text NOT NULL, error_class text NOT NULL, error text NOT NULL, key bytea, value bytea NOT NULL,
    quarantined_at timestamptz NOT NULL,
    PRIMARY KEY (original_topic, original_partition, original_offset));
"""
_INSERT = (f"INSERT INTO readings ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
           "ON CONFLICT (event_id) DO NOTHING")
_UPSERT = (f"INSERT INTO aggregates ({', '.join(AGGREGATE_COLUMNS)}) "
           f"VALUES ({', '.join(['%s'] * len(AGGREGATE_COLUMNS))}) ON CONFLICT (key) DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in AGGREGATE_COLUMNS[1:]))
_QUARANTINE = (f"INSERT INTO sink_quarantine ({', '.join(QUARANTINE_COLUMNS)}) "
               f"VALUES ({', '.join(['%s'] * len(QUARANTINE_COLUMNS))}) ON CONFLICT DO NOTHING")
# What is a row's fault: a data error (a value a column cannot take: too long, out of range, NUL) or an
# integrity error (a constraint). A lost connection, a missing table, a deadlock propagate.
REFUSALS: tuple[type[BaseException], ...] = (psycopg.DataError, psycopg.IntegrityError)


class PostgresStore:
    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn)
        with self.conn.transaction():
            self.conn.execute(SCHEMA)

    def offsets(self, topic: str) -> dict[int, int]:
        with self.conn.transaction():
            rows = self.conn.execute("SELECT partition, next_offset FROM sink_offsets WHERE topic = %s",
                                     [topic]).fetchall()
        return {int(p): int(o) for p, o in rows}

    def write(self, batch: Batch) -> int:
        with self.conn.transaction(), self.conn.cursor() as cur:
            if batch.table == "aggregates":
                inserted = insert_rows(batch, self._upsert_all, self._upsert_one, self._savepoint, REFUSALS)
            else:
                inserted = insert_rows(batch, self._insert_all, self._insert_one, self._savepoint, REFUSALS)
            cur.executemany(_QUARANTINE, batch.quarantined)
            cur.executemany(
                "INSERT INTO sink_offsets (topic, partition, next_offset) VALUES (%s,%s,%s) "
                "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                [(batch.topic, p, o) for p, o in batch.offsets.items()])
        return inserted

    def _insert_all(self, rows: list[Row]) -> int:
        with self.conn.cursor() as cur:
            return sum(self._insert(cur, row) for row in rows)

    def _insert_one(self, row: Row) -> int:
        with self.conn.cursor() as cur:
            return self._insert(cur, row)

    def _upsert_all(self, rows: list[AggregateRow]) -> int:
        with self.conn.cursor() as cur:
            return sum(self._upsert(cur, row) for row in rows)

    def _upsert_one(self, row: AggregateRow) -> int:
        with self.conn.cursor() as cur:
            return self._upsert(cur, row)

    @staticmethod
    def _upsert(cur: psycopg.Cursor[object], row: AggregateRow) -> int:
        final = None if row.final is None else bool(row.final)
        cur.execute(_UPSERT, (*row[:-1], final))
        return cur.rowcount

    @staticmethod
    def _insert(cur: psycopg.Cursor[object], row: Row) -> int:
        cur.execute(_INSERT, (*row[:7], bool(row.late), *row[8:]))
        return cur.rowcount

    def _savepoint(self) -> AbstractContextManager[object]:
        return self.conn.transaction()  # nested in write's transaction: a savepoint

    def close(self) -> None:
        self.conn.close()
