"""The PostgreSQL sink's ``readings`` table, read-only (layout: :mod:`enricher.sinks.postgres`).

The same answers as :class:`dashboard.readings.ReadingsDb` for the SQLite sink, read differently
because a PostgreSQL table has no insertion order to follow (no rowid):

- the version is the sum of the sink's ``sink_offsets`` of the processed topic: the sink upserts them in
  the transaction of its rows, so it grows exactly when rows are committed (the aggregates topic's
  offsets are left out: a window's upsert adds no reading, and would have the fleet looked at again);
- each device's newest row by index: the devices by a loose index scan of ``(device_id, time DESC)`` (a
  recursive query, one probe per device, instead of a scan of the table), then each one's newest row
  (one probe each);
- what the sink committed since the last look, by the transaction that wrote each row (``commit_tx``,
  the sink's ``pg_current_xact_id()``): a look reads the rows of the transactions that had not
  committed at the look before (those at or after its snapshot's ``xmax``, and those it saw running),
  and keeps its own snapshot for the next (:class:`PostgresRecent`). Exact whatever the order in which
  concurrent transactions commit, and whatever the rows' device times: a device's backlog of old times,
  committed now, is read now.

The session is read-only (``default_transaction_read_only``): the dashboard cannot write a row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dashboard.aggregates import DeviceAggregates, device_aggregates
from dashboard.readings import AGGREGATE_FIELDS, Latest, Point, stamp
from dashboard.recent import WINDOW, HeldRows

__all__ = ["PostgresReadings", "PostgresRecent", "Snapshot"]

log = logging.getLogger(__name__)

# the devices, by a loose index scan (one probe each; the last row is NULL)
_DEVICES = """devices AS (
    (SELECT device_id FROM readings ORDER BY device_id LIMIT 1)
    UNION ALL
    SELECT (SELECT r.device_id FROM readings r WHERE r.device_id > d.device_id ORDER BY r.device_id LIMIT 1)
    FROM devices d WHERE d.device_id IS NOT NULL)"""
_DEVICES_LATEST = f"""
WITH RECURSIVE {_DEVICES}
SELECT n.device_id, n.time, n.site, n.location, n.flags, n.readings, n.late
FROM devices d CROSS JOIN LATERAL (
    SELECT * FROM readings r WHERE r.device_id = d.device_id ORDER BY r.time DESC LIMIT 1) n
WHERE d.device_id IS NOT NULL
"""
# Each device's newest row of each minute from a time on (parameters: from, until), by the
# (device_id, time) index, as SQLite's (:data:`dashboard.readings._PER_MINUTE`): hop from a minute that
# has rows to the next one that has, then take each minute's newest row; two probes per drawn point
# instead of a DISTINCT ON over every row of the hour.
_PER_MINUTE = """minutes AS (
    SELECT d.device_id, date_trunc('minute', f.time) AS m FROM devices d CROSS JOIN LATERAL (
        SELECT time FROM readings r WHERE r.device_id = d.device_id AND r.time >= %s
        ORDER BY r.time LIMIT 1) f
    WHERE d.device_id IS NOT NULL
    UNION ALL
    SELECT p.device_id, date_trunc('minute', f.time) FROM minutes p CROSS JOIN LATERAL (
        SELECT time FROM readings r WHERE r.device_id = p.device_id AND r.time >= p.m + interval '1 minute'
        ORDER BY r.time LIMIT 1) f)
SELECT n.device_id, n.time, n.readings FROM minutes p CROSS JOIN LATERAL (
    SELECT device_id, time, readings FROM readings r WHERE r.device_id = p.device_id AND r.time >= p.m
    AND r.time < p.m + interval '1 minute' AND r.time <= %s::timestamptz
    ORDER BY r.time DESC LIMIT 1) n"""
# The look's snapshot (what had committed: below xmax and not running), and whether the sink's tables
# are there yet, with the column the rows are followed by (a sink older than it has not added it).
_SNAPSHOT = """
SELECT pg_snapshot_xmax(s)::text, ARRAY(SELECT pg_snapshot_xip(s)::text), to_regclass('readings') IS NOT NULL,
       EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('readings') AND attname = 'commit_tx'
               AND NOT attisdropped)
