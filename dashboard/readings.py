"""The SQLite sink's ``readings`` table, read-only (layout: :mod:`enricher.sinks.sqlite`).

The database is opened with ``mode=ro``: the dashboard cannot write a row or take a write lock, and
the sink (WAL) goes on writing while the page reads. Every function turns a row the sink wrote into
plain values; a row whose JSON does not parse shows as empty, never an error (the sink refuses such
rows, but a hand-edited database must not take the page down).

Times: ``time`` is the device's RFC 3339 stamp. The range filter compares it as text, which is exact
for the UTC ``...Z`` stamps the agent writes; each row's time is then parsed for the chart.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from dashboard.aggregates import DeviceAggregates, device_aggregates

__all__ = ["AGGREGATE_FIELDS", "Latest", "Point", "ReadingsDb", "parse_time", "stamp"]


@dataclass(frozen=True)
class Latest:
    """A device's newest row."""

    device_id: str
    time: str
    site: str | None
    location: str | None
    flags: list[str]
    readings: dict[str, dict[str, Any]]
    late: bool


@dataclass(frozen=True)
class Point:
    when: float  # Unix seconds
    values: dict[str, float] = field(default_factory=dict)  # numeric readings only: what a chart draws


# the columns :func:`dashboard.aggregates.device_aggregates` takes, in its order (both sources)
AGGREGATE_FIELDS = "kind, measurement, window_start, window_end, count, min, max, mean, last, unit, final"


# The devices, by a loose index scan of the (device_id, ...) indexes: one probe per device, not a read of
# every row (a recursive CTE named ``devices(d)``, its last row NULL).
_DEVICES = ("devices(d) AS (SELECT MIN(device_id) FROM readings UNION ALL "
            "SELECT (SELECT MIN(device_id) FROM readings WHERE device_id > d) FROM devices "
            "WHERE d IS NOT NULL)")
# Each device's newest row of each minute from a time on, by the (device_id, time) index: for each
# device, hop from a minute that has rows to the next one that has (one probe: the first row after the
# minute), and take the minute's newest row (one probe). Two probes per drawn point, whatever the rows
# per minute: 0.3 s for a fleet's hour of 1.8 million rows, where a GROUP BY over the hour read every
# row (12 s). The minute is the first 16 characters of the agent's RFC 3339 UTC stamp, and ``m || ';'``
# sorts after every stamp of minute ``m`` (';' follows ':' in ASCII). Its two parameters: from, until.
_PER_MINUTE = (
    "minutes(d, m) AS ("
    "SELECT d, substr((SELECT MIN(time) FROM readings WHERE device_id = d AND time >= ?), 1, 16) "
    "FROM devices WHERE d IS NOT NULL UNION ALL "
    "SELECT d, substr((SELECT MIN(time) FROM readings WHERE device_id = d AND time >= m || ';'), 1, 16) "
    "FROM minutes WHERE m IS NOT NULL) "
    "SELECT r.device_id, r.time, r.readings FROM minutes JOIN readings r ON r.rowid = ("
    "SELECT rowid FROM readings WHERE device_id = d AND time >= m AND time < m || ';' AND time <= ? "
    "ORDER BY time DESC LIMIT 1) WHERE m IS NOT NULL")


def parse_time(text: str) -> float | None:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def stamp(unix: float) -> str:
    """Unix seconds as the agent's RFC 3339 UTC text (what ``time`` is compared with)."""
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(text: Any, kind: type) -> Any:
    try:
        value = orjson.loads(text)
    except (orjson.JSONDecodeError, TypeError):
        return kind()
    return value if isinstance(value, kind) else kind()


