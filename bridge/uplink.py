"""The uplink: MQTT → Kafka, acknowledging an MQTT message only after Kafka confirmed all of it.

Delivery guarantee (at least once, nothing acknowledged early): for every QoS 1 message, in order,

1. the message is taken from the intake queue and translated into records (events, or dead letters);
2. every record is produced to Kafka (idempotent producer, ``acks=all``);
3. each delivery report counts one record of the message as safe; a failed one is produced again;
4. the message's PUBACK is sent once all its records are confirmed *and* every message received
   before it on the same connection has been acknowledged (the ack frontier);
5. an ack whose connection has ended is dropped: the broker redelivers that message to the session.

A crash anywhere before 4 leaves the message un-acknowledged in the broker's session, which redelivers
it: the raw topic may then hold duplicates (the enricher removes them), never a gap.

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
from bridge.records import Record
from bridge.routes import filters
from bridge.validate import Translator
from edgebridge.errors import ShutdownRequested

__all__ = ["Uplink"]

log = logging.getLogger(__name__)

_BATCH = 1000  # messages taken per loop turn before serving delivery reports and acks
_IDLE_WAIT = 0.005  # seconds: the most a message waits in the intake queue when the loop is idle


class Uplink:
    def __init__(self, config: BridgeConfig, metrics: BridgeMetrics) -> None:
        up = config.uplink
        self._config = up
        self._metrics = metrics
        self._translator = Translator(config.mqtt.topic_prefix, up)
        self._frontier = AckFrontier()
        self._window = up.receive_maximum
        self._received = self._received_bytes = self._events = 0  # counts not yet in the metrics
        self._replacements: list[tuple[Record, Pending | None]] = []
        self.source = MqttSource(
            config.mqtt, up.client_id, filters(config.mqtt.topic_prefix, up),
            session_expiry=up.session_expiry, receive_maximum=up.receive_maximum, metrics=metrics,
        )
        self.sink = KafkaSink(config.kafka, up, metrics, on_delivered=self._delivered,
                              on_rejected=self._rejected, client_id=up.client_id)

    def start(self) -> None:
        self.source.start()

    def run(self, stop: threading.Event) -> None:
        """Bridge until ``stop`` is set, then drain (see :meth:`drain`)."""
        try:
            while not stop.is_set():
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
        ok = self.source.connected and self.source.subscribed.is_set()
        return ok, {"mqtt_connected": self.source.connected, "subscribed": self.source.subscribed.is_set(),
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
            self.sink.produce_all(records, None, stop)
            return
        entry = self._frontier.add(inbound.generation, msg.mid, inbound.received)
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
        if entry is not None:
            entry.outstanding -= 1

    def _rejected(self, record: Record, entry: Pending | None, error: str) -> None:
        """Kafka will never take ``record``: dead-letter its headers (no payload) in its place."""
        if record.reason == KAFKA_REJECTED:
            # even the payload-less dead letter was refused: give up on it rather than stall the stream
            log.error("dead letter refused by kafka, dropped", extra={"error": error})
            self._metrics.deadletters.labels("dropped").inc()
            if entry is not None:
                entry.outstanding -= 1
            return
        topic = next((v for k, v in record.headers if k == "mqtt_topic"), b"") or b""
        replacement = dead_letter(
            self._config.deadletter_topic, reason=KAFKA_REJECTED, error=error,
            mqtt_topic=topic.decode("utf-8", "replace") if isinstance(topic, bytes) else topic,
            received_wall=time.time(), payload=record.value,
            deviceid=record.key.decode() if record.key else None, max_payload=0,
        )
        self._replacements.append((replacement, entry))
