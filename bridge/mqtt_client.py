"""Building a paho MQTT 5 client from :class:`~edgebridge.settings.MqttSettings` (TLS, credentials).

Read buffering: paho reads a packet in three or more ``recv`` calls (command byte, each length byte,
body) plus one ``select`` per packet; at thousands of small PUBLISHes a second those syscalls, each
releasing and re-taking the GIL that the uplink's service thread wants too, were most of the bridge's
MQTT cost. :class:`_BufferedSocket` serves those reads from one 64 KiB ``recv`` and reports the rest
through ``pending()``, the hook paho's loop already uses for TLS buffers (it then polls the socket
with a zero timeout and reads on). TLS sockets buffer a record themselves and are left alone.

Incoming PUBLISH fast path: for every PUBLISH, paho builds an MQTT 5 ``Properties`` object (its
``__init__`` sets ~10 attributes through a validating ``__setattr__``, even with no properties), an
``MQTTMessage`` (with a ``threading.Condition``), a debug log line, and matches the topic against
per-filter callbacks: most of paho's thread's CPU per message (figures: ``bench/RESULTS.md``, Bridge).
:meth:`_Client._handle_publish` decodes the common shape itself: MQTT 5, QoS 0 or 1, a UTF-8 topic, and
only the properties a broker forwards from a publisher (:data:`_PROPS`), into a :class:`FastMessage`
with :class:`FastProperties`; anything else (QoS 2, MQTT 3.1.1, other properties, invalid UTF-8,
per-filter callbacks, a malformed packet) takes paho's own path unchanged.

PUBACKs: :meth:`_Client.ack_all` queues all of a turn's PUBACKs as one write, instead of one queued
packet, one wake-up byte to paho's thread and one ``send`` each.

Receipts (the only thing the uplink's client publishes; figures: ``bench/RESULTS.md``, Receipts):
:meth:`_Client.publish_all` queues the receipts going out in a turn as one write, with their
properties packed once (:class:`PackedProperties`), instead of paho's
``publish`` per receipt (which packs the properties again and wakes paho's thread with a byte per
packet); a success PUBACK of ours is taken in :meth:`_Client._handle_pubackcomp` without paho's
decoding into ``ReasonCode`` and ``Properties`` objects and without ``on_publish``, and paho's
in-flight limit is off (the caller bounds what is un-acknowledged): with it on, paho walks every
message it holds on each PUBACK, looking for a queued one to send. A failure PUBACK (the broker refused
a receipt) still goes through paho, to ``on_publish``.

Both rely on paho internals (``_in_packet``, ``_packet_queue``, ``_out_messages``,
``_on_message_filtered``, ``_in_callback_mutex``), which is why ``pyproject.toml`` pins
``paho-mqtt>=2.2,<2.3``; every uplink test exercises them.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgebridge.mqtt_wire import varint
from edgebridge.settings import MqttSettings

__all__ = ["FastMessage", "FastProperties", "PackedProperties", "connect_properties", "new_client"]


class _BufferedSocket:
    """A plain TCP socket whose reads come from a buffer filled 64 KiB at a time."""

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self._sock.recv(65536)  # BlockingIOError when empty: paho's "try again"
            if not data:
                return data  # EOF
            self._buf, self._pos = data, 0
        start = self._pos
        self._pos = min(start + size, len(self._buf))
        return self._buf[start : self._pos]

    def pending(self) -> int:
        return len(self._buf) - self._pos

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)  # send, fileno, close, setblocking, ...


class FastProperties:
    """The PUBLISH properties a broker forwards, as plain attributes (``None``: absent); read like
    paho's ``Properties`` (``getattr(props, "ContentType", None)``)."""

    __slots__ = ("ContentType", "CorrelationData", "MessageExpiryInterval", "PayloadFormatIndicator",
                 "ResponseTopic", "UserProperty")

    def __init__(self) -> None:
        self.ContentType: str | None = None
        self.CorrelationData: bytes | None = None
        self.MessageExpiryInterval: int | None = None
        self.PayloadFormatIndicator: int | None = None
        self.ResponseTopic: str | None = None
        self.UserProperty: list[tuple[str, str]] | None = None


class FastMessage:
    """What the uplink reads of an incoming PUBLISH (the attributes of paho's ``MQTTMessage`` it uses)."""

    __slots__ = ("dup", "mid", "payload", "properties", "qos", "retain", "topic")

    def __init__(self, topic: str, payload: bytes, qos: int, mid: int, dup: bool, retain: bool,
                 properties: FastProperties) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.mid = mid
        self.dup = dup
        self.retain = retain
        self.properties = properties


class _Malformed(Exception):
    """Not the common shape: let paho decode (and judge) the packet."""


def _str(data: bytes, pos: int) -> tuple[bytes, int]:
    end = pos + 2 + (data[pos] << 8 | data[pos + 1])
    if end > len(data):
        raise _Malformed
    return data[pos + 2 : end], end


