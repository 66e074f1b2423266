"""The fleet's newest row per device and its last hour per minute, kept in memory.

Reading them from the table at every look costs a scan of the hour (500 devices at 1 event/s: 1.8
million rows) per second. Instead they are read once, when the dashboard starts (a ``GROUP BY`` and
the per-minute hour), and then fed by the rows the sink added since the last look: rowids grow with
each insert, so ``rowid > last`` is exactly the new rows, a few hundred a second, by the primary key.
A late row (an older device time, inserted later) replaces nothing newer. Minutes older than the hour
are dropped as the hour moves on.

Two counters let the page render only what changed (:mod:`dashboard.fleet_live`): ``changed[device]``
is the rowid of the row that last replaced the device's newest row, and ``late[device]`` grows when a
row lands in a minute that had already closed when it arrived (the only way a closed minute changes).
"""

from __future__ import annotations

import threading
import time

from dashboard.readings import Latest, Point, ReadingsDb, parse_time

__all__ = ["RecentRows"]

WINDOW = 3600.0


class RecentRows:
    def __init__(self, db: ReadingsDb, window: float = WINDOW) -> None:
        self.db = db
        self.window = window
        self.latest: dict[str, Latest] = {}
        self.minutes: dict[str, dict[str, Point]] = {}  # device -> "YYYY-MM-DDTHH:MM" -> its newest point
        self.last_rowid: int | None = None
        self.changed: dict[str, int] = {}  # device -> rowid of the row that last changed its newest row
        self.late: dict[str, int] = {}  # device -> rows that changed an already closed minute
        self._lock = threading.Lock()  # worker threads look at once; one of them reads, the others wait

    def refresh(self) -> None:
        with self._lock:
            if self.last_rowid is None:
                self._load()
            while True:
                rows = self.db.rows_after(self.last_rowid or 0)
                for rowid, row in rows:
                    self._apply(rowid, row)
                    self.last_rowid = rowid
                if len(rows) < 50_000:
                    break
            self._prune()

    def _load(self) -> None:
        # the rowid first: a row added while the two reads run is read again after, and applied once more
        # harmlessly (the same time replaces the same values)
        self.last_rowid = self.db.version()
        self.latest = self.db.latest()
        self.changed = {device: self.last_rowid for device in self.latest}
        for device, points in self.db.series(time.time() - self.window, per_minute=True, limit=10**7).items():
            self.minutes[device] = {_minute_of(p.when): p for p in points}

    def _apply(self, rowid: int, row: Latest) -> None:
        current = self.latest.get(row.device_id)
        if current is None or row.time >= current.time:
            self.latest[row.device_id] = row
            self.changed[row.device_id] = rowid
        when = parse_time(row.time)
        if when is None or when < time.time() - self.window:
            return
        values = {name: float(r["v"]) for name, r in row.readings.items()
                  if isinstance(r, dict) and type(r.get("v")) in (int, float)}
        minutes = self.minutes.setdefault(row.device_id, {})
        key = _minute_of(when)
        held = minutes.get(key)
        if held is None or when >= held.when:
            minutes[key] = Point(when, values)
            if key < _minute_of(time.time()):
                self.late[row.device_id] = self.late.get(row.device_id, 0) + 1

    def _prune(self) -> None:
        oldest = _minute_of(time.time() - self.window)
        for minutes in self.minutes.values():
            for key in [k for k in minutes if k < oldest]:
                del minutes[key]

    def series(self) -> dict[str, list[Point]]:
        with self._lock:
            return {d: [m[k] for k in sorted(m)] for d, m in self.minutes.items() if m}

    def closed_minutes(self, device: str, now: float) -> list[Point]:
        """The device's points of the minutes before the one ``now`` is in, oldest first: final unless a
        late row comes (``late`` says so)."""
        current = _minute_of(now)
        with self._lock:
            minutes = dict(self.minutes.get(device, {}))
        return [minutes[k] for k in sorted(minutes) if k < current]

    def latest_rows(self) -> dict[str, Latest]:
        with self._lock:
            return dict(self.latest)


def _minute_of(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(unix))
