"""The enricher's core: consume ``iot.events.raw``, run the pipeline, produce, all in Kafka transactions.

Delivery guarantee: each (device id, seq) of the raw topic appears once in ``iot.events.processed`` as
read by ``read_committed`` consumers (or once in the dead letters), across kill -9, restarts and
rebalances. How: outputs, dedup state and consumed offsets share one transaction (the commit order is in
:mod:`enricher.checkpoint`); the dedup state drops what an at-least-once upstream sent twice.

Rebalancing is cooperative-sticky (:mod:`enricher.rebalance`): commit on revoke, abort on lost, wait for
stable offsets and restore the dedup state on assign.

Fairness between partitions: ``consume()`` hands out fetched batches in arrival order, so with a backlog
one partition's fetch (up to ``max.partition.fetch.bytes``, 1 MiB by default) is processed before the
next partition's, and the first transactions after a start may all be of one partition; a partition with
no committed offset also starts a round trip later (offset reset). Every partition progresses within
one fetch of the others; ``tests/enricher/test_crash.py`` asserts each run commits on every partition.

The loop body, in order: follow the registry; consume up to the next commit deadline; take the outcome of
the commit in flight; process each record (decode -> pipeline -> encode (:mod:`enricher.output`) -> send
through the checkpoint, which produces it or holds it for the next transaction); when due, hand the
commit to the committer thread and go on (the commit order is in :mod:`enricher.checkpoint`). SIGTERM
sets ``stop``: the loop commits what it has and closes. A fenced or fatally failed producer raises
:class:`FatalKafkaError` (exit non-zero, the supervisor restarts us and our ``init_transactions`` aborts
whatever was left open).

The loop itself (start, step, shutdown, abort and rewind, close) is
:class:`enricher.transactional_loop.TransactionalLoop`, shared with the aggregator; this class builds the
clients and fills in its hooks (the records of a consume, the start's checks, the registry).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Message, Producer
from prometheus_client import CollectorRegistry

from edgebridge import envelope
from edgebridge.deadletters import INTERNAL_ERROR, STEP_FAILED, UNENCODABLE
from edgebridge.errors import ConfigError, EnvelopeError
from edgebridge.logs import rate_limited
from edgebridge.metrics import LoopProgress
from enricher.checkpoint import AbortNeeded, Checkpoint, FatalKafkaError
from enricher.config import EXACTLY_ONCE_CONSUMER, EnricherConfig
from enricher.dedup import DedupTable
from enricher.metrics import EnricherMetrics
from enricher.output import CONTENT_TYPE, DEFAULT_MESSAGE_MAX_BYTES, Output
from enricher.rebalance import Assignment
from enricher.registry import Registry
from enricher.state import StateStore
from enricher.steps import Context, Item, Reject, Stats, StepFailed, build_pipeline
from enricher.transactional_loop import TransactionalLoop

__all__ = ["CONSUMER_PROTECTED", "PRODUCER_PROTECTED", "Processor", "producer_config"]

log = logging.getLogger(__name__)

# librdkafka settings our guarantee rests on: setting them in [kafka.librdkafka] is a config error
CONSUMER_PROTECTED = ("isolation.level", "enable.auto.commit", "group.id", "partition.assignment.strategy")
PRODUCER_PROTECTED = ("transactional.id", "enable.idempotence", "acks")
PROTECTED = CONSUMER_PROTECTED + PRODUCER_PROTECTED + ("transaction.timeout.ms",)


def producer_config(config: EnricherConfig, transactional_id: str | None = None) -> dict[str, Any]:
    """The transactional producer's librdkafka settings (also what tests/test_kafka_cluster.py runs
    against a replicated cluster); the aggregator's with its own ``transactional_id``."""
    return config.kafka.client_config({
        "transactional.id": transactional_id or config.transactional_id,
        "enable.idempotence": True,
        "acks": "all",
        "transaction.timeout.ms": config.commit.transaction_timeout_ms,
        # outputs are visible only at the commit (read_committed), which flushes: lingering costs no
        # latency, and 50 ms instead of 5 cut the producer thread's CPU per event ~3x (fewer requests)
        "linger.ms": 50,
    }, PROTECTED)


