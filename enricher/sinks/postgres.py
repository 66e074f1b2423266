"""The PostgreSQL store (psycopg 3): the SQLite layout, ``jsonb`` for the JSON columns,
``ON CONFLICT DO NOTHING`` on the event id, offsets upserted in the same transaction."""

from __future__ import annotations

import psycopg

from enricher.sinks.base import Row

__all__ = ["PostgresStore"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    event_id text PRIMARY KEY, device_id text NOT NULL, seq bigint NOT NULL, time timestamptz NOT NULL,
    site text, location text, late boolean NOT NULL, flags jsonb, readings jsonb, derived jsonb,
    processed_at timestamptz);
CREATE INDEX IF NOT EXISTS readings_device_time ON readings (device_id, time DESC);
CREATE INDEX IF NOT EXISTS readings_device_seq ON readings (device_id, seq);
CREATE TABLE IF NOT EXISTS sink_offsets (
    topic text NOT NULL, partition integer NOT NULL, next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition));
"""


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

    def write(self, rows: list[Row], topic: str, offsets: dict[int, int]) -> int:
        inserted = 0
        with self.conn.transaction(), self.conn.cursor() as cur:
            for row in rows:
                cur.execute("INSERT INTO readings VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                            "ON CONFLICT (event_id) DO NOTHING",
                            (*row[:6], bool(row.late), *row[7:]))
                inserted += cur.rowcount
            cur.executemany(
                "INSERT INTO sink_offsets (topic, partition, next_offset) VALUES (%s,%s,%s) "
                "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                [(topic, p, o) for p, o in offsets.items()])
        return inserted

    def close(self) -> None:
        self.conn.close()
