"""The sinks' stores against the real SQLite and the real PostgreSQL: rows, quarantine, migration.

No Kafka here: batches are built as the sink loop builds them (``tests/enricher/test_sinks.py`` runs the
whole sink process against Kafka). PostgreSQL is the session's server (the ``postgres`` fixture); each
test works in a schema of its own.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest

from edgebridge.envelope import PROCESSED_TYPE, Event, encode, new_gap
from edgebridge.errors import EnvelopeError
from enricher.sinks import Batch, Origin, Store, row_of
from enricher.sinks.quarantine import DB_REFUSED
from enricher.sinks.rows import BadRow, Row

_schemas = itertools.count()


def processed(deviceid: str, seq: int, epoch: str | None = "e1", **data: Any) -> Event:
    body: dict[str, Any] = {"readings": {"t": {"v": seq, "u": "Cel"}}, "derived": {}, "flags": ["late"],
                            "late": True, "device": {"registered": True, "site": "s1", "location": "hall"},
                            "processtime": "2024-01-01T00:00:01.000Z"}
    body.update(data)
    return Event(f"{deviceid}-{epoch}-{seq}", deviceid, seq, PROCESSED_TYPE, "2024-01-01T00:00:00Z", body,
                 epoch=epoch)


# --- rows ------------------------------------------------------------------------------------------


def test_a_processed_reading_becomes_a_row_with_its_epoch() -> None:
    row = row_of(encode(processed("d1", 7)))
    assert row == Row("d1-e1-7", "d1", "e1", 7, "2024-01-01T00:00:00Z", "s1", "hall", 1, '["late"]',
                      '{"t":{"v":7,"u":"Cel"}}', "{}", "2024-01-01T00:00:01.000Z")
    legacy = row_of(encode(processed("d1", 7, epoch=None)))
    assert legacy is not None and legacy.epoch == ""
    assert row_of(encode(new_gap("d1", 9, 1, 8, "evicted"))) is None  # not a reading: nothing to write


@pytest.mark.parametrize(("value", "reason"), [
    (b"not json", "not_json"),
    (b"", "not_json"),
    (encode(processed("d1", 1, label="x")).replace(b'"x"', b'"a\\u0000b"'), "bad_data"),  # jsonb refuses NUL
    (encode(processed("d1", 1)).replace(b'"seq":1', b'"seq":1,"seq":2'), "duplicate_key"),
    (encode(processed("d1", 1, deep=orjson.loads(b"[" * 40 + b"]" * 40))), "too_deep"),
])
def test_what_the_decoder_refuses_is_refused_with_its_reason(value: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        row_of(value)
    assert info.value.reason == reason


@pytest.mark.parametrize("data", [
    {"device": {"site": 5}}, {"device": "s1"}, {"late": "yes"}, {"flags": {"a": 1}}, {"readings": [1]},
    {"processtime": "yesterday"}, {"processtime": 5},
])
def test_data_that_cannot_fill_the_columns_is_a_bad_row(data: dict[str, Any]) -> None:
    with pytest.raises(BadRow):
        row_of(encode(processed("d1", 1, **data)))


# --- the stores ------------------------------------------------------------------------------------


OLD_SQLITE = """
CREATE TABLE readings (event_id TEXT PRIMARY KEY, device_id TEXT, seq INTEGER, time TEXT, site TEXT,
    location TEXT, late INTEGER, flags TEXT, readings TEXT, derived TEXT, processed_at TEXT);
CREATE INDEX readings_device_time ON readings (device_id, time);
CREATE INDEX readings_device_seq ON readings (device_id, seq);
CREATE TABLE sink_offsets (topic TEXT, partition INTEGER, next_offset INTEGER,
    PRIMARY KEY (topic, partition));
