"""The default chain fused: validate, dedup, calibrate, normalise, derive, flag and route in one call.

:func:`enricher.steps.build_pipeline` uses it when ``[pipeline] steps`` is exactly the default chain; any
other list (a user step among them, a step left out, another order) runs step by step. Why: run apart,
the steps walk each event's readings four times, call and check ``is_reading`` seven times and re-read
the same entries; fused, the readings are walked twice (calibrate + normalise, then flag + route) with
the registry entry's lookups hoisted. The step modules stay the reference: the outputs, the counts in
:class:`~enricher.steps.Stats`, the history and the errors are theirs, proven equal on generated events by
``tests/enricher/test_fused.py``.

The one difference: when a built-in step raises (say, an integer reading too large for a float), the
dead letter's ``step`` header names the step that failed on the *first failing reading*; unfused, a
``calibrate`` failure of a later reading would win over a ``normalise`` failure of an earlier one.
"""

from __future__ import annotations

from typing import Any

from edgebridge.deadletters import UNENCODABLE
from edgebridge.envelope import GAP_TYPE, READING_TYPE, parse_time
from edgebridge.units import ALIASES, CONVERSIONS, Conversion
from enricher.dedup import Verdict
from enricher.steps import Context, Item, Reject, StepFailed
from enricher.steps.derive import dew_point
from enricher.steps.validate import note_epochs

__all__ = ["run_default"]

_DUPLICATE = Verdict.DUPLICATE
_LATE = Verdict.LATE
_EMPTY: dict[str, Any] = {}
_NUMBER = (float, int)  # exact types (decoded JSON): a bool is not a number here, as in the steps
# unit -> (symbol, conversion or None): what edgebridge.units.normalise looks up per reading
_UNITS: dict[str, tuple[str, Conversion | None]] = {}


def _unit(unit: str) -> tuple[str, Conversion | None]:
    symbol = ALIASES.get(unit, unit)
    found = (symbol, CONVERSIONS.get(symbol))
    if len(_UNITS) < 4096:  # bounded: units come from devices
        _UNITS[unit] = found
    return found


