"""Tumbling windows by event time with an allowed lateness, per device: pure functions, no Kafka.

The rule (:class:`WindowRule`): an event at time ``t`` (its device's clock, ms) belongs to the window
``[start, start + size)`` with ``start = t - t mod size`` (aligned on the Unix epoch). A device's
*watermark* is the latest event time seen from that device. A window is *final* once its device's
watermark reaches ``end + lateness``; until then an event for it updates its figures, after that it is
*too late*: counted per measurement, never applied.

A device clock far ahead would drag the watermark with it and make every later, correct event too late
(and open a window that no later event would close). So an event more than ``max_ahead_ms`` after the
time Kafka took its processed record (the caller's ``limit_ms``) is *ahead*: counted per measurement,
never applied, and it does not move the watermark; and no event moves the watermark past the time Kafka
took it (the caller's ``cap_ms``), so a clock a little ahead cannot make the next correct events too late.

Bounds, whatever a device sends: a value of magnitude above :data:`MAX_MAGNITUDE` is not aggregated
(a sum of such values could overflow to infinity, which has no JSON form); a device has at most
``max_open`` open windows (one more makes its oldest final early) and at most ``max_open`` counted
measurement names (the others are counted under :data:`OTHER`), so its state record stays far below
Kafka's record size even when it names thousands of measurements.

Why per device, not per partition: device clocks differ, and a device that reconnects after hours sends
hours-old events in order; a partition's watermark, pushed on by the other devices, would call all of
them too late. A device's own watermark only moves with its own events. The other side of it: a device
that goes silent leaves its last windows open until its next event (docs/aggregates.md).

The figures of a window (:class:`Figures`): count, min, max, sum (mean = sum / count) and last, the
value of the event with the latest event time in the window (of equal times, the one applied last).

Idle devices are forgotten (:meth:`WindowRule.idle`), so that memory and the state topic do not grow with
every device ever seen: a device whose latest record was taken by Kafka ``idle_ms`` or longer before its
partition's clock (the latest Kafka time of the records processed from that partition) is idle. Kafka
time, not the device's clock (a device clock is what the watermark follows, and can be anything) and not
the wall clock (a replay after an abort or a restart must decide the same). Its open windows become final
(:meth:`DeviceWindows.close_all`) and its state goes; a later event of it starts a device afresh.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard

__all__ = ["MAX_MAGNITUDE", "NEVER", "OTHER", "SWEEP_EVERY_MS", "DeviceWindows", "Figures", "Number",
           "Outcome", "WindowRule", "aggregatable", "epoch_ms"]

Number = int | float
MAX_MAGNITUDE = 1e200  # a window would need 1e108 such readings for its sum to overflow
OTHER = "*"  # the name counts of a device's measurements past its max_open are kept under
NEVER = 2**63  # a Kafka time no record reaches
# a partition's idle devices are looked for at most once per this much of its Kafka time: a scan of its
# devices, so not at every commit when a fleet is large (a device's own record checks it exactly)
SWEEP_EVERY_MS = 60_000


def aggregatable(value: object) -> TypeGuard[Number]:
    """A JSON number (a bool is not) of magnitude at most :data:`MAX_MAGNITUDE`."""
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) <= MAX_MAGNITUDE


def epoch_ms(when: datetime) -> int:
    """An aware datetime as Unix milliseconds, exactly (no float rounding of ``timestamp()``)."""
    return calendar.timegm(when.utctimetuple()) * 1000 + when.microsecond // 1000


@dataclass(frozen=True, slots=True)
class WindowRule:
    size_ms: int
    lateness_ms: int = 0
    max_open: int = 1000  # open windows, and counted measurement names, per device
    idle_ms: int | None = None  # a device idle this long in Kafka time is forgotten; None: never

    def start(self, time_ms: int) -> int:
        return time_ms - time_ms % self.size_ms  # Python's %: floor, also before 1970

    def closes_at(self, start: int) -> int:
        """The watermark at which the window of ``start`` is final."""
        return start + self.size_ms + self.lateness_ms

    def idle(self, seen_ms: int | None, now_ms: int | None) -> bool:
        """A device whose latest record Kafka took at ``seen_ms`` is idle at its partition's Kafka time
        ``now_ms`` (never when either is unknown, or without ``idle_ms``)."""
        return (self.idle_ms is not None and seen_ms is not None and now_ms is not None
                and now_ms - seen_ms >= self.idle_ms)

    def forget_at(self, seen_ms: int | None) -> int:
        """The partition clock at which a device last seen at ``seen_ms`` becomes idle."""
        return NEVER if self.idle_ms is None or seen_ms is None else seen_ms + self.idle_ms


@dataclass(slots=True)
class Figures:
    count: int
    min: Number
    max: Number
    sum: Number
    last: Number
    last_ms: int  # the event time of ``last``
    unit: str | None  # the unit of ``last`` (the enricher normalised the units: one per measurement)

    @classmethod
    def first(cls, value: Number, time_ms: int, unit: str | None) -> Figures:
        return cls(1, value, value, float(value), value, time_ms, unit)  # the sum a float: no int overflow

    def add(self, value: Number, time_ms: int, unit: str | None) -> None:
        self.count += 1
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.sum += value
        if time_ms >= self.last_ms:
            self.last, self.last_ms, self.unit = value, time_ms, unit

    @property
    def mean(self) -> float:
        return self.sum / self.count

    def to_list(self) -> list[Any]:
        return [self.count, self.min, self.max, self.sum, self.last, self.last_ms, self.unit]

    @classmethod
    def from_list(cls, obj: list[Any]) -> Figures:
        count, low, high, total, last, last_ms, unit = obj
        return cls(int(count), low, high, total, last, int(last_ms), unit)


@dataclass(slots=True)
class Outcome:
    """What one event did to its device's windows."""

    changed: list[tuple[str, int]] = field(default_factory=list)  # (measurement, start) updated
    closed: list[tuple[str, int, Figures]] = field(default_factory=list)  # became final, now dropped
    too_late: list[str] = field(default_factory=list)  # measurements counted as too late
    ahead: list[str] = field(default_factory=list)  # measurements counted as ahead of the clock bound


