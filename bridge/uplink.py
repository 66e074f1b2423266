"""The uplink: MQTT → Kafka, acknowledging an MQTT message only after Kafka confirmed all of it.

Delivery guarantee (at least once, nothing acknowledged early): for every QoS 1 message, in order,

1. the message is taken from the intake queue and translated into records (events, or dead letters);
2. every record is produced to Kafka (idempotent producer, ``acks=all``);
3. each delivery report counts one record of the message as safe; a failed one is produced again;
4. the message's PUBACK is sent once all its records are confirmed *and* every message received
   before it on the same connection has been acknowledged (the ack frontier);
5. an ack whose connection has ended is dropped: the broker redelivers that message to the session;
6. each confirmed event (or the dead letter of a refused one with a readable seq) is owed a receipt:
   at most every ``receipt_interval`` the device gets its confirmed seq ranges on
   ``{prefix}/{id}/receipts`` (:mod:`bridge.receipts`). The agent deletes an event only then, so what
   the broker loses after its PUBACK (no subscriber yet, a crash, a full queue) is sent again.

A crash anywhere before 4 leaves the message un-acknowledged in the broker's session, which redelivers
it: the raw topic may then hold duplicates (the enricher removes them), never a gap. A crash between
Kafka's confirmation and the receipt costs a resend by the agent: again a duplicate, never a gap.

Backpressure: the loop takes a message only while fewer than Receive Maximum are in flight (the
frontier), so the bridge itself keeps the window it announced even when the broker does not (Mosquitto
2.0.11 overshoots it while acks flow, see ``mqtt_source``); the intake queue then fills and paho stops
reading the socket. While Kafka is away nothing is acknowledged and nothing more is taken: frontier,
intake queue, producer queue and retry list are all bounded by the window, whatever the outage length.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from bridge.ack_frontier import AckFrontier, Pending
from bridge.config import BridgeConfig
from bridge.deadletter import KAFKA_REJECTED, dead_letter
from bridge.kafka_sink import KafkaSink
from bridge.metrics import BridgeMetrics
from bridge.mqtt_source import Inbound, MqttSource
from bridge.receipts import ReceiptBook
from bridge.records import Record
from bridge.routes import filters
from bridge.validate import Translator
from edgebridge.errors import ShutdownRequested
from edgebridge.logs import rate_limited
from edgebridge.metrics import LoopProgress

__all__ = ["Uplink"]

log = logging.getLogger(__name__)

_BATCH = 1000  # messages taken per loop turn before serving delivery reports and acks
_IDLE_WAIT = 0.005  # seconds: the most a message waits in the intake queue when the loop is idle
_RECEIPT_DRAIN = 2.0  # seconds: on SIGTERM, the most spent sending receipts past the room
_LAST_RESORT_PAYLOAD = 1024  # a dead letter Kafka refuses is cut to this once more before retrying


class Uplink:
    def __init__(self, config: BridgeConfig, metrics: BridgeMetrics) -> None:
        up = config.uplink
        self._config = up
        self._metrics = metrics
        self._translator = Translator(config.mqtt.topic_prefix, up, config.topics)
        self._deadletter_topic = config.topics.deadletter
        self._frontier = AckFrontier()
        self._window = up.receive_maximum
        self._received = self._received_bytes = self._events = 0  # counts not yet in the metrics
        self._replacements: list[tuple[Record, Pending | None]] = []
        self.progress = LoopProgress(config.stall_after)  # /healthz: 503 while a turn takes too long
        self._receipts = ReceiptBook(config.mqtt.topic_prefix, up.receipt_interval) if up.receipts else None
        self.source = MqttSource(
            config.mqtt_for(up), up.client_id, filters(config.mqtt.topic_prefix, up),
            session_expiry=up.session_seconds, receive_maximum=up.receive_maximum, metrics=metrics,
            max_inflight_bytes=up.max_inflight_bytes,
        )
        self.sink = KafkaSink(config.kafka, up, metrics, on_delivered=self._delivered,
                              on_rejected=self._rejected, client_id=up.client_id)

    def start(self) -> None:
        self.source.start()

    def run(self, stop: threading.Event) -> None:
        """Bridge until ``stop`` is set, then drain (see :meth:`drain`)."""
        try:
            while not stop.is_set():
                self.progress.turn()
                self.step(stop)
        except ShutdownRequested:
            pass
        self.drain()

    def step(self, stop: threading.Event) -> None:
        """One turn: take what arrived (within the window), produce it, serve delivery reports, ack."""
        room = min(self._window - len(self._frontier), _BATCH)
        if room > 0:
            inbound = self.source.get_nowait()
            if inbound is None:
                # Nothing waiting: sleep in librdkafka (GIL released), woken early by a delivery report,
                # rather than on the intake queue: a wake-up per arriving message would hand the GIL
                # back and forth with paho's thread for every message; this way they gather and are
                # taken in one batch.
                self.sink.poll(_IDLE_WAIT)
                inbound = self.source.get_nowait()
            while inbound is not None:
                self._take(inbound, stop)
                room -= 1
                inbound = self.source.get_nowait() if room > 0 else None
            self._produce_replacements(stop)
            self.sink.poll(0)
        else:
            # the window is full: wait for delivery reports instead of taking more
            self._produce_replacements(stop)
            self.sink.poll(0.02)
        self._ack_ready()
        if self._receipts is not None:
            self._send_receipts(time.monotonic())

    def drain(self) -> None:
        """Stop taking messages, finish what was received, ack what Kafka confirmed, disconnect.

        What Kafka does not confirm within ``drain_timeout`` stays un-acknowledged for the next run.
        """
        self.source.stop_intake()
        never = threading.Event()
        try:
            while (inbound := self.source.get_nowait()) is not None:
                self._take(inbound, never)
            deadline = time.monotonic() + self._config.drain_timeout
            while (len(self.sink) or self._replacements) and time.monotonic() < deadline:
                self._produce_replacements(never)
                self.sink.poll(0.05)
                self._ack_ready()
            self._ack_ready()
            if self._receipts is not None:
                # what Kafka confirmed, before the closing barrier; more than the room allows goes as
                # PUBACKs come back, for a few seconds at most (a receipt not sent costs a resend)
                self._send_receipts(float("inf"))
                deadline = time.monotonic() + _RECEIPT_DRAIN
                while self._receipts.queued and self.source.connected and time.monotonic() < deadline:
                    time.sleep(0.01)
                    self._send_receipts(time.monotonic())
        finally:
            left = len(self._frontier)
            sample = self._metrics.registry.get_sample_value
            log.info("uplink drained", extra={
                "unacknowledged": left, "unconfirmed": len(self.sink),
                "received": sample("edgebridge_bridge_received_messages_total"),
                "acked": sample("edgebridge_bridge_acked_messages_total")})
            self.source.close()
            self.sink.close()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while the MQTT session is up and subscribed and the loop turns."""
        turning, loop = self.progress.health()
        connected, subscribed = self.source.connected, self.source.subscribed.is_set()
        return connected and subscribed and turning, {
            "mqtt_connected": connected, "subscribed": subscribed, "uplink": loop,
            "in_flight": len(self._frontier), "unconfirmed": len(self.sink)}

    # -- steps ---------------------------------------------------------------------------------------

    def _take(self, inbound: Inbound, stop: threading.Event) -> None:
        msg = inbound.message
        payload = bytes(msg.payload)  # no copy: paho hands bytes
        self._received += 1
        self._received_bytes += len(payload)
        records = self._translator.records(msg.topic, payload, inbound.received_wall,
                                           getattr(msg, "properties", None))
        if not msg.qos:  # QoS 0 needs no ack; its records are still produced
            self.source.release(len(payload))
            self.sink.produce_all(records, None, stop)
            return
        entry = self._frontier.add(inbound.generation, msg.mid, inbound.received)
        entry.size = len(payload)
        # counted before producing: a report served while produce waits for room cannot complete the
        # entry early, since it is sealed only after the last record is queued
        entry.outstanding = len(records)
        self.sink.produce_all(records, entry, stop)
        entry.sealed = True

    def _ack_ready(self) -> None:
        """Acknowledge the done prefix of the frontier, and publish the counts gathered since last time.

        Counters are added per turn, not per message (a prometheus ``inc`` costs about a microsecond);
        ``events`` before ``acked``, so a reader never sees a message acknowledged before its events.
        """
        m = self._metrics
        if self._received:
            m.received.inc(self._received)
            m.received_bytes.inc(self._received_bytes)
            self._received = self._received_bytes = 0
        if self._events:
            m.events.inc(self._events)
            self._events = 0
        ready = self._frontier.ready()
        if ready:
            self.source.release(sum(entry.size for entry in ready))  # acked or stale: room either way
            now = time.monotonic()
            acked = self.source.ack_many(ready)
            observe = m.ack_latency.observe
            for entry in acked:
                observe(now - entry.received)
            if acked:
                m.acked.inc(len(acked))
            if len(acked) < len(ready):
                m.stale_acks.inc(len(ready) - len(acked))
        m.in_flight.set(len(self._frontier))
        m.held_bytes.set(self.source.held_bytes)

    def _send_receipts(self, now: float) -> None:
        """Publish the receipts owed as room allows, all of a turn's in one write (``bridge.receipts``:
        an interval's receipts join the book's queue; what cannot go now goes in a later turn)."""
        book = self._receipts
        assert book is not None
        owed = book.due(now, self.source.receipt_room())
        sent = self.source.publish_receipts(owed) if owed else 0
        for _, _, (key, epoch, covered) in owed[sent:]:
            book.give_back(key, epoch, covered)  # MQTT is down: with the next interval
        m = self._metrics
        if sent:
            went = [ranges for _, _, (_, _, ranges) in owed[:sent]]
            m.receipts.inc(sent)
            m.receipt_ranges.inc(sum(len(ranges) for ranges in went))
            m.receipted_events.inc(sum(last - first + 1 for ranges in went for first, last in ranges))
        deferred = len(owed) - sent + book.deferred
        if deferred:
            book.deferred = 0
            m.receipts_deferred.inc(deferred)

    def _produce_replacements(self, stop: threading.Event) -> None:
        while self._replacements:
            record, entry = self._replacements.pop(0)
            self.sink.produce(record, entry, stop)

    # -- delivery callbacks (inside sink.poll) -----------------------------------------------------

    def _delivered(self, record: Record, entry: Pending | None) -> None:
        if record.kind == "event":
            self._events += 1  # added to the counter in _ack_ready
        elif record.kind == "deadletter":
            self._metrics.deadletters.labels(record.reason).inc()
        if record.seq and self._receipts is not None and record.key is not None:
            self._receipts.confirm(record.key, record.epoch, record.seq)
        if entry is not None:
            entry.outstanding -= 1

    def _rejected(self, record: Record, entry: Pending | None, error: str) -> None:
        """Kafka will never take ``record`` as it is (too large, invalid): its dead letter, payload
        included (cut at ``max_deadletter_payload``, the cut said in ``dlq_truncated``), takes its place.

        A dead letter that Kafka refuses in turn is cut to 1 KiB once; refused even then (the dead-letter
        topic is misconfigured), it is produced again after a backoff for as long as it takes: its
        message stays un-acknowledged and un-receipted rather than acknowledged with nothing in Kafka.
        """
        if record.kind == "deadletter":
            if len(record.value) > _LAST_RESORT_PAYLOAD:
                headers = [h for h in record.headers if h[0] != "dlq_truncated"]
                headers.append(("dlq_truncated", str(len(record.value)).encode()))
                self._replacements.append(
                    (record._replace(value=record.value[:_LAST_RESORT_PAYLOAD], headers=headers), entry))
                return
            self._metrics.deadletters.labels("refused").inc()
            rate_limited(log, "deadletter-refused", 10.0).error(
                "the dead-letter topic refuses a 1 KiB record; its message stays unacknowledged",
                extra={"error": error, "topic": record.topic})
            self.sink.retry_later(record, entry)
            return
        topic = next((v for k, v in record.headers if k == "mqtt_topic"), b"") or b""
        replacement = dead_letter(
            self._deadletter_topic, reason=KAFKA_REJECTED, error=error,
            mqtt_topic=topic.decode("utf-8", "replace") if isinstance(topic, bytes) else topic,
            received_wall=time.time(), payload=record.value,
            deviceid=record.key.decode("utf-8", "replace") if record.key else None,
            max_payload=self._config.max_deadletter_payload, seq=record.seq, epoch=record.epoch,
        )
        self._replacements.append((replacement, entry))
