"""The uplink's MQTT side: a persistent QoS 1 session with manual acknowledgements.

paho's network thread (``loop_start``) owns the socket; ``on_message`` only puts the message on a
bounded queue (it waits only when the broker overruns our window, see "Intake queue" below). The
service thread takes messages with :meth:`MqttSource.get_nowait` and acknowledges them with
:meth:`MqttSource.ack_many` once Kafka has them.

Session: ``clean_start=False``, a stable client id and a session expiry, so the broker keeps our
subscription and queues messages while the bridge is down or restarting; MQTT 5 Receive Maximum caps how
many unacknowledged messages the broker sends us. Subscriptions are QoS 1, never QoS 2 (paho completes
the QoS 2 handshake before the application could refuse).

Connection generations: message ids restart on every connection, so each message is tagged with the
generation it arrived on, and :meth:`MqttSource.ack_many` refuses an ack of an older generation. The
generation moves on ``on_disconnect`` and again before each reconnect, under a lock that ``ack_many`` also
holds, so a PUBACK can never slip onto a new connection with an id from the old one.

Intake queue: sized at twice Receive Maximum (the old generation's leftovers plus the redelivered
window after a reconnect). Overflow policy, ``backpressure``: ``on_message`` waits for room (counted in
``edgebridge_bridge_intake_waits_total``), so paho stops reading the socket and TCP flow control holds
the broker back. A broker that honours our Receive Maximum never triggers it; one that sends past it
(Mosquitto 2.0.11 does while PUBACKs flow, see docs/bridge.md) is held back, not dropped: dropping and
reconnecting would turn every overflow into a redelivery of the whole window, i.e. duplicates.
Waiting cannot deadlock: the service thread empties the queue without paho's thread (its PUBACKs are
queued in paho and written when the loop runs again), and the wait gives up as soon as
:meth:`stop_intake` is called (the message stays un-acknowledged in the session).

Byte budget: besides the message count, the payload bytes received and not yet acknowledged (in the
intake queue or in flight in the uplink) are bounded by ``max_inflight_bytes``: past it ``on_message``
waits, as for a full queue, until acknowledgements release bytes (counted in
``edgebridge_bridge_byte_budget_waits_total``). A message larger than the whole budget still goes when
nothing else is held. So a burst of large batches waits on the devices' disks, not in the bridge.
Counting: paho's thread adds to ``_received_bytes``, the service thread to ``_released_bytes``
(:meth:`release`); each is written by one thread only.

Redeliveries (PUBLISH with the DUP flag: the broker re-sends what an ended connection left
un-acknowledged) are counted in ``edgebridge_bridge_redelivered_messages_total``; they are the only
source of duplicates in the raw topic, so that counter bounds them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge.metrics import BridgeMetrics
from bridge.receipts import Receipt
from edgebridge.logs import rate_limited
from edgebridge.mqtt.client import connect_properties
from edgebridge.mqtt.incoming import FastMessage
from edgebridge.mqtt.properties import PackedProperties
from edgebridge.mqtt.threaded import new_client
from edgebridge.receipts import RECEIPT_CONTENT_TYPE
from edgebridge.settings import MqttSettings

__all__ = ["MAX_UNACKED_RECEIPTS", "Inbound", "MqttSource"]

# Receipts published and not yet PUBACKed, at most (what paho's in-flight limit was): the broker's
# memory for our receipts, and what paho resends after a reconnect.
MAX_UNACKED_RECEIPTS = 1000

log = logging.getLogger(__name__)


class Inbound(NamedTuple):
    """One message as paho's thread hands it over (a named tuple: made per message, and cheaply)."""

    generation: int
    message: FastMessage | mqtt.MQTTMessage  # FastMessage for the common shape (edgebridge.mqtt)
    received: float  # time.monotonic() at arrival
    received_wall: float  # time.time() at arrival, for the dead-letter header


