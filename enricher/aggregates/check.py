"""The aggregates checked against a recomputation from ``iot.events.processed``: ``aggregator check``.

What it proves: every window and every too-late and ahead count in ``iot.aggregates`` (the latest record
of each key: the topic is compacted, the latest record is the answer) equals what the window rule gives
when it is applied once to every committed processed record, per device in partition order. A window
lost (a transaction's records missing), applied twice (a replay after a crash counted again) or forged
shows as *missing*, *extra* or *different*.

How: the rule is not rewritten here. Each processed record goes through what the aggregator does with
it (:func:`~enricher.aggregates.aggregator.observation`: the decoder, the numbers, the clock bound from
the record's Kafka timestamp) into the aggregator's own :class:`~enricher.aggregates.table.WindowTable`
(windows, lateness, bounds, idle devices forgotten), and the records that table emits, the latest per
key, are what the topic must hold. So the check proves the pipeline (nothing lost, nothing applied
twice, nothing forged), not the rule: ``tests/enricher/test_aggregates.py`` checks the rule against a
recomputation of its own. One difference it can show that is not a fault: a device that falls idle
within the last minute of a partition's clock may be forgotten by one and not yet by the other.

Memory: both topics are read streaming, but every window ever recomputed and the latest record of every
aggregates key are kept until the comparison: memory grows with the windows in the topics, not bounded.
The figures are exact only once the aggregator has caught up with the processed topic: a window it has
not applied yet is missing or different (:attr:`CheckResult.behind` says how far it was).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from edgebridge.ops.reading import BEGINNING, Position, Record, read
from enricher.aggregates.aggregator import Observation, observation
from enricher.aggregates.config import AggregateSettings
from enricher.aggregates.table import AHEAD, TOO_LATE, WINDOW, WindowTable

__all__ = ["FIELDS", "CheckResult", "Difference", "Recomputation", "check", "compare", "recompute"]

# the figures compared, in this order; the mean within MEAN_TOLERANCE (a sum of floats in another order
# differs in its last bits), the others exactly (they are the readings' own values)
FIELDS = ("kind", "count", "min", "max", "mean", "last", "final")
MEAN_TOLERANCE = 1e-9


@dataclass
class Recomputation:
    """The aggregator's table fed every processed record once, in order, and the records it emitted:
    the latest of each key is what ``iot.aggregates`` must hold last."""

    table: WindowTable
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)
    records: int = 0  # processed records read
    skipped: int = 0  # not applied at all: not a processed reading, or refused by the decoder
    ends: dict[int, int] = field(default_factory=dict)  # partition -> offset after its last record read

    def add(self, partition: int, obs: Observation) -> None:
        self.devices.add(obs.deviceid)
        self.table.observe(obs.deviceid, partition, obs.time_ms, obs.values, obs.limit_ms, obs.cap_ms)
        # the aggregator forgets idle devices at its commits; here after each record: a device is
        # forgotten by the same rule either way (its own next record checks it exactly), only sooner
        self.table.expire()
        for _, key, value in self.table.records():
            self.expected[key] = orjson.loads(value)
        self.table.clean()


def recompute(records: Iterable[Record], settings: AggregateSettings) -> Recomputation:
    """The rule applied to processed ``records`` (each partition's in offset order: a device's records
    are in one partition, keyed by its id, so that is its order)."""
    result = Recomputation(WindowTable(settings.rule))
    for record in records:
        result.records += 1
        result.ends[record.partition] = max(result.ends.get(record.partition, 0), record.offset + 1)
        try:
            obs = observation(record.value, record.timestamp_ms, settings.max_ahead_ms)
        except Exception:  # refused by the decoder, or an input no check foresaw: the aggregator
            obs = None  # dead-letters these, never applied
        if obs is None:
            result.skipped += 1
        else:
            result.add(record.partition, obs)
    return result


@dataclass(frozen=True)
class Difference:
    kind: str  # missing (recomputed, not in the topic), extra (in the topic only), different
    key: str
    field: str | None = None  # different: the first figure that differs
    topic: Any = None  # the topic's value of it (missing: None)
    recomputed: Any = None  # the recomputation's (extra: None)


@dataclass
class CheckResult:
    windows: int  # window records of the topic (latest per key, in scope)
    counts: int  # too-late and ahead records of the topic
    processed: int  # processed records read
    devices: int  # devices recomputed
    differences: list[Difference]
    # processed records the aggregator's group had not committed when the check began (None: unknown);
    # above 0, differences may be windows it had not applied yet rather than wrong ones
    behind: int | None = None

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        kinds = [d.kind for d in self.differences]
        return {"ok": self.ok, "windows": self.windows, "counts": self.counts, "records": self.processed,
                "devices": self.devices, "behind": self.behind, "missing": kinds.count("missing"),
                "extra": kinds.count("extra"), "different": kinds.count("different"),
                "differences": [vars(d) for d in self.differences]}


def _differs(name: str, topic: Any, want: Any) -> bool:
    if name == "mean" and isinstance(topic, int | float) and isinstance(want, int | float):
        return not math.isclose(topic, want, rel_tol=MEAN_TOLERANCE, abs_tol=MEAN_TOLERANCE)
    # JSON keeps ints and floats apart but a window's min of 3 and 3.0 are one reading: compare as numbers
    return bool(topic != want) or isinstance(topic, bool) != isinstance(want, bool)


def compare(latest: Mapping[str, Any], expected: Mapping[str, dict[str, Any]]) -> list[Difference]:
    """The topic's latest value per key (parsed JSON, or ``None`` for a value that is not) against the
    recomputation's, in key order."""
    out: list[Difference] = []
    for key in sorted(set(latest) | set(expected)):
        got, want = latest.get(key), expected.get(key)
        if want is None:
            out.append(Difference("extra", key, topic=got))
        elif key not in latest:
            out.append(Difference("missing", key, recomputed=want))
        elif not isinstance(got, dict):
            out.append(Difference("different", key, "value", got, want))
        else:
            for name in FIELDS:
                if name in want and _differs(name, got.get(name), want[name]):
                    out.append(Difference("different", key, name, got.get(name), want[name]))
                    break
    return out


