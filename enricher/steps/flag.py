"""``flag``: out of the registry's range, too fast a rate of change, a stuck sensor.

Flags are strings on the processed event: ``out_of_range:<name>``, ``rate:<name>``, ``stuck:<name>``.
Range and rate limits come from the registry's ``thresholds`` (``min``, ``max``, ``rate`` per second);
the stuck count from ``[pipeline] stuck_count``.
"""

from __future__ import annotations

from edgebridge.envelope import parse_time
from enricher.steps import Context, Item

__all__ = ["flag"]


def flag(item: Item, ctx: Context) -> Item:
    if not item.is_reading:
        return item
    thresholds = item.device.thresholds if item.device is not None else {}
    # the event time matters only to a rate limit: parsed only for a device that has one (hot path)
    rated = any("rate" in limits for limits in thresholds.values())
    when = parse_time(item.event.time).timestamp() if rated else 0.0
    for name, reading in item.readings.items():
        v = reading["v"]
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        limits = thresholds.get(name, {})
        if ("min" in limits and v < limits["min"]) or ("max" in limits and v > limits["max"]):
            item.flags.append(f"out_of_range:{name}")
        previous = ctx.history.swap((item.event.deviceid, name), (when, v, 1))
        if previous is None or item.late:
            continue
        prev_when, prev_v, repeats = previous
        if "rate" in limits and when > prev_when and abs(v - prev_v) / (when - prev_when) > limits["rate"]:
            item.flags.append(f"rate:{name}")
        if v == prev_v:
            repeats += 1
            ctx.history.swap((item.event.deviceid, name), (when, v, repeats))
            if ctx.settings.stuck_count and repeats >= ctx.settings.stuck_count:
                item.flags.append(f"stuck:{name}")
    return item
