"""A device's aggregates, as the sinks' ``aggregates`` table holds them (:mod:`enricher.sinks.rows`,
written by a sink started with ``aggregates = true``; docs/aggregates.md).

Both sources (:class:`dashboard.readings.ReadingsDb`, :class:`dashboard.readings_pg.PostgresReadings`)
read their rows and hand them to :func:`device_aggregates`, so the two databases' answers have one shape.
``None`` instead of a :class:`DeviceAggregates` means the database has no such table (a sink older than
the aggregates): the page says so, and shows the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MISSING", "DeviceAggregates", "Window", "device_aggregates", "merged"]

# what the page says when the source has no aggregates table
MISSING = "no aggregates table in the source: a sink started with aggregates = true writes one"


@dataclass(frozen=True)
class Window:
    """One tumbling window's latest figures (``final``: the window closed, they will not change)."""

    start: float  # Unix seconds
    end: float
    count: int
    min: float
    max: float
    mean: float
    last: float
    unit: str
    final: bool


@dataclass
class DeviceAggregates:
    windows: dict[str, list[Window]] = field(default_factory=dict)  # measurement -> windows, oldest first
    too_late: dict[str, int] = field(default_factory=dict)  # measurement -> count, non-zero only
    ahead: dict[str, int] = field(default_factory=dict)


def _number(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def device_aggregates(rows: Iterable[tuple[Any, ...]], since: float) -> DeviceAggregates:
    """From rows of (kind, measurement, start, end, count, min, max, mean, last, unit, final), times as
    Unix seconds (None when unreadable): the windows starting at ``since`` or later, and the non-zero
    too-late and ahead counts (those are totals per measurement, not per window: no range applies).
    A window row missing a figure is left out rather than drawn wrong (the sink refuses such records;
    a hand-edited database must not take the page down)."""
    out = DeviceAggregates()
    for kind, measurement, start, end, count, low, high, mean, last, unit, final in rows:
        if kind in ("too_late", "ahead"):
            if isinstance(count, int) and count > 0:
                (out.too_late if kind == "too_late" else out.ahead)[str(measurement)] = count
            continue
        figures = [_number(v) for v in (low, high, mean, last)]
        if kind != "window" or start is None or end is None or start < since or not isinstance(count, int) \
                or None in figures:
            continue
        lo, hi, avg, latest = (f for f in figures if f is not None)
        out.windows.setdefault(str(measurement), []).append(
            Window(start, end, count, lo, hi, avg, latest, str(unit or ""), bool(final)))
    for windows in out.windows.values():
        windows.sort(key=lambda w: w.start)
    return out


def merged(windows: list[Window], most: int) -> list[Window]:
    """At most ``most`` windows, neighbours merged (min of the mins, max of the maxes, the mean weighted
    by counts, the last one's last): a chart 780 pixels wide draws a week of 60 s windows as 780
    rectangles, not 10 080, and the band still spans every figure of the range."""
    if len(windows) <= most:
        return windows
    per = -(-len(windows) // most)  # ceil: the groups' size
    out = []
    for i in range(0, len(windows), per):
        group = windows[i:i + per]
        count = sum(w.count for w in group)
        mean = sum(w.mean * w.count for w in group) / count if count else group[-1].mean
        out.append(Window(group[0].start, group[-1].end, count, min(w.min for w in group),
                          max(w.max for w in group), mean, group[-1].last, group[-1].unit,
                          all(w.final for w in group)))
    return out
