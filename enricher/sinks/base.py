"""The sink loop and the store protocol (see the package docstring for the guarantee)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition

from edgebridge.envelope import PROCESSED_TYPE
from edgebridge.retry import StopEvent
from edgebridge.settings import KafkaSettings, LogSettings
from edgebridge.topics import KafkaTopics
from enricher.config import EXACTLY_ONCE_CONSUMER

__all__ = ["Row", "SinkConfig", "SinkRunner", "Store", "row_of"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SinkConfig:
    group_id: str = "edgebridge-sink"
    # static group membership: a restarted sink gets its partitions back at once (no session timeout)
    instance_id: str | None = None
    batch_max: int = 2000
    batch_ms: int = 200
    topics: KafkaTopics = field(default_factory=KafkaTopics)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    log: LogSettings = field(default_factory=LogSettings)


class Row(NamedTuple):
    event_id: str
    device_id: str
    seq: int
    time: str
    site: str | None
    location: str | None
    late: int
    flags: str  # JSON array
    readings: str  # JSON object
    derived: str  # JSON object
    processed_at: str | None


def row_of(value: bytes) -> Row | None:
    """The row of a processed reading; ``None`` for what is not one (gap events, foreign records)."""
    try:
        e = orjson.loads(value)
        if e.get("type") != PROCESSED_TYPE:
            return None
        d = e["data"]
        device = d.get("device", {})
        return Row(e["id"], e["deviceid"], int(e["seq"]), e["time"], device.get("site"),
                   device.get("location"),
                   int(bool(d.get("late"))), orjson.dumps(d.get("flags", [])).decode(),
                   orjson.dumps(d.get("readings", {})).decode(), orjson.dumps(d.get("derived", {})).decode(),
                   d.get("processtime"))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


class Store(Protocol):
    def offsets(self, topic: str) -> dict[int, int]:
        """The next offset to read per partition, as last stored."""
        ...

    def write(self, rows: list[Row], topic: str, offsets: dict[int, int]) -> int:
        """Insert ``rows`` (ignoring known event ids) and store ``offsets``, in one transaction; returns
        the number of rows actually inserted."""
        ...

    def close(self) -> None: ...


class SinkRunner:
    def __init__(self, config: SinkConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.topic = config.topics.processed
        self.written = 0
        self.skipped = 0
        self.consumer = Consumer(config.kafka.client_config({
            "group.id": config.group_id,
            **EXACTLY_ONCE_CONSUMER,
            **({"group.instance.id": config.instance_id} if config.instance_id else {}),
        }, ("isolation.level", "enable.auto.commit")))

    def run(self, stop: StopEvent) -> None:
        self.consumer.subscribe([self.topic], on_assign=self._on_assign)
        try:
            while not stop.is_set():
                batch = self.consumer.consume(self.config.batch_max, self.config.batch_ms / 1000)
                self._write(batch)
        finally:
            self.consumer.close()
            self.store.close()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stored = self.store.offsets(self.topic)
        for tp in partitions:
            if tp.partition in stored:
                tp.offset = stored[tp.partition]
        consumer.incremental_assign(partitions)
        log.info("sink assigned, resuming at stored offsets", extra={
            "offsets": ",".join(f"{tp.partition}:{tp.offset}" for tp in partitions)})

    def _write(self, batch: list[Any]) -> None:
        rows: list[Row] = []
        offsets: dict[int, int] = {}
        for msg in batch:
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error", extra={"error": str(msg.error())})
                continue
            offsets[msg.partition()] = msg.offset() + 1
            row = row_of(msg.value() or b"")
            if row is None:
                self.skipped += 1
            else:
                rows.append(row)
        if offsets:
            self.written += self.store.write(rows, self.topic, offsets)
