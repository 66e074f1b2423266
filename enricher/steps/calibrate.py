"""``calibrate``: ``v * scale + offset`` from the registry, per measurement; the raw value is kept.

A result past a double's range (inf, or nan) is refused as ``unencodable``: JSON has no such number and
orjson would write it as ``null``, the reading's value silently lost.
"""

from __future__ import annotations

from edgebridge.deadletters import UNENCODABLE
from enricher.steps import Context, Item, Reject

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
        if reading["v"] - reading["v"]:  # inf or nan
            raise Reject(UNENCODABLE, f"{name}: calibration made {reading['v']} of {reading['raw']!r}")
    return item
