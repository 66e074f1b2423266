"""The outbox's tables, created and upgraded by numbered migrations recorded in ``schema_migrations``."""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE seqs (deviceid TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY,        -- assigned from seqs, never reused
            eventid TEXT NOT NULL,
            type TEXT NOT NULL,
            created_ms INTEGER NOT NULL,    -- wall clock at commit, for the oldest-age figure
            size INTEGER NOT NULL,
            payload BLOB NOT NULL           -- application/cloudevents+json
        );
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE pending_gap (first INTEGER NOT NULL, last INTEGER NOT NULL, reason TEXT NOT NULL);
        """,
    ),
    (
        2,
        # name -> value facts of the outbox itself: "epoch" (written once, when the outbox is created;
        # an outbox from before this migration keeps the legacy epoch "")
        """
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ),
]


def migrate(db: sqlite3.Connection) -> None:
    """Apply the migrations ``db`` has not seen yet, each in its own transaction."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)")
    done = {r[0] for r in db.execute("SELECT version FROM schema_migrations")}
    for version, sql in MIGRATIONS:
        if version in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, sql.split(";")):
                db.execute(statement)
            db.execute("INSERT INTO schema_migrations VALUES (?, datetime('now'))", (version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
