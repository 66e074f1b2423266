"""``normalise``: one unit per quantity (``degF``/``K`` -> ``Cel``, ``hPa``/``kPa`` -> ``Pa``, ...).

Uses :func:`edgebridge.units.normalise`. A reading without a unit takes the registry's expected unit for
that measurement; a reading whose canonical unit differs from the expected one's is flagged
``unit_mismatch:<name>`` (and kept: a wrong registry entry must not eat data). A conversion past a
double's range (``1e308 kWh`` in ``J``: inf) is refused as ``unencodable``: JSON has no such number and
orjson would write it as ``null``, the reading's value silently lost.
"""

from __future__ import annotations

from functools import lru_cache

from edgebridge import units
from edgebridge.deadletters import UNENCODABLE
from enricher.steps import Context, Item, Reject

__all__ = ["normalise"]

_canonical = lru_cache(maxsize=1024)(units.canonical_unit)  # a handful of units, looked up per reading


def normalise(item: Item, ctx: Context) -> Item:
    if not item.is_reading:
        return item
    expected = item.device.units if item.device is not None else {}
    for name, reading in item.readings.items():
        unit = reading.get("u") or expected.get(name)
        if unit is None:
            continue
        value, canonical = units.normalise(reading["v"], unit)
        if type(value) is float and value - value:  # inf or nan
            raise Reject(UNENCODABLE, f"{name}: {reading['v']!r} {unit} is {value} {canonical}")
        if canonical != unit:
            reading.setdefault("raw", reading["v"])
            reading["raw_u"] = unit
        reading["v"], reading["u"] = value, canonical
        if name in expected and _canonical(expected[name]) != canonical:
            item.flags.append(f"unit_mismatch:{name}")
    return item
