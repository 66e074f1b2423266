"""Reading a topic for an operator: where to start (``--from``) and the records, read committed.

``--from`` is ``beginning``, ``end``, an offset (every partition from that offset; ``P:OFFSET`` for one
partition), a time (RFC 3339, ``2026-12-06T01:00:00Z``) or an age (``10m``, ``2h``, ``1d``: that long
ago). A time becomes each partition's first offset at or after it (Kafka's ``offsets_for_times``).
Reading stops at each partition's end as it was when the read began, unless ``follow``; or earlier, at
an ``until`` position (``--until`` of the audit: an offset, a time or an age, the same forms; a time
becomes each partition's first offset at or after it, which is read no more).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edgebridge.errors import EdgeBridgeError

__all__ = ["Position", "Record", "message_headers", "parse_position", "position_argument", "read"]

BEGINNING, END = "beginning", "end"
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# librdkafka's prefetch, per partition being fetched (it checks each partition's queue against the
# bound), in payload bytes; each queued record also pins its share of the fetch response it came in.
# Measured over 1,000,000 records of 4 partitions (bench/RESULTS.md, Audit memory): a reader that keeps
# nothing peaks at 128 MB with 8192, 78 MB with 2048, 57 MB with 1024. A full queue makes librdkafka
# wait fetch.queue.backoff.ms (1 s by default) before fetching that partition again, which with a
# small queue halves the read rate; 20 ms keeps it at full speed.
PREFETCH_KB = 1024
QUEUE_BACKOFF_MS = 20


@dataclass(frozen=True)
class Position:
    """Where a read starts: ``kind`` is beginning, end, offset or time (``value`` the offset or Unix ms)."""

    kind: str
    value: int = 0
    partition: int | None = None  # an offset of one partition only (``P:OFFSET``)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]  # the last value of each name (our headers are never repeated)

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("utf-8", "replace")


def message_headers(msg: Any) -> dict[str, bytes]:
    """A consumed message's headers by name (the last of a repeated name), each value as bytes."""
    pairs: Any = msg.headers() or ()  # a list of (name, value); the stubs say otherwise
    return {name: value.encode() if isinstance(value, str) else value or b"" for name, value in pairs}


def parse_position(text: str, now: float | None = None) -> Position:
    """``--from``'s argument; ``ValueError`` with what is accepted for anything else."""
    text = text.strip()
    if text in (BEGINNING, END):
        return Position(text)
    if re.fullmatch(r"\d+", text):
        return Position("offset", int(text))
    if re.fullmatch(r"\d+:\d+", text):
        partition, offset = text.split(":")
        return Position("offset", int(offset), int(partition))
    age = _AGE.match(text)
    if age:
        seconds = float(age.group(1)) * _UNIT[age.group(2)]
        return Position("time", int(((time.time() if now is None else now) - seconds) * 1000))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r}: expected beginning, end, an offset (N or PARTITION:N), an RFC 3339 "
                         "time (2026-12-06T01:00:00Z) or an age (90s, 10m, 2h, 1d)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # a time without a zone is UTC, as every time we write
    return Position("time", int(when.timestamp() * 1000))


def position_argument(text: str) -> Position:
    """:func:`parse_position` as an argparse ``type``: a bad position is a usage error."""
    import argparse

    try:
        return parse_position(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def read(client: Mapping[str, Any], topic: str, start: Position, *, follow: bool = False,
         stop: Any = None, idle: float = 10.0, until: Position | None = None) -> Iterator[Record]:
    """The committed records of ``topic`` from ``start``, partition by partition in arrival order.

    Without ``follow`` the read ends at each partition's high watermark taken when it began (a topic
    being written is read to a fixed point); ``idle`` seconds without progress end it too (a
    transaction left open holds a read_committed reader at its last stable offset). With ``follow`` it
    goes on until ``stop`` (an object with ``is_set()``) is set. ``client``: librdkafka settings
    (``KafkaSettings.client_config``).
    """
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

    consumer = Consumer({
        # librdkafka prefetches up to 64 MB a partition by default: a reader of a whole topic would hold
        # that much for nothing (the Python side takes 500 records at a time); the passthrough may say
        # otherwise
        "queued.max.messages.kbytes": PREFETCH_KB,
        "fetch.queue.backoff.ms": QUEUE_BACKOFF_MS,
        **client,
        "group.id": f"edgebridge-ops-{uuid.uuid4().hex[:8]}",  # never committed: no group is left behind
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    })
    try:
        meta = consumer.list_topics(topic, timeout=15).topics.get(topic)
        if meta is None or (meta.error is not None and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            raise EdgeBridgeError(f"topic {topic!r} does not exist")
        if meta.error is not None:  # not authorised to describe it, ...
            raise EdgeBridgeError(f"topic {topic!r}: {meta.error.str()}")
        partitions = sorted(meta.partitions)
        if start.partition is not None and start.partition not in partitions:
            raise EdgeBridgeError(f"topic {topic!r} has no partition {start.partition} "
                                  f"(it has {len(partitions)})")
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1]
                for p in partitions}
        chosen = [p for p in partitions if start.partition is None or p == start.partition]
        if until is not None and not follow:
            ends = _until(consumer, topic, until, ends)
        if start.kind == BEGINNING:
            assignment = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in chosen]
        elif start.kind == END:
            assignment = [TopicPartition(topic, p, OFFSET_END) for p in chosen]
        elif start.kind == "offset":
            assignment = [TopicPartition(topic, p, start.value) for p in chosen]
        else:
            found = consumer.offsets_for_times([TopicPartition(topic, p, start.value) for p in chosen],
                                               timeout=15)
            # -1: nothing at or after that time in this partition; start at its end
            assignment = [TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                          for tp in found]
        consumer.assign(assignment)
        pending = {p for p in chosen if ends[p] > 0} if not follow else set(chosen)
        if start.kind == END and not follow:
            pending = set()
        last_progress = time.monotonic()
        while follow or pending:
            if stop is not None and stop.is_set():
                return
            for msg in consumer.consume(500, 0.2):
                error = msg.error()
                partition = msg.partition() or 0
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(partition)
                    elif error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        raise EdgeBridgeError(f"topic {topic!r}: {error}")
                    continue
                last_progress = time.monotonic()
                offset = msg.offset() or 0
                if not follow and offset >= ends[partition]:
                    pending.discard(partition)
                    continue
                ts_type, ts = msg.timestamp()
                yield Record(msg.topic() or topic, partition, offset, ts if ts_type else None, msg.key(),
                             msg.value(), message_headers(msg))
            if not follow:
                for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
                    if tp.offset >= ends[tp.partition]:
                        pending.discard(tp.partition)
                if time.monotonic() - last_progress > idle:
                    return
    finally:
        consumer.close()


def _until(consumer: Any, topic: str, until: Position, ends: dict[int, int]) -> dict[int, int]:
    """Each partition's end (exclusive) cut at ``until``: an offset, or the first offset at a time."""
    from confluent_kafka import TopicPartition

    if until.kind == END:
        return ends
    if until.kind == BEGINNING:
        return dict.fromkeys(ends, 0)
    if until.kind == "offset":
        return {p: min(end, until.value) if until.partition in (None, p) else end for p, end in ends.items()}
    found = consumer.offsets_for_times([TopicPartition(topic, p, until.value) for p in ends], timeout=15)
    # -1: nothing at or after that time in the partition; all of it is before
    return {tp.partition: min(ends[tp.partition], tp.offset) if tp.offset >= 0 else ends[tp.partition]
            for tp in found}
