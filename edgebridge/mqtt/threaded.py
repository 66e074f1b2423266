"""The paho client that paho's own network thread runs (``loop_start``): the bridge's uplink and
downlink clients, built by :func:`new_client` from :class:`~edgebridge.settings.MqttSettings`.

On top of :class:`~edgebridge.mqtt.client.FastClient`'s success-PUBACK path:

- Buffered reads: a plain TCP socket is wrapped at creation in a
  :class:`~edgebridge.mqtt.sockets.ReadBufferedSocket`; TLS sockets buffer a record themselves and are
  left alone.
- Incoming PUBLISH: :meth:`ThreadedClient._handle_publish` decodes the common shape itself: MQTT 5,
  QoS 0 or 1, a UTF-8 topic, only the properties a broker forwards from a publisher, no per-filter
  callbacks, into a :class:`~edgebridge.mqtt.incoming.FastMessage`; anything else (QoS 2, MQTT 3.1.1,
  other properties, invalid UTF-8, a malformed packet) takes paho's own path unchanged.
- PUBACKs: :meth:`ThreadedClient.ack_all` queues all of a turn's PUBACKs as one write, instead of one
  queued packet, one wake-up byte to paho's thread and one ``send`` each.
- Publishing many (the bridge's receipts): :meth:`ThreadedClient.publish_all` queues them as one write
  with their properties packed once, held in paho's ``_out_messages`` as ``publish`` would hold them.
- Reconnects: paho's thread waits between attempts in ``_reconnect_wait``, doubling from
  ``min_delay`` to ``max_delay`` in lockstep for every client that lost the same broker;
  :meth:`ThreadedClient._reconnect_wait` waits :class:`edgebridge.retry.Backoff` instead (full jitter:
  ``uniform(0, ceiling)`` under the same doubling ceiling, reset by a successful CONNACK), the
  project's one retry policy. So replicas and the uplink and downlink clients of a bridge spread their
  attempts, and no wait is ever longer than paho's own.
"""

from __future__ import annotations

import math
import socket
import struct
import time

import paho.mqtt.client as mqtt

from edgebridge.mqtt.client import FastClient
from edgebridge.mqtt.incoming import FastMessage, Malformed, decode_properties, read_str
from edgebridge.mqtt.properties import PackedProperties
from edgebridge.mqtt.sockets import ReadBufferedSocket
from edgebridge.mqtt.wire import varint
from edgebridge.retry import Backoff
from edgebridge.settings import MqttSettings

__all__ = ["ThreadedClient", "new_client"]

_PUBACK = struct.Struct("!BBH")
_MID = struct.Struct("!H")
_ENDED = (mqtt._ConnectionState.MQTT_CS_DISCONNECTING, mqtt._ConnectionState.MQTT_CS_DISCONNECTED)