class MqttSource:
    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        filters: list[str],
        *,
        session_expiry: int,
        receive_maximum: int,
        metrics: BridgeMetrics,
        max_inflight_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self._settings = settings
        self._filters = filters
        self._session_expiry = session_expiry
        self._receive_maximum = receive_maximum
        self._metrics = metrics
        self._queue: queue.Queue[Inbound] = queue.Queue(maxsize=2 * receive_maximum)
        self._budget = max_inflight_bytes
        self._received_bytes = 0  # written by paho's thread only
        self._released_bytes = 0  # written by the service thread only
        # Guards only the generation against the ack that checks it (see module docstring).
        self._lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._accepting = True
        self.connected_once = threading.Event()
        self.subscribed = threading.Event()  # the broker granted every filter at least once
        self._barrier = threading.Event()
        self._barrier_mid: int | None = None
        self._client = new_client(settings, client_id, manual_ack=True)
        # Receipts: this client publishes nothing else. paho's in-flight limit is off (with it, paho
        # walks every held message on each PUBACK); :meth:`receipt_room` keeps the bound instead, so a
        # broker that stops answering costs bounded memory (the receipts wait in the book, merged).
        self._client.max_inflight_messages_set(0)
        self._receipt_props = PackedProperties(RECEIPT_CONTENT_TYPE)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_pre_connect = self._on_pre_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_publish = self._on_publish  # this client publishes receipts only

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        props = connect_properties(self._session_expiry, self._receive_maximum)
        self._client.connect_async(
            self._settings.host, self._settings.port, self._settings.keepalive,
            clean_start=False, properties=props,
        )
        self._client.loop_start()

    def stop_intake(self) -> None:
        """Refuse further messages (left un-acknowledged: the session keeps them for the next start)."""
        self._accepting = False

    def close(self, barrier_timeout: float = 5.0) -> None:
        """Make sure the broker has processed our PUBACKs, then disconnect and stop paho's thread.

        Why the barrier: paho writes the PUBACKs and DISCONNECT in order and closes the socket, but if
        the broker has meanwhile sent more messages (the acks opened its window), closing a socket with
        unread data makes Linux send a RST, and the broker discards what it had not yet read: the last
        PUBACKs. A SUBSCRIBE to the filters we already hold is answered only after everything before it
        was processed, so its SUBACK proves the acks arrived (retainHandling=1: nothing is resent).
        """
        if self._connected:
            with self._lock:
                self._barrier.clear()
                _, self._barrier_mid = self._client.subscribe(
                    [(f, SubscribeOptions(qos=1, retainHandling=1)) for f in self._filters])
            if not self._barrier.wait(barrier_timeout):
                log.warning("no SUBACK before disconnect: the last acks may be redelivered")
        self._client.disconnect()
        self._client.loop_stop()

    # -- service side ----------------------------------------------------------------------------

    def get_nowait(self) -> Inbound | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def ack_many(self, entries: list[Any]) -> list[Any]:
        """PUBACK those of ``entries`` (``.generation``, ``.mid``) that belong to the current connection.

        Returns the acknowledged ones. The others are stale: their connection has ended and message ids
        are reused on the next one, so they are dropped (the broker redelivers those messages). The
        lock makes the generation check and the PUBACKs one step against a reconnect. The PUBACKs
        are queued as one write (``ack_all``): one wake-up of paho's thread and one ``send`` per call.
        """
        with self._lock:
            if not self._connected:
                return []
            generation = self._generation
            done = [entry for entry in entries if entry.generation == generation]
            if done:
                self._client.ack_all([entry.mid for entry in done])
        return done

    def receipt_room(self) -> int:
        """How many more receipts may go now: at most :data:`MAX_UNACKED_RECEIPTS` un-PUBACKed."""
        if not self._connected:
            return 0
        return MAX_UNACKED_RECEIPTS - self._client.unacknowledged

    def publish_receipts(self, receipts: list[Receipt]) -> int:
        """Publish these receipts, QoS 1, as one write; how many went (the first ones): none when
        disconnected. paho resends them after a reconnect until PUBACKed."""
        if not self._connected:
            return 0
        return self._client.publish_all([(topic, payload) for topic, payload, _ in receipts],
                                        self._receipt_props)

    def release(self, size: int) -> None:
        """Payload bytes of messages acknowledged (or dropped as stale): room in the byte budget."""
        self._released_bytes += size

    @property
    def held_bytes(self) -> int:
        """Payload bytes received and not yet released."""
        return self._received_bytes - self._released_bytes

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    # -- paho's thread ---------------------------------------------------------------------------

    def _bump(self, *, connected: bool) -> None:
        with self._lock:
            self._generation += 1
            self._connected = connected

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        self._bump(connected=False)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("mqtt connect refused", extra={"reason": str(reason)})
            return
        with self._lock:
            self._connected = True
        # retainHandling=1: retained status only when the subscription is new, not on every reconnect
        opts = SubscribeOptions(qos=1, retainHandling=1)
        client.subscribe([(f, opts) for f in self._filters])
        if self.connected_once.is_set():
            self._metrics.reconnects.inc()
        self.connected_once.set()
        log.info("mqtt connected", extra={"session_present": bool(flags.session_present),
                                          "filters": self._filters})

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        with self._lock:
            if mid == self._barrier_mid:
                self._barrier.set()
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("subscription refused", extra={"filters": self._filters, "reasons": refused})
        else:
            self.subscribed.set()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            # e.g. Not authorized: without receipts the devices keep every event and send it again
            self._metrics.receipts_refused.inc()
            rate_limited(log, "receipt-refused", 60.0).error(
                "the broker refused a receipt: devices will resend; can the bridge's user write "
                "{prefix}/+/receipts (ACL)?", extra={"reason": str(reason)})

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._bump(connected=False)
        if self._accepting:
            log.warning("mqtt disconnected", extra={"reason": str(reason)})

    def _on_message(self, client: mqtt.Client, userdata: Any,
                    message: FastMessage | mqtt.MQTTMessage) -> None:
        if not self._accepting:
            return  # shutting down: the broker keeps it for the session
        if message.dup:
            self._metrics.redelivered.inc()
        size = len(message.payload)
        if self._received_bytes - self._released_bytes + size > self._budget:
            self._wait_for_bytes(size)
        self._received_bytes += size
        inbound = Inbound(self._generation, message, time.monotonic(), time.time())
        try:
            self._queue.put_nowait(inbound)
            return
        except queue.Full:
            pass
        # backpressure (see the module docstring): stop reading the socket until there is room
        self._metrics.intake_waits.inc()
        rate_limited(log, "intake-full", 10.0).warning(
            "intake queue full: the broker sent past our Receive Maximum; pausing reads",
            extra={"size": self._queue.maxsize})
        while self._accepting:
            try:
                self._queue.put(inbound, timeout=0.1)
                return
            except queue.Full:
                continue

    def _wait_for_bytes(self, size: int) -> None:
        """Stop reading the socket until ``size`` more bytes fit the budget (or nothing is held)."""
        self._metrics.byte_budget_waits.inc()
        rate_limited(log, "byte-budget", 10.0).warning(
            "byte budget reached: pausing reads until acknowledgements free room",
            extra={"held_bytes": self.held_bytes, "budget": self._budget})
        while self._accepting and self.held_bytes > 0 and self.held_bytes + size > self._budget:
            time.sleep(0.005)
