"""Redriving dead letters back into processing, once.

A dead letter that a fix made processable again (its device registered since, a pipeline step
repaired) goes back to the raw topic as the bridge produces an event: key = the device id, value = the
original bytes, headers ``content-type``, ``ce_id``, ``ce_seq`` (``mqtt_topic`` when the dead letter
knew it) plus ``redriven_from`` = ``{topic}/{partition}/{offset}`` of the dead letter. The enricher
then processes it like any raw record.

Once: each redriven record and a *marker* (key ``{topic}/{partition}/{offset}`` of the dead letter) in
the compacted ``[redrive] marker_topic`` are written in one Kafka transaction, so either both are there
or neither. The markers are read (read_committed) after ``init_transactions``, which fences any other
redrive with the same ``transactional_id`` and aborts what it left open: two redrives at once cannot
both move the same dead letter, and a second redrive finds the first one's markers and moves nothing.
An event that reached processed meanwhile (the device sent it again) is dropped by the enricher's own
dedup on (device, epoch, seq): nothing appears twice in ``iot.events.processed``.

What would only fail again is not redriven, and said so: a truncated value (the original bytes are not
all here), no device key, bytes the enricher's decoder refuses, an event of another device than its key,
or an ``unknown_device`` whose device is still not in the registry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgebridge import deadletters as dlq
from edgebridge import envelope
from edgebridge.errors import EdgeBridgeError, EnvelopeError
from edgebridge.ops.config import OpsConfig
from edgebridge.ops.reading import Position, Record, read

__all__ = ["Candidate", "RedriveFenced", "marker_key", "plan", "read_markers", "read_registry", "redrive",
           "topic_exists"]

REDRIVE = "redrive"
DONE = "already redriven"
MAX_EVENT_BYTES = 256 * 1024  # the enricher's default [pipeline] max_bytes
# the redrive producer's librdkafka lines go nowhere (see redrive()): its errors come as exceptions
_QUIET = logging.getLogger("edgebridge.ops.redrive.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def marker_key(record: Record) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


@dataclass(frozen=True)
class Candidate:
    record: Record
    verdict: str  # REDRIVE, DONE, or why it would fail again
    event: envelope.Event | None = None

    @property
    def device(self) -> str:
        return (self.record.key or b"").decode("utf-8", "replace")

    @property
    def reason(self) -> str:
        return self.record.header(dlq.REASON) or "?"


def plan(records: Iterable[Record], markers: set[str], registered: set[str] | None,
         max_bytes: int = MAX_EVENT_BYTES,
         known_types: frozenset[str] = envelope.DEVICE_TYPES) -> list[Candidate]:
    """Each dead letter with its verdict. ``registered``: the registry's device ids (``None``: not read,
    ``unknown_device`` is then not checked); ``known_types``: what the enricher takes (its
    ``[pipeline] known_types``), so that a type added there since makes its dead letters redrivable."""
    out = []
    for record in records:
        if marker_key(record) in markers:
            out.append(Candidate(record, DONE))
            continue
        out.append(_verdict(record, registered, max_bytes, known_types))
    return out


def _verdict(record: Record, registered: set[str] | None, max_bytes: int,
             known_types: frozenset[str]) -> Candidate:
    if dlq.TRUNCATED in record.headers:
        return Candidate(record, f"truncated at {len(record.value or b'')} of "
                                 f"{record.header(dlq.TRUNCATED)} bytes: the original is not all here")
    if not record.key:
        return Candidate(record, "no device key")
    device = record.key.decode("utf-8", "replace")
    try:
        event = envelope.decode(record.value or b"", max_bytes=max_bytes, known_types=known_types)
    except EnvelopeError as exc:
        return Candidate(record, f"would fail again: {exc.reason} ({str(exc)[:120]})")
    if event.deviceid != device:
        return Candidate(record, f"would fail again: device_mismatch (event of {event.deviceid!r})")
    if record.header(dlq.REASON) == "unknown_device" and registered is not None and device not in registered:
        return Candidate(record, f"would fail again: {device!r} is still not in the registry")
    return Candidate(record, REDRIVE, event)


def read_markers(client: Mapping[str, Any], topic: str) -> set[str]:
    """The dead letters redriven so far (their ``topic/partition/offset``), read committed."""
    return {r.key.decode() for r in read(client, topic, Position("beginning")) if r.key and r.value}


def read_registry(client: Mapping[str, Any], topic: str) -> set[str]:
    """The device ids the compacted registry holds now (the latest record per key; a tombstone deletes)."""
    latest: dict[bytes, bool] = {}
    for r in read(client, topic, Position("beginning")):
        if r.key:
            latest[r.key] = bool(r.value)
    return {k.decode("utf-8", "replace") for k, alive in latest.items() if alive}


def ensure_marker_topic(client: Mapping[str, Any], topic: str) -> None:
    """Create the compacted marker topic if it does not exist (one partition: markers are few)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(dict(client))
    if topic in admin.list_topics(timeout=15).topics:
        return
    futures = admin.create_topics([NewTopic(topic, 1, config={"cleanup.policy": "compact"})])
    try:
        futures[topic].result(timeout=30)
    except Exception as exc:  # TOPIC_ALREADY_EXISTS from a concurrent create is fine
        if "already exists" not in str(exc).lower():
            raise EdgeBridgeError(f"cannot create the marker topic {topic!r}: {exc}; create it "
                                  "(compacted) or set [redrive] marker_topic") from exc


