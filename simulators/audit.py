"""Per (device, epoch) accounting of a topic: what arrived, what twice, what is missing, what is explained.

This is the arithmetic of guarantees 1 and 2: for every device and every epoch of it (one life of its
outbox: a device whose state dir is wiped starts a new epoch with seqs from 1 again; events without the
attribute are the legacy epoch ``""``), the seqs ``1..max`` must each be either present or inside a range
announced by an ``edgebridge.gap.v1`` event of that epoch. ``iot.events.raw`` may hold duplicates
(at-least-once upstream); ``iot.events.processed`` must not.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from edgebridge.envelope import GAP_TYPE

__all__ = [
    "DeviceAudit", "KafkaRecord", "audit_records", "format_table", "read_records", "read_topic", "seq_ranges",
]


@dataclass
class DeviceAudit:
    """One epoch of one device (``epoch`` ``""``: events without the attribute)."""

    device: str
    epoch: str = ""
    records: int = 0
    distinct: int = 0
    duplicates: int = 0
    max_seq: int = 0
    announced: list[tuple[int, int]] = field(default_factory=list)  # gap ranges, inclusive
    missing: list[tuple[int, int]] = field(default_factory=list)  # unexplained holes, inclusive

    @property
    def complete(self) -> bool:
        return not self.missing


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def audit_records(
    values: Iterable[bytes], expected_max: Mapping[str, int] | None = None
) -> dict[tuple[str, str], DeviceAudit]:
    """Audit event payloads (single events, as the bridge writes them) per (device, epoch): by device,
    then its epochs in the order of their first record (its lives in order).

    ``expected_max`` names the last seq each device is known to have produced (the demo knows it) in its
    latest epoch: the epoch of the device's last record in ``values`` (a device's records share a
    partition, so that is its current life). If it did not reach it, the tail is missing; a device with
    no record at all is audited under the legacy epoch ``""``.
    """
    seen: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    announced: dict[tuple[str, str], set[int]] = defaultdict(set)
    ranges: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    latest: dict[str, str] = {}  # device -> the epoch of its last record
    order: dict[tuple[str, str], int] = {}  # (device, epoch) -> its first record's index: lives in order
    for value in values:
        event = orjson.loads(value)
        device, seq = event["deviceid"], event["seq"]
        key = (device, event.get("epoch") or "")
        latest[device] = key[1]
        order.setdefault(key, len(order))
        seen[key][seq] += 1
        if event.get("type") == GAP_TYPE:
            first, last = event["data"]["first"], event["data"]["last"]
            ranges[key].append((first, last))
            announced[key].update(range(first, last + 1))
    expected = {(d, latest.get(d, "")): n for d, n in (expected_max or {}).items()}
    out = {}
    for key in sorted(set(seen) | set(expected), key=lambda k: (k[0], order.get(k, len(order)))):
        counts = seen[key]
        top = max([*counts, expected.get(key, 0)], default=0)
        holes = set(range(1, top + 1)) - set(counts) - announced[key]
        out[key] = DeviceAudit(
            device=key[0],
            epoch=key[1],
            records=sum(counts.values()),
            distinct=len(counts),
            duplicates=sum(counts.values()) - len(counts),
            max_seq=top,
            announced=sorted(ranges[key]),
            missing=seq_ranges(holes),
        )
    return out


class KafkaRecord(NamedTuple):
    """One record as :func:`read_records` returns it; ``headers`` as Kafka holds them, in order."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


def read_topic(bootstrap: str, topic: str, *, idle: float = 3.0, timeout: float = 120.0,
               settings: Mapping[str, Any] | None = None) -> list[bytes]:
    """The values of :func:`read_records` (a tombstone as ``b""``)."""
    records = read_records(bootstrap, topic, idle=idle, timeout=timeout, settings=settings)
    return [r.value or b"" for r in records]


def read_records(
    bootstrap: str, topic: str, *, idle: float = 3.0, timeout: float = 120.0,
    settings: Mapping[str, Any] | None = None,
) -> list[KafkaRecord]:
    """Every committed record of ``topic`` from the beginning up to its end when called.

    "Its end when called": each partition's high watermark, taken first, so a topic that is still being
    written (a live pipeline) is read to a fixed point instead of chasing its tail. A partition is done
    when the consumer's position reaches that offset (read_committed positions step over transaction
    markers and aborted records) or at end of partition; ``idle`` seconds without progress, or
    ``timeout``, end the read early. ``settings``: further librdkafka settings (SASL, TLS).
    """
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"audit-{uuid.uuid4().hex[:8]}",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        **(settings or {}),
    })
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        watermarks = consumer.get_watermark_offsets
        ends = {p: watermarks(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in pending])
        records: list[KafkaRecord] = []
        last_progress = time.monotonic()
        deadline = last_progress + timeout
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                error = msg.error()
                partition = msg.partition() or 0
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(partition)
                    continue
                last_progress = time.monotonic()
                offset = msg.offset() or 0
                if offset < ends[partition]:
                    headers = _headers(msg.headers())
                    records.append(KafkaRecord(partition, offset, msg.key(), msg.value(), headers))
            for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
                if tp.offset >= ends[tp.partition]:
                    pending.discard(tp.partition)
            if time.monotonic() - last_progress > idle:
                break
        return records
    finally:
        consumer.close()


def _headers(headers: Any) -> list[tuple[str, bytes | None]]:
    return [(name, value.encode() if isinstance(value, str) else value) for name, value in headers or ()]


def format_table(audits: Mapping[tuple[str, str], DeviceAudit]) -> str:
    """One row per (device, epoch); the legacy epoch shows as ``-``."""
    lines = [f"{'device':<16} {'epoch':<16} {'records':>8} {'distinct':>8} {'dups':>6} {'max seq':>8} "
             f"{'gaps announced':<18} missing"]
    for a in audits.values():
        gaps = ",".join(f"{x}-{y}" for x, y in a.announced) or "-"
        missing = ",".join(f"{x}-{y}" for x, y in a.missing[:5]) or "none"
        lines.append(f"{a.device:<16} {a.epoch or '-':<16} {a.records:>8} {a.distinct:>8} {a.duplicates:>6} "
                     f"{a.max_seq:>8} {gaps:<18} {missing}")
    return "\n".join(lines)
