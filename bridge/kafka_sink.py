"""The uplink's Kafka side: one idempotent producer whose delivery reports drive the MQTT acks.

Settings the guarantee rests on (protected: setting them in ``[kafka.librdkafka]`` is a config error):
``enable.idempotence=true`` (hence ``acks=all`` and no reordering or duplicates from librdkafka's own
retries) and ``message.timeout.ms`` from ``uplink.message_timeout_ms``.

No silent expiry: librdkafka gives up on a record after ``message.timeout.ms`` (during a long Kafka
outage), with a failed delivery report. A failed report never counts as delivered: the record goes to
the retry list and is produced again after a capped, jittered backoff, for as long as it takes, so its
MQTT message stays un-acknowledged until Kafka really has it. Records of one partition fail in order and
are re-produced in that order. Only a record Kafka can never take (too large) is handed back through
``on_rejected`` for the dead-letter topic; a fatal producer error stops the bridge (exit 1: the
un-acknowledged messages are redelivered to the next run).

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

        Raises :class:`ShutdownRequested` if ``stop`` is set while waiting for room.
        """
        callback = partial(self._report, record, token)
        while True:
            try:
                self._produce(record.topic, record.value, record.key, headers=record.headers,
                                       on_delivery=callback)
                return
            except KafkaException as exc:
                # refused before queueing (larger than message.max.bytes): no retry can help
                self._metrics.delivery_errors.labels(exc.args[0].name()).inc()
                self._on_rejected(record, token, str(exc.args[0]))
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
            try:
                produce(record.topic, record.value, record.key, headers=record.headers,
                        on_delivery=partial(report, record, token))
            except (BufferError, KafkaException):
                self.produce(record, token, stop)  # not queued: the slow path waits or rejects it

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports (running the callbacks) and re-produce failed records when due."""
        self._producer.poll(timeout)
        if self._confirmed:
            self._count_confirmed()
        if self._fatal is not None:
            raise KafkaFatalError(f"fatal producer error: {self._fatal}")
        if self._retry and time.monotonic() >= self._retry_at:
            retry, self._retry = self._retry, []
            self._metrics.reproduced.inc(len(retry))
            for record, token in retry:
                try:
                    self._produce(record.topic, record.value, record.key, headers=record.headers,
                                  on_delivery=partial(self._report, record, token))
                except BufferError:
                    self._retry.append((record, token))  # keep order: the rest waits too
        self._metrics.producer_queue.set(len(self))

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
        self._metrics.delivery_errors.labels(err.name()).inc()
        if err.code() in _PERMANENT:
            self._on_rejected(record, token, str(err))
            return
        if not self._retry:
            self._retry_at = time.monotonic() + self._backoff.next_delay()
        self._retry.append((record, token))
        rate_limited(log, ("delivery-failed", err.code()), 10.0).warning(
            "kafka delivery failed, will produce again", extra={"error": str(err), "topic": record.topic})

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