def raw_headers(candidate: Candidate) -> list[tuple[str, str | bytes | None]]:
    """The headers the bridge gives an event, and where this one was redriven from."""
    event = candidate.event
    assert event is not None
    headers: list[tuple[str, str | bytes | None]] = [
        ("content-type", envelope.CONTENT_TYPE.encode()), ("ce_id", event.id.encode()),
        ("ce_seq", str(event.seq).encode())]
    mqtt_topic = candidate.record.headers.get(dlq.MQTT_TOPIC)
    if mqtt_topic:
        headers.append(("mqtt_topic", mqtt_topic))
    headers.append(("redriven_from", marker_key(candidate.record).encode()))
    return headers


def redrive(config: OpsConfig, select: Any, *, dry_run: bool, check_registry: bool = True,
            start: Position | None = None,
            known_types: frozenset[str] = envelope.DEVICE_TYPES) -> list[Candidate]:
    """Redrive the dead letters ``select(record)`` accepts; every selected one comes back with its verdict.

    ``dry_run``: read and judge only, write nothing.
    """
    client = config.kafka.client_config({})
    marker_topic = config.redrive.marker_topic
    producer = None
    if not dry_run:
        from confluent_kafka import Producer

        ensure_marker_topic(client, marker_topic)
        settings = config.kafka.client_config(
            {"transactional.id": config.redrive.transactional_id, "enable.idempotence": True, "acks": "all"})
        # a command, not a service: no log setup, so librdkafka's lines would reach stderr as bare "kafka
        # client log" (without a logger, in its own format: a fenced producer logs FATAL); its errors
        # come as exceptions, told in one line
        settings["logger"] = _QUIET
        producer = Producer(settings)
        producer.init_transactions(60)  # fences another redrive; markers are read after this
    try:
        markers = read_markers(client, marker_topic) if topic_exists(client, marker_topic) else set()
        registered = read_registry(client, config.topics.devices) if check_registry else None
        letters = [r for r in read(client, config.topics.deadletter, start or Position("beginning"))
                   if select(r)]
        candidates = plan(letters, markers, registered, known_types=known_types)
        todo = [c for c in candidates if c.verdict == REDRIVE]
        if producer is not None and todo:
            try:
                producer.begin_transaction()  # fails at once when another redrive fenced us already
                now = dlq.rfc3339(time.time())
                for c in todo:
                    producer.produce(config.topics.raw, c.record.value, c.record.key, headers=raw_headers(c))
                    marker = {"redriven_at": now, "to": config.topics.raw, "device": c.device,
                              "reason": c.reason}
                    producer.produce(marker_topic, json.dumps(marker).encode(), marker_key(c.record).encode())
                    producer.poll(0)
                producer.commit_transaction(60)
            except Exception as exc:
                # nothing of it becomes visible to read_committed readers: neither records nor markers
                try:
                    producer.abort_transaction(30)
                    aborted: BaseException | None = None
                except Exception as abort_error:
                    aborted = abort_error
                # a produce after the fatal error says only "Fatal error"; the abort names the cause
                if _fenced(exc) or (aborted is not None and _fenced(aborted)):
                    raise RedriveFenced(
                        f"fenced by another redrive (transactional id {config.redrive.transactional_id!r}) "
                        "that started meanwhile: nothing of this run was written; that one moves what "
                        "is left, and a redrive run again skips what it moved") from exc
                raise
        return candidates
    finally:
        if producer is not None:
            # a fenced producer raises its fatal error here again, which would replace the one above
            with contextlib.suppress(Exception):
                producer.flush(5)


class RedriveFenced(EdgeBridgeError):
    """Another redrive with our transactional id initialised after us: ours is aborted, it goes on."""


def _fenced(exc: BaseException) -> bool:
    from confluent_kafka import KafkaError, KafkaException

    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return isinstance(error, KafkaError) and error.code() in (
        KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)


def topic_exists(client: Mapping[str, Any], topic: str) -> bool:
    from confluent_kafka import Consumer

    consumer = Consumer({**client, "group.id": "edgebridge-ops-meta"})
    try:
        meta = consumer.list_topics(topic, timeout=15).topics.get(topic)
        return meta is not None and meta.error is None
    finally:
        consumer.close()
