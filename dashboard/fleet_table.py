"""The fleet table kept rendered, and what each open page must be sent to catch up with it.

Rendering the whole table at every change costs what the fleet costs: at 500 devices, 0.24 s of CPU
and 1.2 MB of HTML (mostly sparklines) per second. Here each device's row is rendered again only when
its key changed, and the page is sent only those rows:

- a row's key: the rowid of the device's newest row (:attr:`RecentRows.changed`), the registry's
  version and the device's status; nothing in a row depends on the clock (``pages.fleet_row``);
- its sparklines' key: the current minute and the device's count of late rows. A sparkline is drawn
  from the closed minutes of the hour (each minute's newest row), which change only when a minute
  closes or a late row lands in one: drawn once per device and minute, not once per event.

:class:`FleetTable` builds a :class:`FleetState` per version of the sources, once for every open
page, reusing the previous state's HTML for each unchanged key. Each page's stream keeps what it was
sent (:class:`FleetPage`), which gives it the rows whose keys differ, the devices gone, and the
summary line; the first message of a stream is ``full`` (the page drops rows it does not list).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dashboard import pages
from dashboard.fleet import DeviceRow, spark_series

if TYPE_CHECKING:
    from dashboard.app import Sources

__all__ = ["FleetPage", "FleetState", "FleetTable"]


@dataclass(frozen=True)
class FleetState:
    version: tuple[Any, ...]
    rows: list[DeviceRow]
    summary: str
    # device -> (key, (head, tail)) and device -> (key, sparklines cell)
    cells: dict[str, tuple[Any, tuple[str, str]]] = field(default_factory=dict)
    sparks: dict[str, tuple[Any, str]] = field(default_factory=dict)

    def block(self) -> str:
        """The whole fleet block, as the first load shows it."""
        return pages.fleet_live(self.summary, [
            (self.cells[r.device_id][1][0], self.sparks[r.device_id][1], self.cells[r.device_id][1][1])
            for r in self.rows])


class FleetTable:
    """Shared by every open fleet page; built in the app's worker threads, one build at a time."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self._state: FleetState | None = None
        self._lock = threading.Lock()

    def state(self) -> FleetState:
        with self._lock:
            version = self.sources.version("fleet")
            if self._state is None or self._state.version != version:
                self._state = self._build(version, self._state)
            return self._state

    def _build(self, version: tuple[Any, ...], before: FleetState | None) -> FleetState:
        now = time.time()
        rows = self.sources.fleet()
        recent, registry, status = self.sources.recent, self.sources.registry, self.sources.status
        states = dict(status.states) if status else {}
        minute = int(now // 60)
        old_cells = before.cells if before else {}
        old_sparks = before.sparks if before else {}
        cells: dict[str, tuple[Any, tuple[str, str]]] = {}
        sparks: dict[str, tuple[Any, str]] = {}
        for row in rows:
            device = row.device_id
            key = (recent.changed.get(device) if recent else None, registry.version if registry else 0,
                   states.get(device))
            held = old_cells.get(device)
            cells[device] = held if held is not None and held[0] == key else (key, pages.fleet_row(row))
            spark_key = (minute, recent.late.get(device, 0) if recent else 0)
            spark = old_sparks.get(device)
            if spark is None or spark[0] != spark_key:
                points = recent.closed_minutes(device, now) if recent else []
                spark = (spark_key, pages.spark_cell(spark_series(points)))
            sparks[device] = spark
        summary = pages.fleet_summary(rows, now, self.sources.notes())
        return FleetState(version, rows, summary, cells, sparks)


class FleetPage:
    """What one open page holds (device -> (row key, sparklines key)), and what it needs next."""

    def __init__(self) -> None:
        self.sent: dict[str, tuple[Any, Any]] = {}
        self.version: tuple[Any, ...] | None = None

    def update(self, state: FleetState) -> dict[str, Any] | None:
        """The rows whose keys differ from what the page holds, the devices gone and the summary line;
        ``None`` when the page already shows ``state``. A row that changed comes with an empty
        sparklines cell (``pages.SPARK_SLOT``) unless its sparklines changed too: the page keeps the one
        it has. The first message is ``full``: it lists every device, the page drops any other row."""
        if state.version == self.version:
            return None
        full = self.version is None
        self.version = state.version
        rows = []
        for r in state.rows:
            device = r.device_id
            key, (head, tail) = state.cells[device]
            spark_key, spark = state.sparks[device]
            had = self.sent.get(device)
            entry: dict[str, str] = {"d": device}
            if had is None or had[0] != key:
                entry["row"] = head + pages.SPARK_SLOT + tail
            if had is None or had[1] != spark_key:
                entry["spark"] = spark
            if len(entry) > 1:
                rows.append(entry)
                self.sent[device] = (key, spark_key)
        gone = sorted(set(self.sent) - set(state.cells))
        for device in gone:
            del self.sent[device]
        return {"full": full, "summary": state.summary, "rows": rows, "gone": gone, "at": time.time()}
