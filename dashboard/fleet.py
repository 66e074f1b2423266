"""The fleet as the page shows it: the registry, the sink's latest rows, the status topic and the last
hour of readings, joined per device.

A device is listed when any of them knows it: registered but silent (no row yet), or sending but not
registered (the enricher flags such events; the page says "unregistered"). Its alerts are the flags of
its newest event, and ``offline`` when its status says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from dashboard.readings import Latest, Point

__all__ = ["SPARK_WINDOW", "DeviceRow", "fleet_rows", "spark_series"]

SPARK_WINDOW = 3600.0  # seconds of history in a row's sparklines


@dataclass(frozen=True)
class DeviceRow:
    device_id: str
    name: str | None
    site: str | None
    location: str | None
    registered: bool
    status: str  # online, offline, or "unknown" (no status seen)
    last_seen: str | None  # the newest event's device time
    readings: dict[str, tuple[Any, str]]  # name -> (value, unit)
    flags: list[str] = field(default_factory=list)


def fleet_rows(registry: dict[str, Any], latest: dict[str, Latest], states: dict[str, tuple[str, float]]
               ) -> list[DeviceRow]:
    rows = []
    for device in sorted(set(registry) | set(latest) | set(states)):
        info = registry.get(device)
        row = latest.get(device)
        readings: dict[str, tuple[Any, str]] = {}
        if row is not None:
            for name, r in sorted(row.readings.items()):
                if isinstance(r, dict):
                    unit = r.get("u") or (info.units.get(name, "") if info else "")
                    readings[name] = (r.get("v"), str(unit))
        rows.append(DeviceRow(
            device_id=device,
            name=info.name if info else None,
            site=(info.site if info else None) or (row.site if row else None),
            location=(info.location if info else None) or (row.location if row else None),
            registered=info is not None,
            status=states.get(device, ("unknown", 0.0))[0],
            last_seen=row.time if row else None,
            readings=readings,
            flags=list(row.flags) if row else [],
        ))
    return rows


def spark_series(points: list[Point]) -> dict[str, list[tuple[float, float]]]:
    """Per-minute points as one (time, value) line per measurement."""
    lines: dict[str, list[tuple[float, float]]] = {}
    for point in points:
        for name, value in point.values.items():
            lines.setdefault(name, []).append((point.when, value))
    return lines


def since_hour(now: float | None = None) -> float:
    return (time.time() if now is None else now) - SPARK_WINDOW