FROM pg_current_snapshot() s
"""
# The rows of the transactions the snapshot before did not see committed: by the commit_tx index.
_COMMITTED = """
SELECT device_id, time, site, location, flags, readings, late FROM readings
WHERE commit_tx >= %s::xid8 OR commit_tx = ANY(%s::xid8[]) ORDER BY commit_tx
"""


@dataclass(frozen=True)
class Snapshot:
    """What a look saw committed: every transaction below ``xmax`` but the ``running`` ones (xid8s, as
    text). ``tables``: the sink's table exists; ``follows``: it has ``commit_tx``."""

    xmax: str
    running: list[str]
    tables: bool
    follows: bool


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _numbers(readings: Any) -> dict[str, float]:
    return {name: float(r["v"]) for name, r in _dict(readings).items()
            if isinstance(r, dict) and type(r.get("v")) in (int, float)}


class PostgresReadings:
    """One read-only connection, shared by the app's worker threads (one statement at a time)."""

    def __init__(self, dsn: str, topic: str = "iot.events.processed") -> None:
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        # for the session, not in the DSN: a DSN's own options (a search_path) are kept
        self.conn.execute("SET default_transaction_read_only = on")
        # one statement at a time, or one look's transaction (:meth:`_one_snapshot`) with its statements
        self.lock = threading.RLock()
        self.topic = topic

    def _rows(self, sql: str, args: list[Any] | None = None) -> list[Any]:
        import psycopg

        try:
            with self.lock:
                return self.conn.execute(sql, args or []).fetchall()
        except psycopg.errors.UndefinedTable:  # the sink has not started yet
            return []

    def version(self) -> int:
        rows = self._rows("SELECT coalesce(sum(next_offset), 0) FROM sink_offsets WHERE topic = %s",
                          [self.topic])
        return int(rows[0][0]) if rows else 0

    def latest(self) -> dict[str, Latest]:
        return {r[0]: _latest(r) for r in self._rows(_DEVICES_LATEST)}

    @contextmanager
    def _one_snapshot(self) -> Iterator[Snapshot]:
        """A transaction whose statements all see what its snapshot saw (repeatable read)."""
        with self.lock, self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            row = self.conn.execute(_SNAPSHOT).fetchone()
            assert row is not None
            yield Snapshot(row[0], list(row[1]), bool(row[2]), bool(row[3]))

    def first_look(self, since: float) -> tuple[Snapshot, dict[str, Latest], dict[str, list[Point]]]:
        """Each device's newest row and its per-minute rows from ``since``, and the snapshot they were
        read in (nothing when the sink has not created its table yet)."""
        with self._one_snapshot() as snapshot:
            if not snapshot.tables:
                return snapshot, {}, {}
            return snapshot, self.latest(), self.series(since, per_minute=True, limit=10**7)

    def committed_since(self, before: Snapshot) -> tuple[Snapshot, list[Latest]]:
        """The rows of the transactions that committed after ``before`` was taken, and the snapshot they
        were read in. A look reads what a second of the fleet committed (every device's rows, at 500
        devices 500 rows), or, after a pause, what the sink committed meanwhile."""
        with self._one_snapshot() as snapshot:
            rows = self.conn.execute(_COMMITTED, [before.xmax, before.running]).fetchall()
        return snapshot, [_latest(r) for r in rows]

    def series(self, since: float, until: float | None = None, device: str | None = None,
               limit: int = 20000, per_minute: bool = False) -> dict[str, list[Point]]:
        """As :meth:`dashboard.readings.ReadingsDb.series` (``per_minute``: :data:`_PER_MINUTE`)."""
        start = datetime.fromtimestamp(since, UTC)
        end = datetime.fromtimestamp(until, UTC) if until is not None else None
        if per_minute:
            devices = "devices AS (SELECT %s::text AS device_id)" if device is not None else _DEVICES
            sql = f"WITH RECURSIVE {devices}, {_PER_MINUTE}"
            # 'infinity' for no until: one statement for both
            args: list[Any] = [*([device] if device is not None else []), start, end or "infinity"]
        else:
            where, args = ["time >= %s"], [start]
            if end is not None:
                where.append("time <= %s")
                args.append(end)
            if device is not None:
                where.append("device_id = %s")
                args.append(device)
            sql = f"SELECT device_id, time, readings FROM readings WHERE {' AND '.join(where)}"
        rows = self._rows(f"{sql} ORDER BY time DESC LIMIT %s", [*args, limit])
        out: dict[str, list[Point]] = {}
        for device_id, when, readings in reversed(rows):
            out.setdefault(device_id, []).append(Point(when.timestamp(), _numbers(readings)))
        return out

    def aggregates(self, device: str, since: float, limit: int = 20000) -> DeviceAggregates | None:
        """As :meth:`dashboard.readings.ReadingsDb.aggregates`."""
        import psycopg

        try:
            with self.lock:
                rows = self.conn.execute(
                    f"SELECT {AGGREGATE_FIELDS} FROM aggregates WHERE device_id = %s "
                    "AND (kind != 'window' OR window_start >= %s) "
                    # the counts (no start) first: the limit cuts old windows, never them
                    "ORDER BY window_start IS NOT NULL, window_start DESC LIMIT %s",
                    [device, datetime.fromtimestamp(since, UTC), limit]).fetchall()
        except psycopg.errors.UndefinedTable:  # a sink older than the aggregates
            return None
        return device_aggregates(((*r[:2], None if r[2] is None else r[2].timestamp(),
                                   None if r[3] is None else r[3].timestamp(), *r[4:]) for r in rows), since)

    def recent(self, window: float = WINDOW) -> PostgresRecent:
        return PostgresRecent(self, window)

    def close(self) -> None:
        self.conn.close()


