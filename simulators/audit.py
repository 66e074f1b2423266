"""Reading a whole topic for the simulators and the tests, and the audit of what was read.

The audit's arithmetic (per device and epoch: present, duplicated, announced by a gap event, missing)
is :mod:`edgebridge.ops.tally`'s, shared with ``edgebridge audit``; it is re-exported here for the
demo and the tests that read a topic whole.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from edgebridge.ops.audit import format_table
from edgebridge.ops.tally import DeviceAudit, audit_records

__all__ = ["DeviceAudit", "KafkaRecord", "audit_records", "format_table", "read_records", "read_topic"]


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
