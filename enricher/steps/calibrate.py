"""``calibrate``: ``v * scale + offset`` from the registry, per measurement; the raw value is kept."""

from __future__ import annotations

from enricher.steps import Context, Item

__all__ = ["calibrate"]


def calibrate(item: Item, ctx: Context) -> Item:
    if not item.is_reading or item.device is None or not item.device.calibration:
        return item
    for name, cal in item.device.calibration.items():
        reading = item.readings.get(name)
        if reading is None or isinstance(reading["v"], bool) or not isinstance(reading["v"], int | float):
            continue
        reading["raw"] = reading["v"]
        reading["v"] = reading["v"] * cal.get("scale", 1.0) + cal.get("offset", 0.0)
        reading["calibrated"] = True
    return item