class ReadingsDb:
    """One read-only connection to the sink's database, shared by the app's worker threads."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such database (start `edgebridge sink sqlite --db {path}`)")
        self.path = path
        # check_same_thread off: the app hands the connection to one worker thread at a time
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        # the app's worker threads share the connection: one statement at a time
        self.lock = threading.Lock()

    def version(self) -> int:
        """Grows whenever the sink adds a row: the page is rebuilt only when it changed."""
        try:
            with self.lock:
                row = self.conn.execute("SELECT MAX(rowid) FROM readings").fetchone()
        except sqlite3.OperationalError:  # no table yet: the sink has not started
            return 0
        return int(row[0] or 0)

    def latest(self) -> dict[str, Latest]:
        """Each device's newest row: one index probe per device (:data:`_DEVICES`), not a scan of the
        table (a ``GROUP BY`` with ``MAX(time)`` reads every row: 4.6 s at 1.8 million rows)."""
        try:
            with self.lock:
                rows = self.conn.execute(
                    f"WITH RECURSIVE {_DEVICES} "
                    "SELECT r.device_id, r.time, r.site, r.location, r.flags, r.readings, r.late "
                    "FROM devices JOIN readings r ON r.rowid = (SELECT rowid FROM readings "
                    "WHERE device_id = d ORDER BY time DESC LIMIT 1) WHERE d IS NOT NULL").fetchall()
        except sqlite3.OperationalError:
            return {}
        return {r[0]: Latest(r[0], r[1], r[2], r[3], [str(f) for f in _json(r[4], list)],
                             _json(r[5], dict), bool(r[6])) for r in rows}

    def rows_after(self, rowid: int, limit: int = 50_000) -> list[tuple[int, Latest]]:
        """The rows the sink added after ``rowid`` (rowids grow with each insert), oldest first."""
        try:
            with self.lock:
                rows = self.conn.execute(
                    "SELECT rowid, device_id, time, site, location, flags, readings, late FROM readings "
                    "WHERE rowid > ? ORDER BY rowid LIMIT ?", [rowid, limit]).fetchall()
        except sqlite3.OperationalError:
            return []
        return [(r[0], Latest(r[1], r[2], r[3], r[4], [str(f) for f in _json(r[5], list)], _json(r[6], dict),
                              bool(r[7]))) for r in rows]

    def series(self, since: float, until: float | None = None, device: str | None = None,
               limit: int = 20000, per_minute: bool = False) -> dict[str, list[Point]]:
        """Numeric readings per device between two times, oldest first (at most ``limit`` rows each
        call: the newest are kept). ``per_minute``: only each device's newest row of each minute, so
        that a fleet's hour or a device's week stays a few thousand points (a sparkline is 120 pixels
        wide; a chart 860), read by :data:`_PER_MINUTE`."""
        devices = "devices(d) AS (SELECT ?)" if device is not None else _DEVICES
        args: list[Any] = [device] if device is not None else []
        if per_minute:
            sql = f"WITH RECURSIVE {devices}, {_PER_MINUTE}"
            # '~' sorts after every stamp: no bound
            args += [stamp(since), "~" if until is None else stamp(until)]
        else:
            sql = ("SELECT device_id, time, readings FROM readings WHERE time >= ?"
                   + (" AND device_id = ?" if device is not None else ""))
            args = [stamp(since), *args]
            if until is not None:
                sql += " AND time <= ?"
                args.append(stamp(until))
        try:
            with self.lock:
                rows = self.conn.execute(f"{sql} ORDER BY 2 DESC LIMIT ?", [*args, limit]).fetchall()
        except sqlite3.OperationalError:
            return {}
        out: dict[str, list[Point]] = {}
        for device_id, time_text, readings in reversed(rows):
            when = parse_time(time_text)
            if when is None:
                continue
            values = {name: float(r["v"]) for name, r in _json(readings, dict).items()
                      if isinstance(r, dict) and type(r.get("v")) in (int, float)}
            out.setdefault(device_id, []).append(Point(when, values))
        return out

    def aggregates(self, device: str, since: float, limit: int = 20000) -> DeviceAggregates | None:
        """The device's windows starting from ``since`` (the newest ``limit``) and its too-late and
        ahead counts; None when the database has no ``aggregates`` table (a sink older than it)."""
        try:
            with self.lock:
                rows = self.conn.execute(
                    f"SELECT {AGGREGATE_FIELDS} FROM aggregates WHERE device_id = ? "
                    "AND (kind != 'window' OR window_start >= ?) "
                    # the counts (no start) first: the limit cuts old windows, never them
                    "ORDER BY window_start IS NOT NULL, window_start DESC LIMIT ?",
                    [device, stamp(since), limit]).fetchall()
        except sqlite3.OperationalError as exc:
            # a missing table is said on the page; anything else shows as no windows, as the readings do
            return None if "no such table" in str(exc) else DeviceAggregates()
        return device_aggregates(((*r[:2], parse_time(r[2] or ""), parse_time(r[3] or ""), *r[4:])
                                  for r in rows), since)

    def close(self) -> None:
        self.conn.close()