def run_default(item: Item, ctx: Context) -> Item | None:
    """The default chain on one item: the contract of :meth:`enricher.steps.Pipeline.run`."""
    stage = "validate"
    try:
        event = item.event
        deviceid = event.deviceid
        stats = ctx.stats
        # -- validate
        is_reading = event.type == READING_TYPE
        if not is_reading and event.type not in ctx.known_types:
            raise Reject("unknown_type", f"{event.type!r} is not in [pipeline] known_types")
        if item.key is not None and item.key != deviceid:
            raise Reject("device_mismatch", f"event of {deviceid!r} under key {item.key!r}")
        device = item.device = ctx.registry.get(deviceid)
        if device is None:
            if ctx.settings.unknown_devices == "deadletter":
                raise Reject("unknown_device", f"{deviceid!r} is not in the registry")
            stats.unregistered += 1
        # -- dedup
        stage = "dedup"
        obs = ctx.dedup.observe(deviceid, ctx.partition, event.seq, event.epoch, item.ingest_ms)
        if obs.epochs is not None:
            note_epochs(obs.epochs, item, stats)
        if obs.verdict is _DUPLICATE:
            stats.duplicates += 1
            return None
        stats.seqs_expired += obs.expired
        stats.gaps_closed += obs.gaps_closed
        late = obs.verdict is _LATE
        if late:
            stats.late += 1
            item.late = True
            item.flags.append("late")
        if obs.gap_opened is not None:
            stats.gaps_opened += 1
            first, last = obs.gap_opened
            item.alerts.append({"kind": "gap_opened", "first": first, "last": last,
                                "count": last - first + 1})
        if not is_reading:  # a gap, or a type of known_types: the reading steps leave it alone
            if event.type == GAP_TYPE:
                data = event.data
                closed, expired = ctx.dedup.explain(deviceid, ctx.partition, data["first"], data["last"],
                                                    event.epoch, event.seq)
                stats.gaps_explained += closed
                stats.gaps_closed += closed
                stats.seqs_expired += expired
            return item
        if device is None:
            calibration: Any = _EMPTY
            expected: Any = _EMPTY
            canonical_expected: Any = _EMPTY
            thresholds: Any = _EMPTY
            rated = False
        else:
            calibration, expected, thresholds = device.calibration, device.units, device.thresholds
            canonical_expected = device.canonical_units
            rated = device.rated
        flags = item.flags
        # -- calibrate and normalise, one reading at a time (validate's copy of the reading made here)
        readings = item.readings = {}
        for name, measurement in event.data.items():
            reading = readings[name] = dict(measurement)
            v = reading["v"]
            kind = type(v)  # decoded JSON: exact types, so this is the steps' "number, not bool" check
            number = kind is float or kind is int
            if number and calibration:
                cal = calibration.get(name)
                if cal is not None:
                    stage = "calibrate"
                    reading["raw"] = v
                    v = reading["v"] = v * cal.get("scale", 1.0) + cal.get("offset", 0.0)
                    reading["calibrated"] = True
                    if v - v:  # inf or nan: see enricher.steps.calibrate
                        raise Reject(UNENCODABLE, f"{name}: calibration made {v} of {reading['raw']!r}")
            unit = reading.get("u") or expected.get(name)
            if unit is None:
                continue
            stage = "normalise"
            if number:
                canonical, conversion = _UNITS.get(unit) or _unit(unit)
                if conversion is not None:
                    canonical, mul, div, offset = conversion
                    value = (v + offset) * mul
                    if div != 1:
                        value = value / div
                    if value - value:  # inf or nan: see enricher.steps.normalise
                        raise Reject(UNENCODABLE, f"{name}: {v!r} {unit} is {value} {canonical}")
                else:
                    value = v
            else:
                value, canonical = v, unit
            if canonical != unit:
                reading.setdefault("raw", v)
                reading["raw_u"] = unit
            reading["v"], reading["u"] = value, canonical
            if name in expected and canonical_expected[name] != canonical:
                flags.append(f"unit_mismatch:{name}")
        # -- derive
        stage = "derive"
        settings = ctx.settings
        t = readings.get(settings.temperature)
        h = readings.get(settings.humidity)
        if t is not None and h is not None and t.get("u") == "Cel" and h.get("u") == "%RH":
            tv, hv = t["v"], h["v"]
            if type(tv) in _NUMBER and type(hv) in _NUMBER and 0 < hv <= 100:
                dew = dew_point(float(tv), float(hv))
                if dew is not None:
                    item.derived["dew_point"] = {"v": dew, "u": "Cel"}
        # -- flag and route
        stage = "flag"
        when = parse_time(event.time).timestamp() if rated else 0.0
        history = ctx.history
        entries = history.entries
        stuck_count = settings.stuck_count
        alerts = item.alerts
        for name, reading in readings.items():
            v = reading["v"]
            kind = type(v)
            if kind is not float and kind is not int:
                continue
            limits = thresholds.get(name, _EMPTY)
            if limits and (("min" in limits and v < limits["min"])
                           or ("max" in limits and v > limits["max"])):
                flags.append(f"out_of_range:{name}")
                alerts.append({"kind": "out_of_range", "measurement": name, "value": v,
                               "unit": reading.get("u")})
            # History.swap inlined; the stuck case writes its entry once instead of twice (same end state)
            key = (deviceid, name)
            previous = entries.pop(key, None)
            repeats = 1
            if previous is not None and not late:
                prev_when, prev_v, prev_repeats = previous
                if ("rate" in limits and when > prev_when
                        and abs(v - prev_v) / (when - prev_when) > limits["rate"]):
                    flags.append(f"rate:{name}")
                    alerts.append({"kind": "rate", "measurement": name, "value": v, "unit": reading.get("u")})
                if v == prev_v:
                    repeats = prev_repeats + 1
                    if stuck_count and repeats >= stuck_count:
                        flags.append(f"stuck:{name}")
                        alerts.append({"kind": "stuck", "measurement": name, "value": v,
                                       "unit": reading.get("u")})
            entries[key] = (when, v, repeats)
            if len(entries) > history.max_entries:
                entries.popitem(last=False)
                history.evicted += 1
        return item
    except (Reject, StepFailed):
        raise
    except Exception as exc:
        raise StepFailed(stage, exc) from exc
