"""KafkaSink's error policy and order against a scripted producer (no broker): which librdkafka errors
retry, reject or stop, and that a record waiting for a retry is never overtaken by a newer one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

import bridge.kafka_sink as kafka_sink
from bridge.config import UplinkConfig
from bridge.kafka_sink import KafkaFatalError, KafkaSink
from bridge.metrics import BridgeMetrics
from bridge.records import Record
from edgebridge.settings import KafkaSettings


class ScriptedProducer:
    """``produce`` queues; ``poll`` delivers each queued record's report: the error ``verdict`` gives it
    (``None``: delivered). ``refuse`` makes ``produce`` itself raise for a value."""

    verdict: Callable[[bytes], KafkaError | None] = staticmethod(lambda value: None)
    refuse: Callable[[bytes], KafkaError | None] = staticmethod(lambda value: None)

    def __init__(self, config: dict[str, Any]) -> None:
        self.queued: list[tuple[bytes, Any]] = []
        self.produced: list[bytes] = []  # every produce() that queued, in order

    def produce(self, topic: str, value: bytes, key: Any = None, headers: Any = None,
                on_delivery: Any = None) -> None:
        error = type(self).refuse(value)
        if error is not None:
            raise KafkaException(error)
        self.produced.append(value)
        self.queued.append((value, on_delivery))

    def poll(self, timeout: float = 0.0) -> int:
        queued, self.queued = self.queued, []
        for value, callback in queued:
            callback(type(self).verdict(value), None)
        return len(queued)

    def __len__(self) -> int:
        return len(self.queued)


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(kafka_sink, "Producer", ScriptedProducer)
    monkeypatch.setattr(ScriptedProducer, "verdict", staticmethod(lambda value: None))
    monkeypatch.setattr(ScriptedProducer, "refuse", staticmethod(lambda value: None))
    delivered: list[bytes] = []
    rejected: list[tuple[bytes, str]] = []
    s = KafkaSink(KafkaSettings(), UplinkConfig(), BridgeMetrics(),
                  on_delivered=lambda record, token: delivered.append(record.value),
                  on_rejected=lambda record, token, error: rejected.append((record.value, error)))
    s._backoff.next_delay = lambda: 0.0  # type: ignore[method-assign]  # retry at the next poll
    return s, delivered, rejected


def _record(value: bytes) -> Record:
    return Record("raw", b"dev", value, [], "event", "", 1, "")


STOP = threading.Event()


def test_a_retried_record_is_not_overtaken_by_newer_ones(
    sink: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, delivered, _ = sink
    failures = [b"1"]  # record 1's first delivery fails (a timeout while Kafka was away), then Kafka is back

    def verdict(value: bytes) -> KafkaError | None:
        if value in failures:
            failures.remove(value)
            return KafkaError(KafkaError._MSG_TIMED_OUT)
        return None

    monkeypatch.setattr(ScriptedProducer, "verdict", staticmethod(verdict))
    s._backoff.next_delay = lambda: 60.0  # the retry is not due yet when the newer records come
    s.produce_all([_record(b"1")], None, STOP)
    s.poll()  # 1 fails: it waits in the retry list
    s.produce_all([_record(b"2"), _record(b"3")], None, STOP)  # newer records arrive meanwhile
    s.poll()
    s._retry_at = 0.0  # the retry falls due
    s.poll()
    s.poll()
    assert s._producer.produced == [b"1", b"1", b"2", b"3"]  # 2 and 3 went after 1's retry, never before
    assert delivered == [b"1", b"2", b"3"]


def test_errors_are_classified_once(sink: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    s, delivered, rejected = sink
    errors = {
        b"big": KafkaError(KafkaError.MSG_SIZE_TOO_LARGE),  # the record: dead letter with its payload
        b"acl": KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED),  # not in Kafka: retried, never acked
        b"gone": KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART),
    }
    monkeypatch.setattr(ScriptedProducer, "verdict", staticmethod(lambda value: errors.get(value)))
    s.produce_all([_record(b"big"), _record(b"acl"), _record(b"gone")], None, STOP)
    s.poll()
    assert rejected == [(b"big", str(errors[b"big"]))] and delivered == []
    assert len(s) == 2  # acl and gone wait to be produced again
    errors.clear()  # Kafka takes them now
    s.poll()
    s.poll()
    assert delivered == [b"acl", b"gone"]


def test_produce_refusing_before_queueing_waits_for_a_retry(
    sink: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, delivered, rejected = sink
    refusals = {b"unknown": KafkaError(KafkaError._UNKNOWN_TOPIC)}  # used to become a payload-less DLQ
    monkeypatch.setattr(ScriptedProducer, "refuse", staticmethod(lambda value: refusals.get(value)))
    s.produce_all([_record(b"unknown")], None, STOP)
    assert rejected == [] and delivered == [] and len(s) == 1
    refusals.clear()
    s.poll()
    s.poll()
    assert delivered == [b"unknown"]


def test_a_fatal_error_stops_before_anything_more_is_acked(
    sink: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, delivered, rejected = sink
    fatal = KafkaError(KafkaError._FATAL, fatal=True)
    refuse = staticmethod(lambda value: fatal if value == b"p" else None)
    monkeypatch.setattr(ScriptedProducer, "refuse", refuse)
    with pytest.raises(KafkaFatalError):  # refused by produce() itself
        s.produce_all([_record(b"p")], None, STOP)
    monkeypatch.setattr(ScriptedProducer, "refuse", staticmethod(lambda value: None))
    monkeypatch.setattr(ScriptedProducer, "verdict", staticmethod(lambda value: fatal))
    s.produce_all([_record(b"r")], None, STOP)
    with pytest.raises(KafkaFatalError):  # reported by a delivery report
        s.poll()
    assert delivered == [] and rejected == []
