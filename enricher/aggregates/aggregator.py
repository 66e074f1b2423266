"""The aggregator: consume ``iot.events.processed``, update per-device windows, produce their figures,
all in Kafka transactions, on the enricher's machinery.

Delivery guarantee: every committed processed reading is applied to its windows exactly once, as read by
``read_committed`` consumers of ``iot.aggregates``, across kill -9, restarts and rebalances. How: the
window records, the window state (``iot.aggregates.state``, compacted, partition = input partition) and
the consumed offsets share one transaction: :class:`enricher.checkpoint.Checkpoint` with this table's
``emit`` hook; rebalances and restores are :class:`enricher.rebalance.Assignment` over a
:class:`enricher.state.StateStore` of the state topic. A crash leaves the whole transaction or none of
it, and the restart resumes from the committed offsets with the committed windows.

What is read: processed readings (``edgebridge.reading.processed.v1``), their ``data.readings`` values
that are numbers (int or float; strings and booleans are skipped), at the event's ``time``. Other
events (gap events, a deployment's own types passed through) are skipped. A record the envelope
decoder refuses is a dead letter with the decoder's reason (``dlq_component=aggregator``).

The loop body, in order: consume up to the next commit deadline; take the outcome of the commit in
flight; apply each record; when due, hand the commit over (``emit`` produces the changed windows first).
The loop is :class:`enricher.transactional_loop.TransactionalLoop`, shared with the enricher.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Message, Producer
from prometheus_client import CollectorRegistry

from edgebridge import envelope
from edgebridge.deadletters import INTERNAL_ERROR
from edgebridge.errors import ConfigError, EnvelopeError
from edgebridge.kafka_ids import AGGREGATOR_STATE_READER_GROUP
from edgebridge.logs import rate_limited
from edgebridge.metrics import LoopProgress
from edgebridge.retry import StopEvent
from enricher.aggregates.metrics import AggregatorMetrics
from enricher.aggregates.table import WindowTable
from enricher.aggregates.windows import Number, aggregatable, epoch_ms
from enricher.checkpoint import AbortNeeded, Checkpoint, FatalKafkaError
from enricher.config import EXACTLY_ONCE_CONSUMER, EnricherConfig
from enricher.output import DEFAULT_MESSAGE_MAX_BYTES, Output
from enricher.processor import PROTECTED, producer_config
from enricher.rebalance import Assignment
from enricher.sinks.rows import MAX_BYTES  # a processed event: the sinks' limit, Kafka's default size
from enricher.state import StateStore
from enricher.transactional_loop import TransactionalLoop

__all__ = ["Aggregator", "Observation", "numeric_values", "observation"]

log = logging.getLogger(__name__)
_PROCESSED = envelope.PROCESSED_TYPE


@dataclass(frozen=True, slots=True)
class Observation:
    """One processed reading as the aggregator applies it."""

    deviceid: str
    time_ms: int
    values: dict[str, tuple[Number, str | None]]
    limit_ms: int | None  # past it: ahead
    cap_ms: int | None  # the watermark moves at most to it: when Kafka took the record


def observation(value: bytes | None, timestamp_ms: int | None,
                max_ahead_ms: int | None) -> Observation | None:
    """What the aggregator makes of one processed record (its loop, and ``aggregator check``'s
    recomputation): ``None`` for a record that is not a processed reading (skipped); raises
    :class:`EnvelopeError` for one the decoder refuses (a dead letter). ``timestamp_ms``: the record's
    Kafka timestamp, the clock bound (none for a record without one: 0, -1)."""
    event = envelope.decode(value or b"", max_bytes=MAX_BYTES, known_types=None)
    if event.type != _PROCESSED:
        return None
    time_ms = epoch_ms(envelope.parse_time(event.time))
    cap = timestamp_ms if timestamp_ms is not None and timestamp_ms > 0 else None
    limit = cap + max_ahead_ms if cap is not None and max_ahead_ms is not None else None
    return Observation(event.deviceid, time_ms, numeric_values(event.data), limit, cap)


def numeric_values(data: dict[str, Any]) -> dict[str, tuple[Number, str | None]]:
    """The processed readings that are numbers to aggregate (:func:`aggregatable`: a bool is not one, nor
    a magnitude past 1e200): measurement -> (value, unit)."""
    readings = data.get("readings")
    if not isinstance(readings, dict):
        return {}
    out: dict[str, tuple[Number, str | None]] = {}
    for name, reading in readings.items():
        if isinstance(reading, dict):
            value = reading.get("v")
            if aggregatable(value):
                unit = reading.get("u")
                out[name] = (value, unit if isinstance(unit, str) else None)
    return out


class Aggregator(TransactionalLoop):
    log = log
    missing_topic_hint = " (edgebridge topics create)"
    metrics: AggregatorMetrics

    def __init__(self, config: EnricherConfig, registry: CollectorRegistry | None = None) -> None:
        agg = config.aggregates
        self.config, self.settings, self.topics = config, agg, config.topics
        self.input = config.topics.processed
        self.metrics = AggregatorMetrics(registry)
        k = config.kafka
        plain = k.client_config({}, PROTECTED)
        self.consumer = Consumer(k.client_config({
            "group.id": agg.group_id, **EXACTLY_ONCE_CONSUMER, "group.instance.id": agg.instance_id,
            "error_cb": self._on_consumer_error,
        }, PROTECTED))
        settings = producer_config(config, agg.transactional_id)
        self.producer = Producer(settings)
        max_record = int(settings.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
        self.output = Output(agg.instance_id, max_record, component="aggregator")
        self.table = WindowTable(agg.rule, self.metrics)
        self.within = config.commit.transaction_timeout_ms / 1000
        self.state = StateStore(plain, self.topics.aggregates_state, self.within + 60,
                                group=AGGREGATOR_STATE_READER_GROUP)
        self.checkpoint = Checkpoint(self.producer, self.consumer, self.table, self.input,
                                     self.topics.aggregates_state, self.metrics, agg.commit_interval_ms,
                                     config.commit.max_messages, self.within, emit=self._emit)
        self.assignment = Assignment(self.consumer, self.input, self.checkpoint, self.table, self.state,
                                     self.metrics)
        self.ready = threading.Event()
        self.progress = LoopProgress(config.health_stall_after)

    # -- the hooks of the shared loop -------------------------------------------------------------------
    def _wait_for_kafka(self, stop: StopEvent) -> bool:
        # a stop that comes as the cluster answers: not started (nor "aggregator stopped" logged)
        return super()._wait_for_kafka(stop) and not stop.is_set()

    def _stopped(self) -> None:
        log.info("aggregator stopped", extra={"devices": len(self.table),
                                              "open_windows": self.table.open_windows()})

    def _check_partitions(self) -> int:
        t = self.topics
        parts = self._partitions(self.input, "topics.processed")
        for key, topic in (("topics.aggregates", t.aggregates),
                           ("topics.aggregates_state", t.aggregates_state)):
            n = self._partitions(topic, key)
            if n != parts:
                raise ConfigError(key, f"{topic!r} has {n} partitions, {self.input!r} has {parts}: they "
                                  "must be equal (input partition p writes their partition p)")
        return parts

    def _sweep_outputs(self, parts: int) -> dict[str, int]:
        t = self.topics
        outputs = {t.aggregates: parts, t.aggregates_state: parts}
        dlq = self._partitions(t.deadletter, "topics.deadletter", required=False)
        if dlq:
            outputs[t.deadletter] = dlq
        return outputs

    def _started(self, parts: int) -> None:
        rule = self.table.rule
        log.info("aggregator started", extra={
            "instance": self.settings.instance_id, "transactional_id": self.settings.transactional_id,
            "input": self.input, "output": self.topics.aggregates, "partitions": parts,
            "window_ms": rule.size_ms, "lateness_ms": rule.lateness_ms})

    def _closers(self) -> tuple[Callable[[], object], ...]:
        # the flush too: after a fatal producer error it raises, and would hide that error
        return (self.checkpoint.close, self.consumer.close, self.state.close, lambda: self.producer.flush(5))

    # -- the loop ---------------------------------------------------------------------------------------
    def _process(self, messages: list[Message]) -> None:
        cp, table, assigned = self.checkpoint, self.table, self.assignment.assigned
        max_ahead = self.settings.max_ahead_ms
        positions: dict[int, int] = {}
        consumed = 0
        try:
            for msg in messages:
                if msg.error() is not None:
                    self._consume_error(msg)
                    continue
                partition = msg.partition() or 0
                if partition not in assigned:
                    continue  # fetched before a revoke: no longer ours
                if not consumed:
                    cp.start()
                positions[partition] = (msg.offset() or 0) + 1
                consumed += 1
                try:
                    obs = observation(msg.value(), msg.timestamp()[1], max_ahead)
                    if obs is None:
                        self.metrics.skipped.inc()
                        continue
                    out = table.observe(obs.deviceid, partition, obs.time_ms, obs.values, obs.limit_ms,
                                        obs.cap_ms)
                except EnvelopeError as exc:
                    self._deadletter(msg, exc.reason, exc)
                    continue
                except (AbortNeeded, FatalKafkaError):
                    raise
                except Exception as exc:  # a bug, or an input no check foresaw: costs this record
                    rate_limited(log, "internal-error", 10.0).error(
                        "aggregating a record failed; dead-lettered", exc_info=True,
                        extra={"partition": partition, "offset": msg.offset()})
                    self._deadletter(msg, INTERNAL_ERROR, exc)
                    continue
                if out.too_late:
                    self.metrics.too_late.inc(len(out.too_late))
                if out.ahead:
                    self.metrics.ahead.inc(len(out.ahead))
                if out.closed:
                    self.metrics.closed.inc(len(out.closed))
        finally:
            cp.consumed(positions, consumed)
        self.metrics.open_windows.set(table.open_windows())

    def _emit(self, cp: Checkpoint) -> None:
        """Step 1a of the commit: the figures of every window changed in this transaction."""
        topic = self.topics.aggregates
        self.table.expire()  # idle devices: their windows final below, their tombstones after
        for partition, key, value in self.table.records():
            cp.produce("aggregates", topic, value, key.encode(), partition=partition)


def with_metrics_port(config: EnricherConfig) -> EnricherConfig:
    """The configuration with ``[metrics] port`` = ``[aggregates] metrics_port`` (beside the enricher)."""
    return dataclasses.replace(config, metrics=dataclasses.replace(
        config.metrics, port=config.aggregates.metrics_port))