class PostgresRecent(HeldRows):
    """The PostgreSQL sink's rows, followed by the transaction that wrote them (:meth:`PostgresReadings.
    committed_since`); merged as :class:`dashboard.recent.RecentRows` merges SQLite's.

    A sink older than ``commit_tx`` (its database not yet brought up to date by a newer sink's start)
    leaves nothing to follow by: then each device's newest row is read again when the version changed,
    and the whole per-minute hour when a minute closes (2.6 s at 500 devices: slower, but complete)."""

    def __init__(self, db: PostgresReadings, window: float = WINDOW) -> None:
        super().__init__(window)
        self.db = db
        self._snapshot: Snapshot | None = None
        self._looks = 0  # the key of ``changed``: the look at which a device's newest row changed
        self._version: int | None = None  # without commit_tx: the version and the minute of the last read
        self._minute: int | None = None

    def _load(self) -> bool:
        self._looks += 1  # a look that starts over tells its rows apart from the ones held before
        snapshot, latest, series = self.db.first_look(time.time() - self.window)
        if not snapshot.tables:
            return False
        if not snapshot.follows:
            log.warning("the sink's readings table has no commit_tx column (a sink older than the "
                        "dashboard): the fleet is read again whole; restart the sink to add it")
        self._snapshot = snapshot
        self._start(self._looks, latest, series)
        self._version, self._minute = self.db.version(), int(time.time() // 60)
        return True

    def _follow(self) -> None:
        assert self._snapshot is not None
        self._looks += 1
        if self._snapshot.follows:
            self._snapshot, rows = self.db.committed_since(self._snapshot)
            for row in rows:
                self._apply(self._looks, row)
            return
        version, minute = self.db.version(), int(time.time() // 60)
        if minute != self._minute:
            self._snapshot, latest, series = self.db.first_look(time.time() - self.window)
            self._start(self._looks, latest, series)
        elif version != self._version:
            latest = self.db.latest()
            self.changed.update({d: self._looks for d, row in latest.items() if row != self.latest.get(d)})
            self.latest = latest
        self._version, self._minute = version, minute


def _latest(r: Any) -> Latest:
    """A row of (device_id, time, site, location, flags, readings, late)."""
    return Latest(r[0], stamp(r[1].timestamp()), r[2], r[3], [str(f) for f in _list(r[4])], _dict(r[5]),
                  bool(r[6]))
