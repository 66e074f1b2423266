"""The uplink's Kafka side: one idempotent producer whose delivery reports drive the MQTT acks.

Settings the guarantee rests on (protected: setting them in ``[kafka.librdkafka]`` is a config error):
``enable.idempotence=true`` (hence ``acks=all`` and no reordering or duplicates from librdkafka's own
retries) and ``message.timeout.ms`` from ``uplink.message_timeout_ms``.

Only a real confirmation completes a record. librdkafka's errors are classified once, here:

- fatal (the producer instance cannot go on): :class:`KafkaFatalError` from ``produce``/``poll``, before
  anything more is acknowledged; the bridge exits non-zero and its un-acknowledged messages are
  redelivered to the next run;
- the record itself is unacceptable (too large, invalid): handed back through ``on_rejected``, which
  puts a dead letter carrying the payload in its place;
- anything else (Kafka away, the topic unknown or deleted, the producer not authorized, a timeout): the
  record is not in Kafka and goes to the retry list, produced again after a capped, jittered backoff for
  as long as it takes; its MQTT message stays un-acknowledged, and the stall shows in
  ``edgebridge_bridge_delivery_errors_total`` and a rate-limited log line.

Order (guarantee 3). ``message.timeout.ms`` defaults to 0 (``uplink.message_timeout_ms``): librdkafka
then never expires a record, and its idempotent producer keeps each partition's order through broker
outages by itself. While the retry list holds anything, newly produced records queue behind it
instead of overtaking it, and failed records return to it in the order their reports came (per
partition, the order they were produced). The one residue: with a finite timeout, a record still in
librdkafka's queue when an earlier one of its partition expired may be delivered before that one is
re-produced (the enricher then marks the earlier one late, never drops it).

Threading: ``produce``, ``poll`` and ``flush`` are called by the service loop only, and delivery
callbacks run inside them, so the ack frontier is never touched by two threads.

Per record, the hot path is one C call (``produce``, pre-bound), one ``partial`` and, in ``poll``, one
short callback; counters are gathered in a dict and added to Prometheus once per ``poll``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from bridge.config import UplinkConfig
from bridge.metrics import BridgeMetrics
from bridge.records import Record
from edgebridge.errors import EdgeBridgeError, ShutdownRequested
from edgebridge.logs import rate_limited
from edgebridge.retry import Backoff
from edgebridge.settings import KafkaSettings

__all__ = ["KafkaFatalError", "KafkaSink"]

log = logging.getLogger(__name__)

PROTECTED = ("enable.idempotence", "acks", "request.required.acks", "message.timeout.ms",
             "delivery.timeout.ms", "transactional.id")
# Errors no retry can cure: the record itself is unacceptable to Kafka.
_PERMANENT = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD,
                        KafkaError.RECORD_LIST_TOO_LARGE})
_FATAL = KafkaError._FATAL

Delivered = Callable[[Record, Any], None]


class KafkaFatalError(EdgeBridgeError):
    """The producer hit a fatal error (librdkafka cannot continue this producer instance)."""


class KafkaSink:
    def __init__(
        self,
        settings: KafkaSettings,
        config: UplinkConfig,
        metrics: BridgeMetrics,
        *,
        on_delivered: Delivered,
        on_rejected: Callable[[Record, Any, str], None],
        client_id: str = "edgebridge-bridge",
    ) -> None:
        ours = {
            "client.id": client_id,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": config.compression,
            "linger.ms": config.linger_ms,
            "message.timeout.ms": config.message_timeout_ms,
            "error_cb": self._on_error,
        }
        self._producer = Producer(settings.client_config(ours, PROTECTED))
        self._produce = self._producer.produce
        self._metrics = metrics
        self._on_delivered = on_delivered
        self._on_rejected = on_rejected
        self._retry: list[tuple[Record, Any]] = []
        self._retry_at = 0.0
        # a retry time that poll() checks, not a sleep (tenacity's Retrying owns a sleep): the loop keeps
        # serving delivery reports and MQTT while rejected records wait
        self._backoff = Backoff(initial=0.5, maximum=config.retry_backoff_max)
        self._fatal: KafkaError | None = None
        self._produced: dict[str, Any] = {}  # topic -> its bound Prometheus child
        self._confirmed: dict[str, int] = {}  # topic -> confirmations not yet added to the metric
        self._failing = False  # a delivery failed since the last success: reset the backoff on success

    def __len__(self) -> int:
        """Records not yet confirmed: in librdkafka's queue or waiting for a retry."""
        return len(self._producer) + len(self._retry)

    def produce(self, record: Record, token: Any, stop: threading.Event) -> None:
        """Hand ``record`` to librdkafka; while its queue is full, serve delivery reports and wait.

        Raises :class:`ShutdownRequested` if ``stop`` is set while waiting for room, and
        :class:`KafkaFatalError` when librdkafka reports a fatal error.
        """
        while True:
            if self._retry:
                self._retry.append((record, token))  # behind the records waiting for a retry: order
                return
            try:
                self._produce(record.topic, record.value, record.key, headers=record.headers,
                              on_delivery=partial(self._report, record, token))
                return
            except KafkaException as exc:
                self._failed(record, token, exc.args[0])
                return
            except BufferError:
                # backpressure: the producer queue is full; the service loop waits here
                self.poll(0.1)
                if stop.is_set():
                    raise ShutdownRequested("stopping while the producer queue is full") from None

    def produce_all(self, records: list[Record], token: Any, stop: threading.Event) -> None:
        """:meth:`produce` each of ``records``, in order, all with the same ``token``."""
        produce, report = self._produce, self._report
        for record in records:
            if self._retry:
                self._retry.append((record, token))
                continue
            try:
                produce(record.topic, record.value, record.key, headers=record.headers,
                        on_delivery=partial(report, record, token))
            except (BufferError, KafkaException):
                self.produce(record, token, stop)  # not queued: the slow path waits or classifies

    def retry_later(self, record: Record, token: Any) -> None:
        """Produce ``record`` again after the backoff (it is not in Kafka; its message stays un-acked)."""
        if not self._retry:
            self._retry_at = time.monotonic() + self._backoff.next_delay()
        self._retry.append((record, token))

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports (running the callbacks) and re-produce failed records when due."""
        self._producer.poll(timeout)
        if self._confirmed:
            self._count_confirmed()
        if self._fatal is not None:
            raise KafkaFatalError(f"fatal producer error: {self._fatal}")
        if self._retry and time.monotonic() >= self._retry_at:
            self._reproduce()
            if self._fatal is not None:
                raise KafkaFatalError(f"fatal producer error: {self._fatal}")
        self._metrics.producer_queue.set(len(self))

    def _reproduce(self) -> None:
        retry, self._retry = self._retry, []
        done = 0
        for i, (record, token) in enumerate(retry):
            try:
                self._produce(record.topic, record.value, record.key, headers=record.headers,
                              on_delivery=partial(self._report, record, token))
                done += 1
                continue
            except BufferError:
                pass  # librdkafka's queue is full: the rest waits for the next poll, in order
            except KafkaException as exc:
                err = exc.args[0]
                if self._classify(record, token, err) != "retry":
                    continue
                self._retry_at = time.monotonic() + self._backoff.next_delay()
                self._warn_retry(record, err)
            self._retry = retry[i:] + self._retry
            break
        self._metrics.reproduced.inc(done)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until every record is confirmed; ``True`` when none is left."""
        deadline = time.monotonic() + timeout
        while len(self) and time.monotonic() < deadline:
            self.poll(min(0.1, max(0.0, deadline - time.monotonic())))
        return len(self) == 0

    def close(self) -> None:
        # confluent-kafka has no close(); dropping the last reference destroys the handle
        self._producer = self._produce = None  # type: ignore[assignment]

    # -- inside poll() -----------------------------------------------------------------------------

    def _report(self, record: Record, token: Any, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            if self._failing:
                self._failing = False
                self._backoff.reset()
            confirmed = self._confirmed
            confirmed[record.topic] = confirmed.get(record.topic, 0) + 1  # into the metric after poll
            self._on_delivered(record, token)
            return
        self._failing = True
        if self._classify(record, token, err) == "retry":
            self.retry_later(record, token)
            self._warn_retry(record, err)

    def _failed(self, record: Record, token: Any, err: KafkaError) -> None:
        """``produce()`` itself refused ``record`` (nothing was queued)."""
        if self._classify(record, token, err) == "retry":
            self.retry_later(record, token)
            self._warn_retry(record, err)
        if self._fatal is not None:
            raise KafkaFatalError(f"fatal producer error: {self._fatal}")

    def _classify(self, record: Record, token: Any, err: KafkaError) -> str:
        """The one place librdkafka's errors are judged: ``"fatal"``, ``"rejected"`` or ``"retry"``."""
        self._metrics.delivery_errors.labels(err.name()).inc()
        if err.fatal() or err.code() == _FATAL:
            self._fatal = self._fatal or err
            log.error("fatal kafka producer error", extra={"error": str(err)})
            return "fatal"  # neither delivered nor retried: the bridge stops, the broker redelivers
        if err.code() in _PERMANENT:
            self._on_rejected(record, token, str(err))
            return "rejected"
        return "retry"

    def _warn_retry(self, record: Record, err: KafkaError) -> None:
        rate_limited(log, ("delivery-failed", err.code()), 10.0).warning(
            "record not in kafka, will produce it again; its message stays unacknowledged",
            extra={"error": str(err), "topic": record.topic, "waiting": len(self._retry)})

    def _count_confirmed(self) -> None:
        for topic, n in self._confirmed.items():
            produced = self._produced.get(topic)
            if produced is None:  # labels() is a locked dict lookup: once per topic, not per record
                produced = self._produced[topic] = self._metrics.produced.labels(topic)
            produced.inc(n)
        self._confirmed.clear()

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
            log.error("fatal kafka producer error", extra={"error": str(err)})
        else:
            rate_limited(log, ("kafka-error", err.code()), 30.0).warning(
                "kafka client error", extra={"error": str(err)})

