"""Per-device accounting of a Kafka topic: what arrived, what twice, what is missing, what is explained.

This is the arithmetic of guarantees 1 and 2: for every device, the seqs ``1..max`` must each be either
present or inside a range announced by an ``edgebridge.gap.v1`` event. ``iot.events.raw`` may hold
duplicates (at-least-once upstream); ``iot.events.processed`` must not.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from edgebridge.envelope import GAP_TYPE

__all__ = ["DeviceAudit", "audit_records", "format_table", "read_topic"]


@dataclass
class DeviceAudit:
    device: str
    records: int = 0
    distinct: int = 0
    duplicates: int = 0
    max_seq: int = 0
    announced: list[tuple[int, int]] = field(default_factory=list)  # gap ranges, inclusive
    missing: list[tuple[int, int]] = field(default_factory=list)  # unexplained holes, inclusive

    @property
    def complete(self) -> bool:
        return not self.missing


def _ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def audit_records(
    values: Iterable[bytes], expected_max: dict[str, int] | None = None
) -> dict[str, DeviceAudit]:
    """Audit event payloads (single events, as the bridge writes them) per device.

    ``expected_max`` names the last seq each device is known to have produced (the demo knows it); a
    device that should have reached it but did not gets the tail as missing.
    """
    seen: dict[str, Counter[int]] = defaultdict(Counter)
    announced: dict[str, set[int]] = defaultdict(set)
    ranges: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for value in values:
        event = orjson.loads(value)
        device, seq = event["deviceid"], event["seq"]
        seen[device][seq] += 1
        if event.get("type") == GAP_TYPE:
            first, last = event["data"]["first"], event["data"]["last"]
            ranges[device].append((first, last))
            announced[device].update(range(first, last + 1))
    out = {}
    for device in sorted(set(seen) | set(expected_max or {})):
        counts = seen[device]
        top = max([*counts, (expected_max or {}).get(device, 0)], default=0)
        holes = set(range(1, top + 1)) - set(counts) - announced[device]
        out[device] = DeviceAudit(
            device=device,
            records=sum(counts.values()),
            distinct=len(counts),
            duplicates=sum(counts.values()) - len(counts),
            max_seq=top,
            announced=sorted(ranges[device]),
            missing=_ranges(holes),
        )
    return out


def read_topic(bootstrap: str, topic: str, *, idle: float = 3.0, timeout: float = 120.0) -> list[bytes]:
    """Every committed record of ``topic`` from the beginning up to its end when called."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"audit-{uuid.uuid4().hex[:8]}",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    })
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        values: list[bytes] = []
        at_eof: set[int] = set()
        last_data = time.monotonic()
        deadline = last_data + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                if len(at_eof) == len(partitions) or time.monotonic() - last_data > idle:
                    break
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_eof.add(msg.partition() or 0)
                    if len(at_eof) == len(partitions):
                        break
                continue
            at_eof.discard(msg.partition() or 0)
            last_data = time.monotonic()
            values.append(msg.value() or b"")
        return values
    finally:
        consumer.close()


def format_table(audits: dict[str, DeviceAudit]) -> str:
    lines = [f"{'device':<16} {'records':>8} {'distinct':>8} {'dups':>6} {'max seq':>8} "
             f"{'gaps announced':<18} missing"]
    for a in audits.values():
        gaps = ",".join(f"{x}-{y}" for x, y in a.announced) or "-"
        missing = ",".join(f"{x}-{y}" for x, y in a.missing[:5]) or "none"
        lines.append(f"{a.device:<16} {a.records:>8} {a.distinct:>8} {a.duplicates:>6} {a.max_seq:>8} "
                     f"{gaps:<18} {missing}")
    return "\n".join(lines)