INSERT INTO readings VALUES ('old-1', 'd1', 1, '2023-01-01T00:00:00Z', 's', 'l', 0, '[]', '{}', '{}', NULL);
INSERT INTO sink_offsets VALUES ('processed', 0, 1);
"""
OLD_POSTGRES = """
CREATE TABLE readings (
    event_id text PRIMARY KEY, device_id text NOT NULL, seq bigint NOT NULL, time timestamptz NOT NULL,
    site text, location text, late boolean NOT NULL, flags jsonb, readings jsonb, derived jsonb,
    processed_at timestamptz);
CREATE INDEX readings_device_time ON readings (device_id, time DESC);
CREATE INDEX readings_device_seq ON readings (device_id, seq);
CREATE TABLE sink_offsets (topic text NOT NULL, partition integer NOT NULL, next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition));
INSERT INTO readings VALUES ('old-1', 'd1', 1, '2023-01-01T00:00:00Z', 's', 'l', false, '[]', '{}', '{}',
    NULL);
INSERT INTO sink_offsets VALUES ('processed', 0, 1);
"""


class Database:
    """One real database for a test: SQL on it, and stores opened on it."""

    def __init__(self, kind: str, tmp_path: Path, postgres: Any | None) -> None:
        self.kind = kind
        if kind == "sqlite":
            self.path = tmp_path / "sink.db"
        else:
            import psycopg

            schema = f"sink_test_{next(_schemas)}_{tmp_path.name.lower()[-20:]}".replace("-", "_")
            with psycopg.connect(postgres.dsn, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                conn.execute(f"CREATE SCHEMA {schema}")
            self.dsn = f"{postgres.dsn} options='-c search_path={schema}'"

    def store(self) -> Store:
        if self.kind == "sqlite":
            from enricher.sinks.sqlite import SqliteStore

            return SqliteStore(self.path)
        from enricher.sinks.postgres import PostgresStore

        return PostgresStore(self.dsn)

    def execute(self, script: str) -> None:
        if self.kind == "sqlite":
            with closing(sqlite3.connect(self.path)) as conn:
                conn.executescript(script)
        else:
            import psycopg

            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(script)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            with closing(sqlite3.connect(self.path)) as conn:
                return conn.execute(sql).fetchall()
        import psycopg

        with psycopg.connect(self.dsn) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    postgres = request.getfixturevalue("postgres") if request.param == "postgres" else None
    yield Database(request.param, tmp_path, postgres)


def batch_of(events: list[Event | bytes], topic: str = "processed", partition: int = 0) -> Batch:
    """What SinkRunner makes of these records (offsets 0, 1, ...)."""
    batch = Batch(topic)
    for offset, event in enumerate(events):
        value = encode(event) if isinstance(event, Event) else event
        origin = Origin(partition, offset, b"d1", value)
        batch.offsets[partition] = offset + 1
        try:
            row = row_of(value)
        except (EnvelopeError, BadRow) as exc:
            batch.quarantine(origin, getattr(exc, "reason", "bad_row"), exc)
            continue
        if row is not None:
            batch.add(row, origin)
    return batch


def constrain(db: Database) -> None:
    """What an operator may do to the sink's table: narrow a column, add a check."""
    if db.kind == "sqlite":
        db.execute("""
            CREATE TRIGGER site_len BEFORE INSERT ON readings WHEN length(NEW.site) > 8
            BEGIN SELECT RAISE(ABORT, 'site too long'); END;
            CREATE TRIGGER seq_max BEFORE INSERT ON readings WHEN NEW.seq >= 1000000
            BEGIN SELECT RAISE(ABORT, 'seq out of range'); END;""")
    else:
        db.execute("ALTER TABLE readings ALTER COLUMN site TYPE varchar(8);"
                   "ALTER TABLE readings ADD CONSTRAINT seq_max CHECK (seq < 1000000)")


