"""The sink loop and the store protocol (see the package docstring for the guarantee)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, TopicPartition

from edgebridge.deadletters import INTERNAL_ERROR
from edgebridge.errors import ConfigError, EdgeBridgeError, EnvelopeError
from edgebridge.kafka_ids import SINK_GROUP
from edgebridge.logs import rate_limited
from edgebridge.metrics import LoopProgress
from edgebridge.retry import StopEvent
from edgebridge.settings import KafkaSettings, LogSettings, MetricsConfig
from edgebridge.topics import KafkaTopics
from enricher.checkpoint import FATAL, classify
from enricher.config import EXACTLY_ONCE_CONSUMER
from enricher.sinks.quarantine import Batch, Origin
from enricher.sinks.rows import BAD_ROW, BadRow, aggregate_row_of, row_of

__all__ = ["SinkConfig", "SinkFatalError", "SinkRunner", "Store"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SinkConfig:
    group_id: str = SINK_GROUP
    # static group membership: a restarted sink gets its partitions back at once (no session timeout)
    instance_id: str | None = None
    batch_max: int = 2000
    batch_ms: int = 200
    # /healthz answers 503 once the loop has been inside one turn (a consume, a database write) this long
    stall_after: float = 60.0
    # also iot.aggregates (topics.aggregates, the aggregator's windows) into the table aggregates
    aggregates: bool = False
    topics: KafkaTopics = field(default_factory=KafkaTopics)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def validate(self) -> None:
        if not self.stall_after > 0:
            raise ConfigError("stall_after", "must be > 0")


class Store(Protocol):
    def offsets(self, topic: str) -> dict[int, int]:
        """The next offset to read per partition, as last stored."""
        ...

    def write(self, batch: Batch) -> int:
        """In one transaction: insert the batch's rows (ignoring known event ids; a row the database
        refuses joins ``batch.quarantined``), the quarantined records and the offsets. Returns the
        number of rows actually inserted."""
        ...

    def close(self) -> None: ...


class SinkFatalError(EdgeBridgeError):
    """The consumer cannot go on (fenced as a static member, say): the process exits for a restart."""


class SinkRunner:
    def __init__(self, config: SinkConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.topic = config.topics.processed
        self.aggregates_topic = config.topics.aggregates if config.aggregates else None
        self.written = 0
        self.skipped = 0  # valid events that are not rows (gap events)
        self.quarantined = 0
        self.progress = LoopProgress(config.stall_after)  # /healthz: 503 while a turn takes too long
        self.consumer = Consumer(config.kafka.client_config({
            "group.id": config.group_id,
            **EXACTLY_ONCE_CONSUMER,
            **({"group.instance.id": config.instance_id} if config.instance_id else {}),
            "error_cb": self._on_error,
        }, ("isolation.level", "enable.auto.commit")))
        self._fatal: KafkaError | None = None

    def run(self, stop: StopEvent) -> None:
        topics = [self.topic] + ([self.aggregates_topic] if self.aggregates_topic else [])
        self.consumer.subscribe(topics, on_assign=self._on_assign)
        try:
            while not stop.is_set():
                self.progress.turn()
                batch = self.consumer.consume(self.config.batch_max, self.config.batch_ms / 1000)
                self._write(batch)
                if self._fatal is not None:
                    raise SinkFatalError(f"consumer: {self._fatal}")
        finally:
            self.consumer.close()
            self.store.close()

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka's ``error_cb``, served inside ``consume()``. A fatal consumer error (a static member
        fenced when its coordinator's node died: seen for the enricher on a three-node cluster) may come
        only this way; unseen, the sink would turn on as a member of no group, healthy and idle, its
        partitions written by nobody. Exiting lets the supervisor restart it, resuming at its stored
        offsets."""
        if classify(error) == FATAL:
            self._fatal = self._fatal or error
        else:
            rate_limited(log, ("kafka-error", error.code()), 30.0).warning(
                "kafka client error", extra={"error": str(error)})

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stored = {topic: self.store.offsets(topic) for topic in {tp.topic for tp in partitions}}
        for tp in partitions:
            if tp.partition in stored[tp.topic]:
                tp.offset = stored[tp.topic][tp.partition]
        consumer.incremental_assign(partitions)
        log.info("sink assigned, resuming at stored offsets", extra={
            "offsets": ",".join(f"{tp.partition}:{tp.offset}" if tp.topic == self.topic
                                else f"{tp.topic}/{tp.partition}:{tp.offset}" for tp in partitions)})

    def _write(self, messages: list[Any]) -> None:
        """Each record becomes a row, nothing (not a reading) or a quarantined record: one record
        costs one record, never the stream. Then one transaction per topic for its rows and offsets."""
        batches = {self.topic: Batch(self.topic)}
        if self.aggregates_topic:
            batches[self.aggregates_topic] = Batch(self.aggregates_topic, table="aggregates")
        for msg in messages:
            error = msg.error()
            if error is not None:
                if classify(error) == FATAL:  # after the rows so far: they and their offsets go in first
                    self._fatal = self._fatal or error
                elif error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error", extra={"error": str(error)})
                continue
            origin = Origin(msg.partition(), msg.offset(), msg.key(), msg.value() or b"")
            batch = batches[msg.topic()]
            batch.offsets[origin.partition] = origin.offset + 1
            try:
                row = (aggregate_row_of(origin.key, origin.value) if batch.table == "aggregates"
                       else row_of(origin.value))
            except EnvelopeError as exc:
                batch.quarantine(origin, exc.reason, exc)
                continue
            except BadRow as exc:
                batch.quarantine(origin, BAD_ROW, exc)
                continue
            except Exception as exc:  # a bug, or an input no check foresaw
                rate_limited(log, "internal-error", 10.0).error(
                    "making a row failed; quarantined", exc_info=True,
                    extra={"partition": origin.partition, "offset": origin.offset})
                batch.quarantine(origin, INTERNAL_ERROR, exc)
                continue
            if row is None:
                self.skipped += 1
            else:
                batch.add(row, origin)
        for batch in batches.values():
            if batch.offsets:
                self._store(batch)

    def _store(self, batch: Batch) -> None:
        self.written += self.store.write(batch)
        if batch.quarantined:
            self.quarantined += len(batch.quarantined)
            first = batch.quarantined[0]
            rate_limited(log, "quarantined", 10.0).warning(
                "records quarantined", extra={"count": len(batch.quarantined), "reason": first.reason,
                                              "partition": first.original_partition,
                                              "offset": first.original_offset})