def latest_records(records: Iterable[Record]) -> dict[str, Any]:
    """The latest value of each key (a tombstone deletes it), parsed; ``None`` for one that is not JSON."""
    latest: dict[str, Any] = {}
    for record in records:
        if record.key is None:
            continue
        key = record.key.decode("utf-8", "replace")
        if record.value is None:
            latest.pop(key, None)
            continue
        try:
            latest[key] = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            latest[key] = None
    return latest


def committed_offsets(client: Mapping[str, Any], group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets of ``topic`` per partition (0 where it has none). Read without
    joining the group (no subscribe): the aggregator is not disturbed."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**client, "group.id": group, "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=15).topics[topic]
        parts = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        return {tp.partition: max(0, tp.offset) for tp in consumer.committed(parts, timeout=15)}
    finally:
        consumer.close()


def check(client: Mapping[str, Any], processed: str, aggregates: str, settings: AggregateSettings,
          device: Callable[[str], bool] | None = None, start: Position | None = None,
          group: str | None = None) -> CheckResult:
    """Read ``processed`` (read committed) and ``aggregates`` (latest per key), compare.

    ``device``: only the devices it accepts (a processed record's key is its device id; an aggregates
    key starts with it and a ``/``). ``start``: where the processed read starts (the beginning, unless
    retention has deleted it: then windows of the deleted records show as extra). ``group``: the
    aggregator's consumer group, whose committed offsets, taken before anything is read, say whether it
    had applied every processed record read (:attr:`CheckResult.behind`): the aggregator commits its
    offsets in the transaction of its records, so when it had, the aggregates read after hold them all.
    """
    committed: dict[int, int] | None = None
    if group is not None:
        try:
            committed = committed_offsets(client, group, processed)
        except Exception:  # not allowed to describe the group, ...: the check itself still holds
            committed = None
    records: Iterable[Record] = read(client, processed, start or Position(BEGINNING))
    if device is not None:
        records = (r for r in records if r.key is not None and device(r.key.decode("utf-8", "replace")))
    recomputed = recompute(records, settings)
    stored: Iterable[Record] = read(client, aggregates, Position(BEGINNING))
    if device is not None:
        stored = (r for r in stored if r.key is not None
                  and device(r.key.decode("utf-8", "replace").split("/", 1)[0]))
    latest = latest_records(stored)
    kinds = [v.get("kind") if isinstance(v, dict) else None for v in latest.values()]
    return CheckResult(windows=kinds.count(WINDOW), counts=kinds.count(TOO_LATE) + kinds.count(AHEAD),
                       processed=recomputed.records, devices=len(recomputed.devices),
                       differences=compare(latest, recomputed.expected),
                       behind=None if committed is None else sum(
                           max(0, end - committed.get(p, 0)) for p, end in recomputed.ends.items()))