class Processor(TransactionalLoop):
    log = log

    def __init__(self, config: EnricherConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.topics = config.topics
        self.input = config.topics.raw
        self.within = config.commit.transaction_timeout_ms / 1000
        self.metrics = EnricherMetrics(registry)
        k = config.kafka
        plain = k.client_config({}, PROTECTED)
        self.consumer = Consumer(k.client_config({
            "group.id": config.group_id,
            **EXACTLY_ONCE_CONSUMER,
            **({"group.instance.id": config.instance_id} if config.static_membership else {}),
            "error_cb": self._on_consumer_error,
        }, PROTECTED))
        settings = producer_config(config)
        self.producer = Producer(settings)
        # the largest record the producer sends (librdkafka's message.max.bytes): a dead letter must fit
        self.output = Output(config.instance_id,
                             int(settings.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES)))
        self.dedup = DedupTable(config.pipeline.max_seen_ranges, config.pipeline.epoch_idle_days)
        restore_timeout = config.commit.transaction_timeout_ms / 1000 + 60
        self.state = StateStore(plain, self.topics.enricher_state, restore_timeout)
        self.registry = Registry(plain, self.topics.devices)
        self.pipeline = build_pipeline(config.pipeline)
        self.stats = Stats()
        self.ctx = Context(self.registry, self.dedup, config.pipeline, self.stats)
        self.checkpoint = Checkpoint(self.producer, self.consumer, self.dedup, self.topics.raw,
                                     self.topics.enricher_state, self.metrics, config.commit.interval_ms,
                                     config.commit.max_messages,
                                     config.commit.transaction_timeout_ms / 1000, steps=self.stats)
        self.assignment = Assignment(self.consumer, self.topics.raw, self.checkpoint, self.dedup,
                                     self.state, self.metrics)
        self._registry_updates = 0
        self.ready = threading.Event()
        self.progress = LoopProgress(config.health_stall_after)  # /healthz: 503 while a turn takes too long

    # -- the hooks of the shared loop -------------------------------------------------------------------
    def _serve_waiting(self) -> None:
        super()._serve_waiting()
        self.registry.poll()  # not loaded yet: nothing assigned, serves its events only

    def _check_partitions(self) -> int:
        raw_parts = self._partitions(self.topics.raw, "topics.raw")
        state_parts = self.state.partitions()
        if state_parts != raw_parts:
            raise ConfigError("topics.enricher_state", f"{self.topics.enricher_state!r} has {state_parts} "
                              f"partitions, {self.topics.raw!r} has {raw_parts}: they must be equal")
        return raw_parts

    def _sweep_outputs(self, parts: int) -> dict[str, int]:
        topics = self.topics
        outputs = {topic: self._partitions(topic, key, required=False)
                   for key, topic in (("topics.processed", topics.processed),
                                      ("topics.alerts", topics.alerts),
                                      ("topics.deadletter", topics.deadletter),
                                      ("topics.enricher_state", topics.enricher_state))}
        return {k: v for k, v in outputs.items() if v}

    def _before_subscribe(self) -> None:
        self.registry.load()
        self.metrics.registry_devices.set(len(self.registry.devices))
        self._registry_updates = self.registry.updates

    def _started(self, parts: int) -> None:
        log.info("enricher started", extra={"instance": self.config.instance_id,
                                            "transactional_id": self.config.transactional_id,
                                            "raw": self.topics.raw, "partitions": parts,
                                            "steps": ",".join(self.pipeline.names)})

    def _stopped(self) -> None:
        log.info("processor stopped", extra=self.totals())

    def totals(self) -> dict[str, int]:
        """This process's lifetime counts, from its metrics (logged at a clean stop, for audits)."""
        names = {"consumed": "consumed_total", "consumed_aborted": "consumed_aborted_total",
                 "duplicates": "duplicates_dropped_total", "commits": "commits_total",
                 "epoch_changes": "epoch_changes_total",
                 "restored_devices": "state_restored_devices_total",
                 "restored_records": "state_restored_records_total"}
        sample = self.metrics.registry.get_sample_value
        out = {k: int(sample(f"edgebridge_enricher_{v}") or 0) for k, v in names.items()}
        out["processed"] = int(sample("edgebridge_enricher_produced_total", {"output": "processed"}) or 0)
        out["aborts"] = int(sum(m.value for metric in self.metrics.aborts.collect() for m in metric.samples
                                if m.name.endswith("_total")))
        return out

    def _closers(self) -> tuple[Callable[[], object], ...]:
        # the flush too: after a fatal producer error it raises, and would hide that error
        return (self.checkpoint.close, self.consumer.close, self.state.close, self.registry.close,
                lambda: self.producer.flush(5))

    # -- the loop ---------------------------------------------------------------------------------------
    def _serve_turn(self) -> None:
        if self.registry.poll():
            self.metrics.registry_devices.set(len(self.registry.devices))
            self.metrics.registry_updates.inc(self.registry.updates - self._registry_updates)
            self._registry_updates = self.registry.updates

    def _process(self, messages: list[Message]) -> None:
        """Each record: decode -> pipeline -> encode -> send (produced, or held for the next transaction:
        the checkpoint decides). The hot loop (tens of thousands of records a second): names bound once
        per batch, the consumed positions and output counts handed to the checkpoint once per batch."""
        cp = self.checkpoint
        send = cp.send
        assigned, ctx, run = self.assignment.assigned, self.ctx, self.pipeline.run
        decode, max_bytes, known = envelope.decode, self.config.pipeline.max_bytes, self.ctx.known_types
        processed_topic, alerts_topic, encode = self.topics.processed, self.topics.alerts, self.output.encode
        self.output.batch()
        positions: dict[int, int] = {}
        consumed = processed = alerted = 0
        try:
            for msg in messages:
                if msg.error() is not None:
                    self._consume_error(msg)
                    continue
                partition = msg.partition()
                if partition not in assigned:
                    continue  # fetched before a revoke: no longer ours
                if not consumed:  # the batch's first record of ours: a transaction now (not for strays)
                    cp.start()
                positions[partition] = (msg.offset() or 0) + 1
                consumed += 1
                value = msg.value() or b""
                key = msg.key()
                # decode -> pipeline -> encode: whatever fails costs this record (a dead letter with
                # the reason), never the partition; only Kafka's errors, raised by the send calls
                # below and in _deadletter, go their own way (abort and rewind, or exit)
                failed: tuple[str, BaseException, str | None] | None = None
                try:
                    event = decode(value, max_bytes=max_bytes, known_types=known)
                    ts_type, ts = msg.timestamp()
                    ctx.partition = partition
                    out = run(Item(event, key.decode("utf-8", "replace") if key is not None else None,
                                   ts if ts_type else None), ctx)
                    if out is None:
                        continue
                    key = out.event.deviceid.encode()
                    try:
                        value, alerts = encode(out)
                    except TypeError as exc:  # orjson: a conversion made an int past 64 bits, a foreign type
                        failed = (UNENCODABLE, exc, None)
                except EnvelopeError as exc:
                    failed = (exc.reason, exc, None)
                except Reject as exc:
                    failed = (exc.reason, exc, None)
                except StepFailed as exc:
                    failed = (STEP_FAILED, exc.error, exc.step)
                except (AbortNeeded, FatalKafkaError):
                    raise
                except Exception as exc:  # a bug, or an input no check foresaw
                    rate_limited(log, "internal-error", 10.0).error(
                        "processing a record failed; dead-lettered", exc_info=True,
                        extra={"partition": partition, "offset": msg.offset()})
                    failed = (INTERNAL_ERROR, exc, None)
                if failed is not None:
                    self._deadletter(msg, *failed)
                    continue
                send(processed_topic, value, key, CONTENT_TYPE)
                processed += 1
                for record in alerts:
                    send(alerts_topic, record, key)
                    alerted += 1
        finally:  # also when a produce error ends the batch early: the abort counts what it consumed
            cp.consumed(positions, consumed, processed=processed, alerts=alerted)
