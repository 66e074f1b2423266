"""``route``: threshold crossings become records on ``iot.alerts`` (the processor produces them)."""

from __future__ import annotations

from enricher.steps import Context, Item

__all__ = ["route"]


def route(item: Item, ctx: Context) -> Item:
    for f in item.flags:
        kind, _, name = f.partition(":")
        if kind in ("out_of_range", "rate", "stuck"):
            reading = item.readings.get(name, {})
            item.alerts.append({"kind": kind, "measurement": name, "value": reading.get("v"),
                                "unit": reading.get("u")})
    return item