def test_rows_the_database_refuses_are_quarantined_in_the_same_transaction(database: Database) -> None:
    store = database.store()
    store.close()
    constrain(database)
    long_site = processed("d1", 2, device={"site": "a-long-site-name"})
    events: list[Event | bytes] = [processed("d1", 1), long_site, processed("d1", 3),
                                   processed("d1", 1_000_000), b"{", processed("d1", 4)]
    batch = batch_of(events)
    store = database.store()
    try:
        assert store.write(batch) == 3
        assert store.write(batch_of(events)) == 0  # the same batch again: nothing twice
        assert store.offsets("processed") == {0: 6}
    finally:
        store.close()
    assert sorted(r[0] for r in database.query("SELECT seq FROM readings")) == [1, 3, 4]
    quarantined = database.query("SELECT original_offset, reason, error_class, error, value "
                                 "FROM sink_quarantine ORDER BY original_offset")
    assert [(o, r) for o, r, *_ in quarantined] == [(1, DB_REFUSED), (3, DB_REFUSED), (4, "not_json")]
    assert all(bytes(value) == (encode(events[o]) if o != 4 else b"{")  # type: ignore[arg-type]
               for o, _, _, _, value in quarantined)
    by_offset = {o: (cls, err) for o, _, cls, err, _ in quarantined}
    if database.kind == "sqlite":
        assert by_offset[1] == ("IntegrityError", "site too long")
    else:
        assert by_offset[1][0] == "StringDataRightTruncation" and "varying(8)" in by_offset[1][1]
        assert by_offset[3][0] == "CheckViolation"


def test_a_database_failure_is_not_a_row_refusal_and_stores_nothing(database: Database) -> None:
    """Were a missing table taken for the row's fault, every row would be quarantined, i.e. lost."""
    store = database.store()
    try:
        database.execute("DROP TABLE readings")
        with pytest.raises(Exception) as info:
            store.write(batch_of([processed("d1", 1), b"{"]))
        assert "readings" in str(info.value)
        assert database.query("SELECT count(*) FROM sink_quarantine") == [(0,)]
        assert database.query("SELECT count(*) FROM sink_offsets") == [(0,)]
    finally:
        store.close()


def test_rows_and_offsets_commit_together_or_not_at_all(database: Database) -> None:
    """The offsets fail after the rows went in (savepoints and all): the rows must go with them."""
    store = database.store()
    try:
        database.execute("DROP TABLE sink_offsets")
        with pytest.raises(Exception, match="sink_offsets"):
            store.write(batch_of([processed("d1", 1), processed("d1", 2, device={"site": 5}), b"{"]))
        assert database.query("SELECT count(*) FROM readings") == [(0,)]
        assert database.query("SELECT count(*) FROM sink_quarantine") == [(0,)]
    finally:
        store.close()


def test_an_older_database_is_migrated_without_loss(database: Database) -> None:
    database.execute(OLD_SQLITE if database.kind == "sqlite" else OLD_POSTGRES)
    for _ in range(2):  # idempotent
        store = database.store()
        try:
            assert store.offsets("processed") == {0: 1}
            store.write(batch_of([processed("d1", 1, epoch="e2")]))
        finally:
            store.close()
    rows = sorted(database.query("SELECT event_id, device_id, epoch, seq FROM readings"))
    assert rows == [("d1-e2-1", "d1", "e2", 1), ("old-1", "d1", "", 1)]
    if database.kind == "sqlite":
        indexes = {r[0] for r in database.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
    else:
        indexes = {r[0] for r in database.query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'readings'"
            " AND schemaname = current_schema()")}
    assert "readings_device_epoch_seq" in indexes and "readings_device_seq" not in indexes


def test_two_lives_of_a_device_are_two_rows_each(database: Database) -> None:
    store = database.store()
    try:
        store.write(batch_of([processed("d1", s, epoch=e) for e in ("e1", "e2") for s in (1, 2)]))
    finally:
        store.close()
    assert sorted(database.query("SELECT epoch, seq FROM readings")) == [("e1", 1), ("e1", 2), ("e2", 1),
                                                                          ("e2", 2)]

