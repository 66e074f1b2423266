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

Idle devices (:meth:`WindowRule.idle`) are forgotten: their open windows are emitted final and their
state key gets a tombstone, in the transaction that forgets them (:meth:`WindowTable.expire`, called by
the commit, and :meth:`WindowTable.observe` for a device's own record after an idle time). Each input
partition has a clock, the latest Kafka time of the records processed from it since it was assigned
or restored: a partition that receives nothing forgets nothing, and a lagging partition is not judged
by the time of the others.

A device's state lives in the partition of its first record (``_partition``). A record of it on another
partition (``iot.events.processed`` grew, so its key hashes elsewhere) is counted and logged, not moved:
adding partitions needs new aggregates topics (docs/aggregates.md).

Record values (:func:`window_value`, :func:`too_late_value`)::

    {"kind": "window", "deviceid": "d1", "measurement": "temperature",
     "start": "2026-12-06T07:00:00.000Z", "end": "2026-12-06T07:01:00.000Z",
     "count": 12, "min": 20.5, "max": 21.5, "sum": 252.0, "mean": 21.0, "last": 21.1,
     "last_time": "2026-12-06T07:00:59.000Z", "unit": "Cel", "final": false}
    {"kind": "too_late", "deviceid": "d1", "measurement": "temperature", "count": 3}
    {"kind": "ahead", "deviceid": "d1", "measurement": "temperature", "count": 1}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson

from edgebridge.envelope import rfc3339_ms
from edgebridge.errors import ConfigError
from edgebridge.logs import rate_limited
from enricher.aggregates.windows import (
    NEVER,
    SWEEP_EVERY_MS,
    DeviceWindows,
    Figures,
    Number,
    Outcome,
    WindowRule,
)

if TYPE_CHECKING:
    from enricher.aggregates.metrics import AggregatorMetrics

__all__ = ["AHEAD", "TOO_LATE", "WINDOW", "WindowTable", "too_late_key", "too_late_value", "window_key",
           "window_value"]

log = logging.getLogger(__name__)

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
    :meth:`clean`. ``metrics`` (when given) counts devices forgotten and moved, and windows they closed."""

    def __init__(self, rule: WindowRule, metrics: AggregatorMetrics | None = None) -> None:
        self.rule = rule
        self.metrics = metrics
        self._devices: dict[str, DeviceWindows] = {}
        self._partition: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._changed: set[tuple[str, str, int]] = set()  # (device, measurement, start)
        # closed since the last clean: (device, measurement, start) -> (partition, figures)
        self._final: dict[tuple[str, str, int], tuple[int, Figures]] = {}
        # (kind, device, measurement) whose too-late or ahead count changed
        self._late: set[tuple[str, str, str]] = set()
        # forgotten since the last clean: device -> the partition its tombstone goes to
        self._forgotten: dict[str, int] = {}
        # the counts of forgotten devices changed in this transaction: (kind, device, name) -> (p, count)
        self._gone_counts: dict[tuple[str, str, str], tuple[int, int]] = {}
        self._clock: dict[int, int] = {}  # input partition -> the latest Kafka time processed from it
        self._sweep_at: dict[int, int] = {}  # input partition -> its clock at which to look for idle devices

    def __len__(self) -> int:
        return len(self._devices)

    def device(self, deviceid: str) -> DeviceWindows | None:
        return self._devices.get(deviceid)

    def observe(self, deviceid: str, partition: int, time_ms: int,
                values: Mapping[str, tuple[Number, str | None]], limit_ms: int | None = None,
                cap_ms: int | None = None) -> Outcome:
        """An event of ``deviceid`` from input partition ``partition`` (see :meth:`DeviceWindows.apply`);
        ``cap_ms`` is the time Kafka took its record (the device's activity, and its partition's clock)."""
        now = self._tick(partition, cap_ms)
        device = self._devices.get(deviceid)
        if device is not None:
            home = self._partition[deviceid]
            if home != partition:
                self._moved(deviceid, home, partition)
            if self.rule.idle(device.seen, now):  # exactly here, whenever the sweep would have run
                self._forget(deviceid)
                device = None
        if device is None:
            device = self._devices[deviceid] = DeviceWindows()
            self._partition[deviceid] = partition
            if self._sweep_at.get(partition, NEVER) == NEVER:  # else an earlier device's comes first
                self._sweep_at[partition] = self.rule.forget_at(cap_ms)
        before = device.watermark
        out = device.apply(self.rule, time_ms, values, limit_ms, cap_ms)
        # a newer seen is state too: a restore must not forget the device earlier than this run would
        if device.saw(cap_ms) or out.changed or out.too_late or out.ahead or device.watermark != before:
            self._dirty.add(deviceid)
        for name, start in out.changed:
            self._changed.add((deviceid, name, start))
        home = self._partition[deviceid]
        for name, start, figures in out.closed:
            self._changed.add((deviceid, name, start))
            self._final[(deviceid, name, start)] = (home, figures)
        for name in out.too_late:
            self._late.add((TOO_LATE, deviceid, name))
        for name in out.ahead:
            self._late.add((AHEAD, deviceid, name))
        return out

    def _tick(self, partition: int, kafka_ms: int | None) -> int | None:
        """Move ``partition``'s clock to ``kafka_ms`` (never back); returns the clock."""
        now = self._clock.get(partition)
        if kafka_ms is not None and (now is None or kafka_ms > now):
            now = self._clock[partition] = kafka_ms
        return now

    def _moved(self, deviceid: str, home: int, partition: int) -> None:
        """A record of a device on another partition than its state's: counted and logged, no more (the
        state stays where it is: its windows' keys were written there)."""
        if self.metrics is not None:
            self.metrics.devices_moved.inc()
        rate_limited(log, "device-moved", 60.0).warning(
            "a device's records arrive on another input partition than its window state's: the processed "
            "topic gained partitions? that needs new aggregates topics (docs/aggregates.md, Not handled)",
            extra={"device": deviceid, "state_partition": home, "partition": partition})

    def expire(self) -> int:
        """Forget the idle devices of every partition whose sweep is due (at most once per
        :data:`SWEEP_EVERY_MS` of its clock); returns how many. Called at each commit, before
        :meth:`records` and :meth:`dirty` (so the final windows and the tombstones go in its transaction)."""
        if self.rule.idle_ms is None:
            return 0
        due = {p for p, now in self._clock.items() if now >= self._sweep_at.get(p, NEVER)}
        if not due:
            return 0
        idle = [d for d, p in self._partition.items()
                if p in due and self.rule.idle(self._devices[d].seen, self._clock[p])]
        for d in idle:
            self._forget(d)
        soonest = dict.fromkeys(due, NEVER)  # per partition: when the next of its devices falls idle
        for d, p in self._partition.items():
            if p in due:
                soonest[p] = min(soonest[p], self.rule.forget_at(self._devices[d].seen))
        for p, at in soonest.items():  # and a minute of its clock on at the soonest: a sweep is a scan
            self._sweep_at[p] = at if at == NEVER else max(at, self._clock[p] + SWEEP_EVERY_MS)
        if idle:
            rate_limited(log, "devices-forgotten", 60.0).info(
                "idle devices forgotten: their open windows final, their state deleted",
                extra={"devices": len(idle), "first": idle[0], "partitions": ",".join(map(str, sorted(due)))})
        return len(idle)

    def _forget(self, deviceid: str) -> None:
        """The device's open windows final, its pending counts kept for :meth:`records`, a tombstone for
        :meth:`dirty`; then nothing of it is left."""
        device = self._devices.pop(deviceid)
        partition = self._partition.pop(deviceid)
        closed = device.close_all()
        for name, start, figures in closed:
            self._changed.add((deviceid, name, start))
            self._final[(deviceid, name, start)] = (partition, figures)
        for kind, d, name in [k for k in self._late if k[1] == deviceid]:
            self._late.discard((kind, d, name))
            count = (device.too_late if kind == TOO_LATE else device.ahead)[name]
            self._gone_counts[(kind, d, name)] = (partition, count)
        self._dirty.discard(deviceid)
        self._forgotten[deviceid] = partition
        if self.metrics is not None:
            self.metrics.devices_forgotten.inc()
            self.metrics.closed.inc(len(closed))

    def records(self) -> list[tuple[int, str, bytes]]:
        """(partition, key, value) of every window and too-late count changed since :meth:`clean`: a
        window closed and then opened again (a forgotten device's, or one closed early by ``max_open``)
        gives its final record, then its open one."""
        out = []
        for deviceid, name, start in sorted(self._changed):
            key = window_key(deviceid, name, start)
            closed = self._final.get((deviceid, name, start))
            if closed is not None:
                out.append((closed[0], key, window_value(deviceid, name, start, self.rule, closed[1], True)))
            device = self._devices.get(deviceid)
            figures = None if device is None else device.open.get((name, start))
            if figures is not None:
                out.append((self._partition[deviceid], key,
                            window_value(deviceid, name, start, self.rule, figures, False)))
        counts = dict(self._gone_counts)
        for kind, deviceid, name in self._late:
            device = self._devices[deviceid]
            counts[(kind, deviceid, name)] = (self._partition[deviceid],
                                              (device.too_late if kind == TOO_LATE else device.ahead)[name])
        for (kind, deviceid, name), (partition, count) in sorted(counts.items()):
            out.append((partition, too_late_key(deviceid, name, kind),
                        too_late_value(deviceid, name, count, kind)))
        return out

    def open_windows(self) -> int:
        return sum(len(d.open) for d in self._devices.values())

    # -- the StateTable protocol ----------------------------------------------------------------------
    def dirty(self) -> list[tuple[int, str, bytes | None]]:
        """The state of every device changed since :meth:`clean`, and a tombstone (``None``) for every
        device forgotten since (unless it came back in the same partition: its new state supersedes)."""
        rule = [self.rule.size_ms, self.rule.lateness_ms]  # a restore under another rule is refused
        out: list[tuple[int, str, bytes | None]] = [
            (p, d, None) for d, p in self._forgotten.items() if self._partition.get(d) != p]
        out.extend((self._partition[d], d, _dumps({**self._devices[d].to_obj(), "rule": rule}))
                   for d in self._dirty)
        out.sort(key=lambda r: (r[1], r[2] is not None))  # a device's tombstone before its new state
        return out

    def clean(self) -> None:
        self._dirty.clear()
        self._changed.clear()
        self._final.clear()
        self._late.clear()
        self._forgotten.clear()
        self._gone_counts.clear()

    def load(self, partition: int, key: str, payload: bytes | None, record_ms: int = 0) -> None:
        if payload is None:
            if self._partition.get(key) == partition:  # not a moved device's state in another partition
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
        home = self._partition.get(key)
        if home is not None and home != partition:  # a state record in two partitions: it moved once
            self._moved(key, home, partition)
        device = self._devices[key] = DeviceWindows.from_obj(obj, record_ms or None)
        self._partition[key] = partition
        at = self.rule.forget_at(device.seen)
        self._sweep_at[partition] = min(self._sweep_at.get(partition, NEVER), at)

    def drop_partitions(self, partitions: set[int]) -> int:
        gone = {d for d, p in self._partition.items() if p in partitions}
        for d in gone:
            self._devices.pop(d, None)
            self._partition.pop(d, None)
            self._dirty.discard(d)
        self._final = {k: f for k, f in self._final.items() if f[0] not in partitions}
        # what is left to emit: the windows of the devices kept, and the final ones of the partitions kept
        self._changed = {c for c in self._changed if c[0] in self._devices or c in self._final}
        self._late = {k for k in self._late if k[1] not in gone}
        self._forgotten = {d: p for d, p in self._forgotten.items() if p not in partitions}
        self._gone_counts = {k: c for k, c in self._gone_counts.items() if c[0] not in partitions}
        for p in partitions:  # a restore starts the clock again from the records processed after it
            self._clock.pop(p, None)
            self._sweep_at.pop(p, None)
        return len(gone)

    def open_gaps(self) -> int:
        return 0  # windows have no seq gaps (the enricher's dedup counts those)
