"""The PostgreSQL sink's ``readings`` table, read-only (layout: :mod:`enricher.sinks.postgres`).

The same answers as :class:`dashboard.readings.ReadingsDb` for the SQLite sink, read differently
because a PostgreSQL table has no insertion order to follow (no rowid):

- the version is the sum of the sink's ``sink_offsets``: the sink upserts them in the transaction of
  its rows, so it grows exactly when rows are committed;
- each device's newest row is read again when the version changed, by index: the devices by a loose
  index scan of ``(device_id, time DESC)`` (a recursive query, one probe per device, instead of a scan
  of the table), then each one's newest row (one probe each);
- the sparklines' per-minute hour is read whole once, then, when a minute closes, only the last two
  minutes are read again (the one that closed, and the one before, for rows the sink committed late)
  (:class:`PostgresRecent`).

The session is read-only (``default_transaction_read_only``): the dashboard cannot write a row.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from dashboard.aggregates import DeviceAggregates, device_aggregates
from dashboard.readings import AGGREGATE_FIELDS, Latest, Point, stamp

__all__ = ["PostgresReadings", "PostgresRecent"]

_DEVICES_LATEST = """
WITH RECURSIVE devices AS (
    (SELECT device_id FROM readings ORDER BY device_id LIMIT 1)
    UNION ALL
    SELECT (SELECT r.device_id FROM readings r WHERE r.device_id > d.device_id ORDER BY r.device_id LIMIT 1)
    FROM devices d WHERE d.device_id IS NOT NULL)
SELECT n.device_id, n.time, n.site, n.location, n.flags, n.readings, n.late
FROM devices d CROSS JOIN LATERAL (
    SELECT * FROM readings r WHERE r.device_id = d.device_id ORDER BY r.time DESC LIMIT 1) n
WHERE d.device_id IS NOT NULL
"""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _numbers(readings: Any) -> dict[str, float]:
    return {name: float(r["v"]) for name, r in _dict(readings).items()
            if isinstance(r, dict) and type(r.get("v")) in (int, float)}


class PostgresReadings:
    """One read-only connection, shared by the app's worker threads (one statement at a time)."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        # for the session, not in the DSN: a DSN's own options (a search_path) are kept
        self.conn.execute("SET default_transaction_read_only = on")
        self.lock = threading.Lock()

    def _rows(self, sql: str, args: list[Any] | None = None) -> list[Any]:
        import psycopg

        try:
            with self.lock:
                return self.conn.execute(sql, args or []).fetchall()
        except psycopg.errors.UndefinedTable:  # the sink has not started yet
            return []

    def version(self) -> int:
        rows = self._rows("SELECT coalesce(sum(next_offset), 0) FROM sink_offsets")
        return int(rows[0][0]) if rows else 0

    def latest(self) -> dict[str, Latest]:
        return {r[0]: Latest(r[0], stamp(r[1].timestamp()), r[2], r[3], [str(f) for f in _list(r[4])],
                             _dict(r[5]), bool(r[6])) for r in self._rows(_DEVICES_LATEST)}

    def series(self, since: float, until: float | None = None, device: str | None = None,
               limit: int = 20000, per_minute: bool = False) -> dict[str, list[Point]]:
        """As :meth:`dashboard.readings.ReadingsDb.series`."""
        where, args = ["time >= %s"], [datetime.fromtimestamp(since, UTC)]
        if until is not None:
            where.append("time <= %s")
            args.append(datetime.fromtimestamp(until, UTC))
        if device is not None:
            where.append("device_id = %s")
            args.append(device)  # type: ignore[arg-type]
        inner = (f"SELECT DISTINCT ON (device_id, date_trunc('minute', time)) device_id, time, readings "
                 f"FROM readings WHERE {' AND '.join(where)} "
                 "ORDER BY device_id, date_trunc('minute', time), time DESC" if per_minute else
                 f"SELECT device_id, time, readings FROM readings WHERE {' AND '.join(where)}")
        rows = self._rows(f"SELECT * FROM ({inner}) s ORDER BY time DESC LIMIT %s", [*args, limit])
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

    def recent(self, window: float = 3600.0) -> PostgresRecent:
        return PostgresRecent(self, window)

    def close(self) -> None:
        self.conn.close()


class PostgresRecent:
    """The fleet's newest row per device and its hour per minute, as :class:`dashboard.recent.RecentRows`
    gives them, read again when the version (newest rows) or the minute (sparklines) changed."""

    def __init__(self, db: PostgresReadings, window: float = 3600.0) -> None:
        self.db = db
        self.window = window
        self.latest: dict[str, Latest] = {}
        self.changed: dict[str, str] = {}  # device -> its newest row's time: the row's key
        self.late: dict[str, int] = {}  # no late rows told: the last two minutes are read again each minute
        self._minutes: dict[str, dict[int, Point]] = {}  # device -> minute (Unix // 60) -> its newest point
        self._version: int | None = None
        self._minute: int | None = None
        self._lock = threading.Lock()

    def refresh(self) -> None:
        with self._lock:
            version = self.db.version()
            if version != self._version:
                self.latest = self.db.latest()
                self.changed = {d: row.time for d, row in self.latest.items()}
                self._version = version
            now = time.time()
            minute = int(now // 60)
            if minute != self._minute:
                # the whole hour once; then what may have changed since: not a scan of the hour a minute
                since = now - self.window if self._minute is None else (self._minute - 1) * 60
                for device, points in self.db.series(since, per_minute=True, limit=10**7).items():
                    held = self._minutes.setdefault(device, {})
                    held.update({int(p.when // 60): p for p in points})
                oldest = int((now - self.window) // 60)
                for held in self._minutes.values():
                    for key in [k for k in held if k < oldest]:
                        del held[key]
                self._minute = minute

    def closed_minutes(self, device: str, now: float) -> list[Point]:
        current = int(now // 60)
        with self._lock:
            held = self._minutes.get(device, {})
            return [held[k] for k in sorted(held) if k < current]

    def latest_rows(self) -> dict[str, Latest]:
        with self._lock:
            return dict(self.latest)