class ThreadedClient(FastClient):
    _backoff: Backoff | None = None

    def _create_socket(self) -> object:  # type: ignore[override]
        sock = super()._create_socket()
        return ReadBufferedSocket(sock) if type(sock) is socket.socket else sock

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        on_message = self.on_message
        if (qos > 1 or self._protocol != mqtt.MQTTv5 or on_message is None
                or (qos == 1 and not self._manual_ack) or self._on_message_filtered._root._children):
            return super()._handle_publish()
        data = bytes(self._in_packet["packet"])  # no copy: paho reads into bytes
        try:
            raw_topic, pos = read_str(data, 0)
            topic = raw_topic.decode()
            mid = 0
            if qos:
                mid = data[pos] << 8 | data[pos + 1]
                pos += 2
            size = data[pos]  # the property length: a variable byte integer
            pos += 1
            if size > 127:
                size &= 127
                shift = 7
                while True:
                    byte = data[pos]
                    pos += 1
                    size |= (byte & 127) << shift
                    if byte < 128:
                        break
                    shift += 7
                    if shift > 21:
                        raise Malformed
            end = pos + size
            if end > len(data):
                raise Malformed
            props = decode_properties(data, pos, end)
        except (Malformed, IndexError, UnicodeDecodeError):
            return super()._handle_publish()
        dup, retain = bool(header & 0x08), bool(header & 0x01)
        message = FastMessage(topic, data[end:], qos, mid, dup, retain, props)
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)  # type: ignore[arg-type]
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise
        return mqtt.MQTT_ERR_SUCCESS

    def publish_all(self, messages: list[tuple[str, bytes]], properties: PackedProperties) -> int:
        """Queue a QoS 1 PUBLISH of each ``(topic, payload)`` as one write; how many were queued (0
        without a socket; fewer when all packet ids are in use). Each is held in paho's
        ``_out_messages`` as ``publish`` would, so paho resends it after a reconnect until PUBACKed."""
        if self._sock is None or not messages:
            return 0
        props = properties.pack()
        packets: list[bytes] = []
        queued = 0
        now = time.monotonic()
        with self._out_message_mutex:
            out = self._out_messages
            for topic, payload in messages:
                mid = self._mid_generate()
                if mid in out:
                    break  # 65,535 un-acknowledged: the rest waits
                raw_topic = topic.encode()
                message = mqtt.MQTTMessage(mid, raw_topic)
                message.timestamp = now
                message.payload = payload
                message.qos = 1
                message.state = mqtt.mqtt_ms_wait_for_puback
                message.properties = properties
                out[mid] = message
                remaining = 4 + len(raw_topic) + len(props) + len(payload)
                packets += (b"\x32", varint(remaining), _MID.pack(len(raw_topic)), raw_topic,
                            _MID.pack(mid), props, payload)
                queued += 1
            self._inflight_messages += queued
        if queued:
            # qos 1 here: paho treats a written QoS 0 PUBLISH as complete (on_publish, info)
            self._packet_queue(mqtt.PUBLISH, b"".join(packets), 0, 1)
        return queued

    def ack_all(self, mids: list[int]) -> None:
        """Queue a PUBACK (QoS 1, success) for each of ``mids``, as one write to the socket."""
        pack = _PUBACK.pack
        self._packet_queue(mqtt.PUBACK, b"".join([pack(mqtt.PUBACK, 2, mid) for mid in mids]), 0, 0)

    def reconnect_delay_set(self, min_delay: int = 1, max_delay: int = 120) -> None:
        """paho's, checked here: the backoff is built on paho's thread, where a bad pair would end
        that thread silently (no reconnect ever)."""
        if not 0 < min_delay <= max_delay:
            raise ValueError(f"need 0 < min_delay <= max_delay, got {min_delay}, {max_delay}")
        super().reconnect_delay_set(min_delay, max_delay)

    def _reconnect_wait(self) -> None:
        # paho's thread, before each reconnect attempt; paho sets _reconnect_delay to None on a
        # successful CONNACK and in reconnect_delay_set(): the backoff starts over then
        with self._reconnect_delay_mutex:
            if self._reconnect_delay is None or self._backoff is None:
                self._backoff = Backoff(self._reconnect_min_delay, self._reconnect_max_delay)
            # a floor of half the first ceiling: a connection that drops right after each CONNACK
            # (a session taken over by a twin, a packet the broker redelivers and paho refuses) would
            # otherwise cycle with waits near 0, where paho waited min_delay
            delay = max(self._reconnect_min_delay / 2, self._backoff.next_delay())
            self._reconnect_delay = math.ceil(delay)  # paho's int; None only after a CONNACK
        # as paho waits: in steps of at most 1 s, ended by disconnect() or loop_stop()
        end = time.monotonic() + delay
        remaining = delay
        while self._state not in _ENDED and not self._thread_terminate and remaining > 0:
            time.sleep(min(remaining, 1.0))
            remaining = end - time.monotonic()


def new_client(settings: MqttSettings, client_id: str, *, manual_ack: bool) -> ThreadedClient:
    """An MQTT 5 client with the settings' credentials and TLS; its reconnect waits are capped at
    30 s, so that an hour-long outage is retried at least every 30 s."""
    client = ThreadedClient(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    settings.authenticate(client)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client