def _decode_props(data: bytes, pos: int, end: int) -> FastProperties:
    props = FastProperties()
    seen = 0
    while pos < end:
        ident = data[pos]
        pos += 1
        if ident != 0x26:  # only the user property may repeat: paho rejects any other twice
            bit = 1 << (ident & 0x3F)
            if seen & bit:
                raise _Malformed
            seen |= bit
        if ident == 0x03:
            raw, pos = _str(data, pos)
            props.ContentType = raw.decode()
        elif ident == 0x26:
            key, pos = _str(data, pos)
            value, pos = _str(data, pos)
            if props.UserProperty is None:
                props.UserProperty = []
            props.UserProperty.append((key.decode(), value.decode()))
        elif ident == 0x09:
            props.CorrelationData, pos = _str(data, pos)
        elif ident == 0x08:
            raw, pos = _str(data, pos)
            props.ResponseTopic = raw.decode()
        elif ident == 0x01:
            props.PayloadFormatIndicator = data[pos]
            pos += 1
        elif ident == 0x02:
            props.MessageExpiryInterval = int.from_bytes(data[pos : pos + 4], "big")
            pos += 4
        else:
            raise _Malformed  # e.g. a topic alias or subscription identifier: paho's path
    if pos != end:
        raise _Malformed
    return props


_PUBACK = struct.Struct("!BBH")
_MID = struct.Struct("!H")


class PackedProperties(Properties):
    """PUBLISH properties holding only a Content Type, packed once: paho's ``Properties.pack`` probes
    every MQTT 5 property name per call. paho asks an outgoing message's properties only for ``pack``
    (when it resends after a reconnect) and ``str`` (debug logging)."""

    __slots__ = ("_content_type", "_packed")
    _packed: bytes
    _content_type: str

    def __init__(self, content_type: str) -> None:
        # Properties.__init__ skipped on purpose: ~10 attributes through a validating __setattr__
        raw = content_type.encode()
        body = b"\x03" + len(raw).to_bytes(2, "big") + raw
        object.__setattr__(self, "_packed", varint(len(body)) + body)
        object.__setattr__(self, "_content_type", content_type)

    def pack(self) -> bytes:
        return self._packed

    def __str__(self) -> str:
        return f"[ContentType: {self._content_type}]"


class _Client(mqtt.Client):
    # paho 2.1/2.2 create the socket in this (private) method; see the module docstring for why
    def _create_socket(self) -> object:  # type: ignore[override]
        sock = super()._create_socket()
        return _BufferedSocket(sock) if type(sock) is socket.socket else sock

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        on_message = self.on_message
        if (qos > 1 or self._protocol != mqtt.MQTTv5 or on_message is None
                or (qos == 1 and not self._manual_ack) or self._on_message_filtered._root._children):
            return super()._handle_publish()
        data = bytes(self._in_packet["packet"])  # no copy: paho reads into bytes
        try:
            raw_topic, pos = _str(data, 0)
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
                        raise _Malformed
            end = pos + size
            if end > len(data):
                raise _Malformed
            props = _decode_props(data, pos, end)
        except (_Malformed, IndexError, UnicodeDecodeError):
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

    @property
    def unacknowledged(self) -> int:
        """Messages we published and the broker has not PUBACKed yet."""
        return len(self._out_messages)

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

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> mqtt.MQTTErrorCode:
        packet = self._in_packet["packet"]
        size = len(packet)
        # Only with paho's in-flight limit off (the uplink's receipts): under a limit (the downlink's
        # commands, paho's default 20) a PUBACK must also send what waited for room, which only paho's
        # own path does. Then: packet id, (MQTT 5, optional) a reason code below 0x80, no properties.
        if cmd == "PUBACK" and self._max_inflight_messages == 0 and (
                size == 2 or ((size == 3 or (size == 4 and packet[3] == 0)) and packet[2] < 0x80)):
            with self._out_message_mutex:
                message = self._out_messages.pop(packet[0] << 8 | packet[1], None)
                if message is not None:
                    self._inflight_messages -= 1
            if message is not None:
                message.info._set_as_published()
            return mqtt.MQTT_ERR_SUCCESS
        return super()._handle_pubackcomp(cmd)

    def ack_all(self, mids: list[int]) -> None:
        """Queue a PUBACK (QoS 1, success) for each of ``mids``, as one write to the socket."""
        pack = _PUBACK.pack
        self._packet_queue(mqtt.PUBACK, b"".join([pack(mqtt.PUBACK, 2, mid) for mid in mids]), 0, 0)


def new_client(settings: MqttSettings, client_id: str, *, manual_ack: bool) -> _Client:
    client = _Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    settings.authenticate(client)
    # paho's own reconnect loop: it owns the thread; capped so an hour-long outage retries every 30 s
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect_properties(session_expiry: int, receive_maximum: int | None = None) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return props
