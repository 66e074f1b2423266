"""The fleet's newest row per device and its last hour per minute, kept in memory.

Reading them from the table at every look costs a scan of the hour (500 devices at 1 event/s: 1.8
million rows) per second. Instead they are read once, when the dashboard starts (each device's newest
row, and each device's newest row of each minute of the hour, by index: :mod:`dashboard.readings`), and
then fed by the rows the sink added since the last look. For the SQLite sink (:class:`RecentRows`)
rowids grow with each insert, so ``rowid > last`` is exactly the new rows, a few hundred a second, by
the primary key; the PostgreSQL sink's rows are followed by the transaction that wrote them
(:class:`dashboard.readings_pg.PostgresRecent`). Either way a row counts when it was committed, not by
its device time: a device back from a long time offline, whose backlog carries old times, fills its
minutes of the hour as its rows land. A late row (an older device time, inserted later) replaces
nothing newer. Minutes older than the hour are dropped as the hour moves on.

Two counters let the page render only what changed (:mod:`dashboard.fleet_table`): ``changed[device]``
tells apart the looks at which the device's newest row was replaced (the rowid of the row that replaced
it, for SQLite), and ``late[device]`` grows when a row lands in a minute that had already closed when
it arrived (the only way a closed minute changes).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from dashboard.readings import Latest, Point, ReadingsDb, parse_time

__all__ = ["HeldRows", "RecentRows"]

WINDOW = 3600.0
# Looks happen while a page is open. After a longer pause the rows committed meanwhile (an hour of a
# 500-device fleet: 1.8 million) cost more to follow one by one than the first look's reads by index
# (about a second): the look starts over instead.
START_OVER_AFTER = 60.0


class HeldRows:
    """What both sources keep, and the one place a new row is merged into it; a source says how the
    first look reads (:meth:`_load`) and how the rows committed since the last look are found
    (:meth:`_follow`)."""

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self.latest: dict[str, Latest] = {}
        self.minutes: dict[str, dict[str, Point]] = {}  # device -> "YYYY-MM-DDTHH:MM" -> its newest point
        self.changed: dict[str, Any] = {}  # device -> key of the look (row) that last changed its newest row
        self.late: dict[str, int] = {}  # device -> rows that changed an already closed minute
        self._loaded = False
        self._looked_at = 0.0  # time.monotonic() of the last look
        self._lock = threading.Lock()  # worker threads look at once; one of them reads, the others wait

    def refresh(self) -> None:
        with self._lock:
            now = time.monotonic()
            if not self._loaded or now - self._looked_at > START_OVER_AFTER:
                self._loaded = self._load()
            self._looked_at = now
            if self._loaded:
                self._follow()
            self._prune()

    def _load(self) -> bool:
        """The first look; False: nothing to follow yet (tried again at the next look)."""
        raise NotImplementedError

    def _follow(self) -> None:
        raise NotImplementedError

    def _start(self, key: Any, latest: dict[str, Latest], series: dict[str, list[Point]]) -> None:
        """What the first look read: each device's newest row and its per-minute hour."""
        self.latest = latest
        self.changed = {device: key for device in latest}
        self.minutes = {device: {_minute_of(p.when): p for p in points} for device, points in series.items()}

    def _apply(self, key: Any, row: Latest) -> None:
        """A row the sink committed since the last look (``key`` tells this change apart from the device's
        earlier ones)."""
        current = self.latest.get(row.device_id)
        if current is None or row.time >= current.time:
            self.latest[row.device_id] = row
            self.changed[row.device_id] = key
        when = parse_time(row.time)
        if when is None or when < time.time() - self.window:
            return
        values = {name: float(r["v"]) for name, r in row.readings.items()
                  if isinstance(r, dict) and type(r.get("v")) in (int, float)}
        minutes = self.minutes.setdefault(row.device_id, {})
        minute = _minute_of(when)
        held = minutes.get(minute)
        # per minute, the newest device time wins, whatever the order the rows were committed in
        if held is None or when >= held.when:
            minutes[minute] = Point(when, values)
            if minute < _minute_of(time.time()):
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


class RecentRows(HeldRows):
    """The SQLite sink's rows, followed by rowid."""

    def __init__(self, db: ReadingsDb, window: float = WINDOW) -> None:
        super().__init__(window)
        self.db = db
        self.last_rowid = 0

    def _load(self) -> bool:
        # the rowid first: a row added while the two reads run is read again after, and applied once more
        # harmlessly (the same time replaces the same values)
        self.last_rowid = self.db.version()
        self._start(self.last_rowid, self.db.latest(),
                    self.db.series(time.time() - self.window, per_minute=True, limit=10**7))
        return True

    def _follow(self) -> None:
        while True:
            rows = self.db.rows_after(self.last_rowid)
            for rowid, row in rows:
                self._apply(rowid, row)
                self.last_rowid = rowid
            if len(rows) < 50_000:
                break


def _minute_of(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(unix))
