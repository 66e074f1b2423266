"""``derive``: values computed from others; today the dew point from temperature and humidity."""

from __future__ import annotations

import math

from enricher.steps import Context, Item

__all__ = ["derive", "dew_point"]

# Magnus formula coefficients (Alduchov and Eskridge 1996), good to 0.35 degC for -45..60 degC
_B, _C = 17.625, 243.04


def dew_point(celsius: float, relative_humidity: float) -> float | None:
    """The dew point in Cel, rounded to 3 decimals; ``None`` where the formula has no finite answer (a
    humidity that underflows to 0 once divided, a temperature of -243.04 Cel or far beyond any
    sensor's range): then there is no derived value, and the reading is processed all the same."""
    try:
        gamma = math.log(relative_humidity / 100.0) + _B * celsius / (_C + celsius)
        value = _C * gamma / (_B - gamma)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return round(value, 3) if math.isfinite(value) else None


def derive(item: Item, ctx: Context) -> Item:
    if not item.is_reading:
        return item
    t = item.readings.get(ctx.settings.temperature)
    h = item.readings.get(ctx.settings.humidity)
    if t is None or h is None or t.get("u") != "Cel" or h.get("u") != "%RH":
        return item
    tv, hv = t["v"], h["v"]
    if isinstance(tv, bool) or isinstance(hv, bool) or not isinstance(tv, int | float):
        return item
    if not isinstance(hv, int | float) or not 0 < hv <= 100:
        return item
    dew = dew_point(float(tv), float(hv))
    if dew is not None:
        item.derived["dew_point"] = {"v": dew, "u": "Cel"}
    return item
