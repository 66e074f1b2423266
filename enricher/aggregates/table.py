"""The windows of the devices of the assigned partitions, as the aggregator's Kafka records.

Two kinds of record, both written in the transaction that changed them (:mod:`enricher.checkpoint`):

- *state*, to the compacted state topic, key = device id, to the partition with the number of the input
  partition the device's events come from (as :mod:`enricher.dedup`): the device's watermark, open
  windows and too-late counts (:meth:`DeviceWindows.to_obj`). Restored on assignment (read_committed).
- *outputs*, to ``iot.aggregates``, same partition number: the current figures of every window the
  transaction changed, ``final`` once it closed, key ``{device}/{measurement}/{window start}``; and the
  too-late count of every (device, measurement) that got one, key ``{device}/{measurement}/too_late``,
  and likewise its count of readings ahead of the clock bound, key ``{device}/{measurement}/ahead``.
  The latest record of a key supersedes the earlier ones (the topic is compacted).

Record values (:func:`window_value`, :func:`too_late_value`)::

    {"kind": "window", "deviceid": "d1", "measurement": "temperature",
     "start": "2026-12-06T07:00:00.000Z", "end": "2026-12-06T07:01:00.000Z",
     "count": 12, "min": 20.5, "max": 21.5, "sum": 252.0, "mean": 21.0, "last": 21.1,
     "last_time": "2026-12-06T07:00:59.000Z", "unit": "Cel", "final": false}
    {"kind": "too_late", "deviceid": "d1", "measurement": "temperature", "count": 3}
    {"kind": "ahead", "deviceid": "d1", "measurement": "temperature", "count": 1}
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from edgebridge.envelope import rfc3339_ms
from edgebridge.errors import ConfigError
from enricher.aggregates.windows import DeviceWindows, Figures, Number, Outcome, WindowRule

__all__ = ["AHEAD", "TOO_LATE", "WINDOW", "WindowTable", "too_late_key", "too_late_value", "window_key",
           "window_value"]

WINDOW, TOO_LATE, AHEAD = "window", "too_late", "ahead"
_dumps = orjson.dumps


def window_key(deviceid: str, measurement: str, start: int) -> str:
    # the device id has no "/" (one MQTT topic level) and the start has a fixed form: unambiguous
    return f"{deviceid}/{measurement}/{rfc3339_ms(start)}"


def too_late_key(deviceid: str, measurement: str, kind: str = TOO_LATE) -> str:
    return f"{deviceid}/{measurement}/{kind}"


def window_value(deviceid: str, measurement: str, start: int, rule: WindowRule, f: Figures,
                 final: bool) -> bytes:
    return _dumps({"kind": WINDOW, "deviceid": deviceid, "measurement": measurement,
                   "start": rfc3339_ms(start), "end": rfc3339_ms(start + rule.size_ms),
                   "count": f.count, "min": f.min, "max": f.max, "sum": f.sum, "mean": f.mean,
                   "last": f.last, "last_time": rfc3339_ms(f.last_ms), "unit": f.unit, "final": final})


def too_late_value(deviceid: str, measurement: str, count: int, kind: str = TOO_LATE) -> bytes:
    return _dumps({"kind": kind, "deviceid": deviceid, "measurement": measurement, "count": count})


class WindowTable:
    """A :class:`enricher.state.StateTable`, and the output records of what changed since the last
    :meth:`clean`."""

    def __init__(self, rule: WindowRule) -> None:
        self.rule = rule
        self._devices: dict[str, DeviceWindows] = {}
        self._partition: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._changed: set[tuple[str, str, int]] = set()  # (device, measurement, start)
        self._final: dict[tuple[str, str, int], Figures] = {}  # closed since the last clean
        # (kind, device, measurement) whose too-late or ahead count changed
        self._late: set[tuple[str, str, str]] = set()

    def __len__(self) -> int:
        return len(self._devices)

    def device(self, deviceid: str) -> DeviceWindows | None:
        return self._devices.get(deviceid)

    def observe(self, deviceid: str, partition: int, time_ms: int,
                values: Mapping[str, tuple[Number, str | None]], limit_ms: int | None = None,
                cap_ms: int | None = None) -> Outcome:
        """An event of ``deviceid`` from input partition ``partition`` (see :meth:`DeviceWindows.apply`)."""
        device = self._devices.get(deviceid)
        if device is None:
            device = self._devices[deviceid] = DeviceWindows()
            self._partition[deviceid] = partition
        before = device.watermark
        out = device.apply(self.rule, time_ms, values, limit_ms, cap_ms)
        if out.changed or out.too_late or out.ahead or device.watermark != before:
            self._dirty.add(deviceid)
        for name, start in out.changed:
            self._changed.add((deviceid, name, start))
        for name, start, figures in out.closed:
            self._changed.add((deviceid, name, start))
            self._final[(deviceid, name, start)] = figures
        for name in out.too_late:
            self._late.add((TOO_LATE, deviceid, name))
        for name in out.ahead:
            self._late.add((AHEAD, deviceid, name))
        return out

    def records(self) -> list[tuple[int, str, bytes]]:
        """(partition, key, value) of every window and too-late count changed since :meth:`clean`."""
        out = []
        for deviceid, name, start in sorted(self._changed):
            final = self._final.get((deviceid, name, start))
            figures = final if final is not None else self._devices[deviceid].open[(name, start)]
            out.append((self._partition[deviceid], window_key(deviceid, name, start),
                        window_value(deviceid, name, start, self.rule, figures, final is not None)))
        for kind, deviceid, name in sorted(self._late):
            device = self._devices[deviceid]
            count = (device.too_late if kind == TOO_LATE else device.ahead)[name]
            out.append((self._partition[deviceid], too_late_key(deviceid, name, kind),
                        too_late_value(deviceid, name, count, kind)))
        return out

    def open_windows(self) -> int:
        return sum(len(d.open) for d in self._devices.values())

    # -- the StateTable protocol ----------------------------------------------------------------------
    def dirty(self) -> list[tuple[int, str, bytes]]:
        rule = [self.rule.size_ms, self.rule.lateness_ms]  # a restore under another rule is refused
        return [(self._partition[d], d, _dumps({**self._devices[d].to_obj(), "rule": rule}))
                for d in sorted(self._dirty)]

    def clean(self) -> None:
        self._dirty.clear()
        self._changed.clear()
        self._final.clear()
        self._late.clear()

    def load(self, partition: int, key: str, payload: bytes | None, record_ms: int = 0) -> None:
        if payload is None:
            self._devices.pop(key, None)
            self._partition.pop(key, None)
            return
        obj = orjson.loads(payload)
        rule = obj.get("rule")
        if rule is not None and rule != [self.rule.size_ms, self.rule.lateness_ms]:
            # the old windows would merge into the new ones under the same keys, final figures overwritten
            raise ConfigError("aggregates.window_seconds", (
                f"device {key!r}'s window state was written with {rule[0] / 1000:g} s windows and "
                f"{rule[1] / 1000:g} s lateness, this aggregator has {self.rule.size_ms / 1000:g} s and "
                f"{self.rule.lateness_ms / 1000:g} s: keep the old values, or give the new rule topics of "
                "its own ([topics] aggregates and aggregates_state, docs/aggregates.md)"))
        self._devices[key] = DeviceWindows.from_obj(obj)
        self._partition[key] = partition

    def drop_partitions(self, partitions: set[int]) -> int:
        gone = {d for d, p in self._partition.items() if p in partitions}
        for d in gone:
            self._devices.pop(d, None)
            self._partition.pop(d, None)
            self._dirty.discard(d)
        self._changed = {c for c in self._changed if c[0] not in gone}
        self._final = {k: f for k, f in self._final.items() if k[0] not in gone}
        self._late = {k for k in self._late if k[1] not in gone}
        return len(gone)

    def open_gaps(self) -> int:
        return 0  # windows have no seq gaps (the enricher's dedup counts those)