@dataclass(slots=True)
class DeviceWindows:
    """One device's watermark, open windows, too-late and ahead counts per measurement, and the Kafka
    time of its latest record (``seen``: when it goes idle, :meth:`WindowRule.idle`)."""

    watermark: int | None = None
    open: dict[tuple[str, int], Figures] = field(default_factory=dict)
    too_late: dict[str, int] = field(default_factory=dict)
    ahead: dict[str, int] = field(default_factory=dict)
    seen: int | None = None

    def saw(self, kafka_ms: int | None) -> bool:
        """A record of the device taken by Kafka at ``kafka_ms``; True when :attr:`seen` moved."""
        if kafka_ms is None or (self.seen is not None and kafka_ms <= self.seen):
            return False
        self.seen = kafka_ms
        return True

    def close_all(self) -> list[tuple[str, int, Figures]]:
        """Every open window, made final now (the device is forgotten), oldest first."""
        closed = [(*key, self.open[key]) for key in sorted(self.open, key=lambda k: (k[1], k[0]))]
        self.open.clear()
        return closed

    def apply(self, rule: WindowRule, time_ms: int, values: Mapping[str, tuple[Number, str | None]],
              limit_ms: int | None = None, cap_ms: int | None = None) -> Outcome:
        """An event at ``time_ms`` with numeric ``values`` (measurement -> (value, unit)); an event after
        ``limit_ms`` (when given) is counted as ahead and not applied; the watermark moves at most to
        ``cap_ms`` (when given)."""
        out = Outcome()
        if limit_ms is not None and time_ms > limit_ms:
            out.ahead.extend(_count(self.ahead, name, rule.max_open) for name in values)
            return out
        start = rule.start(time_ms)
        if self.watermark is not None and self.watermark >= rule.closes_at(start):
            out.too_late.extend(_count(self.too_late, name, rule.max_open) for name in values)
            return out  # older than the watermark: it cannot move it either
        for name, (value, unit) in values.items():
            key = (name, start)
            figures = self.open.get(key)
            if figures is None:
                self.open[key] = Figures.first(value, time_ms, unit)
            else:
                figures.add(value, time_ms, unit)
            out.changed.append(key)
        mark = time_ms if cap_ms is None else min(time_ms, cap_ms)
        if self.watermark is None or mark > self.watermark:
            self.watermark = mark
            # the event's own window never closes here: mark <= time_ms < its end <= its closes_at
            for key in [k for k in self.open if rule.closes_at(k[1]) <= mark]:
                out.closed.append((*key, self.open.pop(key)))
        if len(self.open) > rule.max_open:  # the oldest windows made final early (the bound above)
            for key in sorted(self.open, key=lambda k: (k[1], k[0]))[:len(self.open) - rule.max_open]:
                out.closed.append((*key, self.open.pop(key)))
        return out

    def to_obj(self) -> dict[str, Any]:
        return {"wm": self.watermark, "open": [[name, start, *f.to_list()]
                                               for (name, start), f in sorted(self.open.items())],
                "too_late": self.too_late, "ahead": self.ahead, "seen": self.seen}

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any], record_ms: int | None = None) -> DeviceWindows:
        """A state record's object; one written before ``seen`` was kept takes ``record_ms`` (the state
        record's Kafka time: its last change was committed then, so it was active shortly before)."""
        wm, seen = obj.get("wm"), obj.get("seen", record_ms)
        windows = {(str(w[0]), int(w[1])): Figures.from_list(w[2:]) for w in obj.get("open", [])}
        return cls(None if wm is None else int(wm), windows,
                   {str(k): int(v) for k, v in obj.get("too_late", {}).items()},
                   {str(k): int(v) for k, v in obj.get("ahead", {}).items()},
                   None if seen is None else int(seen))


def _count(counts: dict[str, int], name: str, most: int) -> str:
    """Count ``name`` in ``counts`` (at most ``most`` names, then under :data:`OTHER`); returns the key."""
    key = name if name in counts or len(counts) < most else OTHER
    counts[key] = counts.get(key, 0) + 1
    return key
