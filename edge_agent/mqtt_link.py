"""The MQTT connection: paho-mqtt 2.x behind a small adapter, one network thread.

paho owns a blocking network loop, so this is the one thread the forwarder needs. It talks to the agent
loop through:

- ``current``: ``(generation, client)`` of the live connection or ``None``; ``generation`` grows at each
  successful CONNACK, which is how the agent loop learns it must resend from the lowest un-acked seq;
- ``acks``: a deque of ``(generation, mid, ok)``. Bounded by construction: a PUBACK only answers a
  message the agent published, and the agent never has more than ``window`` un-acked messages;
- ``commands``: a ``queue.Queue(maxsize=64)`` of incoming command messages, overflow policy
  ``drop_newest`` counted in ``stats.commands_dropped`` (a command sender retries on its own timeout).

Each connection attempt uses a fresh paho client with the same client id (the device id) and a
persistent session (MQTT 5: ``clean_start=False`` and a session expiry; 3.1.1: ``clean_session=False``),
so no message hides in a previous client's buffers: everything un-acked is in the outbox and is
republished by the agent. Reconnects wait :class:`edgebridge.retry.Backoff` (exponential, capped, full
jitter). On connect: a retained ``online`` status; the Last Will is a retained ``offline``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.config import ForwarderConfig
from edgebridge.logs import RateLimitedLogger
from edgebridge.retry import Backoff
from edgebridge.settings import MqttSettings

__all__ = ["LinkStats", "MqttLink"]

log = logging.getLogger(__name__)
_limited = RateLimitedLogger(log, interval=30.0)


@dataclass
class LinkStats:
    connects: int = 0  # successful CONNACKs
    connect_failures: int = 0
    disconnects: int = 0
    commands_dropped: int = 0
    heartbeat: float = 0.0


class MqttLink:
    def __init__(
        self,
        settings: MqttSettings,
        config: ForwarderConfig,
        client_id: str,
        *,
        status_topic: str,
        online: Callable[[], bytes],
        offline: bytes,
        subscribe: str | None,
        wake: threading.Event,
    ) -> None:
        self.settings = settings
        self.config = config
        self.client_id = client_id
        self.status_topic = status_topic
        self._online = online
        self._offline = offline
        self._subscribe = subscribe
        self._wake = wake
        self.v5 = config.protocol == "5"
        self.current: tuple[int, mqtt.Client] | None = None
        self.generation = 0
        self.acks: collections.deque[tuple[int, int, bool]] = collections.deque()
        self.commands: queue.Queue[mqtt.MQTTMessage] = queue.Queue(64)
        self.stats = LinkStats()
        self._stop = threading.Event()
        self._drop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(config.reconnect_initial, config.reconnect_max)
        # PUBACKs that wake the agent loop; the forwarder sets it after each burst to a quarter window,
        # or to what is in flight when that is less: the loop refills the window in bursts (fewer GIL
        # hand-offs between the two threads) and still learns at once when everything is acked.
        self.ack_wake = 1

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-network", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def reconnect(self) -> None:
        """Drop the connection; the network thread reconnects after a backoff."""
        self._drop.set()

    # -- publishing, from the agent loop -----------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        user: list[tuple[str, str]] | None = None,
        content_type: str | None = None,
        correlation: bytes | None = None,
    ) -> tuple[int, int] | None:
        """Publish QoS 1 on the live connection: ``(generation, mid)``, or ``None`` when offline."""
        current = self.current
        if current is None:
            return None
        generation, client = current
        props = None
        if self.v5 and (user or content_type or correlation is not None):
            props = PackedProperties(content_type, correlation, user)
        info = client.publish(topic, payload, qos=1, retain=retain, properties=props)
        if client.want_write():
            # paho could not write it all from this thread (socket buffer full, or the network thread
            # was in a callback): the network thread must, so wake it (see _QuietWake)
            wake = client._sockpairW
            if isinstance(wake, _QuietWake):
                wake.wake()
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        return generation, info.mid

    # -- the network thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            client = self._new_client()
            self._session(client)
            if self._stop.is_set():
                break
            if not self._backoff.wait(self._stop):
                break

    def _new_client(self) -> mqtt.Client:
        s = self.settings
        protocol = mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311
        kwargs: dict[str, Any] = {} if self.v5 else {"clean_session": False}
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol, **kwargs
        )
        # the agent enforces the window; paho's own limit must never be the smaller one
        client.max_inflight_messages_set(self.config.window + 2)
        client.max_queued_messages_set(0)
        if s.username is not None:
            client.username_pw_set(s.username, s.password.reveal() if s.password else None)
        if s.tls:
            client.tls_set(
                ca_certs=str(s.ca_file) if s.ca_file else None,
                certfile=str(s.cert_file) if s.cert_file else None,
                keyfile=str(s.key_file) if s.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.will_set(self.status_topic, self._offline, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _session(self, client: mqtt.Client) -> None:
        s = self.settings
        props = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.config.session_expiry
        try:
            client.connect(
                s.host,
                s.port,
                keepalive=s.keepalive,
                clean_start=False if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            self.stats.connect_failures += 1
            _limited.warning("connect", "mqtt connect failed", extra={"url": s.url, "error": str(exc)})
            _close(client)
            return
        began = time.monotonic()
        self._drop.clear()
        try:
            while not self._stop.is_set() and not self._drop.is_set():
                self.stats.heartbeat = time.monotonic()
                rc = client.loop(timeout=0.05)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                if self.current is None and time.monotonic() - began > self.config.connect_timeout:
                    self.stats.connect_failures += 1
                    _limited.warning("connack", "no CONNACK in time", extra={"url": s.url})
                    break
        finally:
            was_connected = self.current is not None
            self.current = None
            if was_connected:
                self.stats.disconnects += 1
            if self._stop.is_set() and was_connected:
                client.disconnect()
                for _ in range(20):
                    if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                        break
            _close(client)
            self._wake.set()

    # -- paho callbacks (network thread) -----------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self.stats.connect_failures += 1
            _limited.error("refused", "mqtt connection refused", extra={"reason": str(rc)})
            self._drop.set()
            return
        self._backoff.reset()
        _quiet_wakeups(client)
        client.publish(self.status_topic, self._online(), qos=1, retain=True)
        if self._subscribe:
            client.subscribe(self._subscribe, qos=1)
        self.stats.connects += 1
        self.generation += 1
        self.current = (self.generation, client)
        log.info(
            "mqtt connected", extra={"url": self.settings.url, "session_present": bool(flags.session_present)}
        )
        self._wake.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: Any, rc: Any, _p: Any) -> None:
        if self.current is not None:
            _limited.warning("disconnect", "mqtt disconnected", extra={"reason": str(rc)})
        self.current = None

    def _on_publish(self, client: mqtt.Client, _u: object, mid: int, rc: Any, _p: Any) -> None:
        current = self.current
        if current is not None and current[1] is client:
            ok = not rc.is_failure
            self.acks.append((current[0], mid, ok))
            # Wake the agent loop per ``ack_wake`` PUBACKs, not per PUBACK (see there).
            if len(self.acks) >= self.ack_wake or not ok:
                self._wake.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            self.commands.put_nowait(msg)
        except queue.Full:
            self.stats.commands_dropped += 1
            _limited.warning(
                "commands-full", "command queue full, command dropped", extra={"topic": msg.topic}
            )
            return
        self._wake.set()


class PackedProperties(Properties):
    """PUBLISH properties packed once, in :meth:`__init__`.

    paho's :class:`Properties` packs itself by probing every property name of MQTT 5 (~40 ``hasattr``
    and list lookups per message); on the per-event path that cost more than the rest of a publish.
    paho only calls :meth:`pack` on an outgoing PUBLISH, so this subclass hands it the bytes built here:
    Content Type (0x03), Correlation Data (0x09), then one User Property (0x26) per pair, in that order.
    """

    __slots__ = ("_packed", "_summary")
    _packed: bytes
    _summary: tuple[str | None, bytes | None, list[tuple[str, str]] | None]

    def __init__(
        self,
        content_type: str | None = None,
        correlation: bytes | None = None,
        user: list[tuple[str, str]] | None = None,
    ) -> None:
        # Properties.__init__ is skipped on purpose: it sets ~10 attributes through a validating
        # __setattr__ (20 us); nothing but pack() and str() is ever asked of an outgoing PUBLISH's.
        parts = [_content_type(content_type)] if content_type else []
        if correlation is not None:
            parts += (b"\x09", _str16(correlation))
        for key, value in user or ():
            parts += (b"\x26", _str16(key.encode()), _str16(value.encode()))
        body = b"".join(parts)
        size = len(body)
        head = bytes((size,)) if size < 128 else _varint(size)
        object.__setattr__(self, "_packed", head + body)
        object.__setattr__(self, "_summary", (content_type, correlation, user))

    def pack(self) -> bytes:
        return self._packed

    def __str__(self) -> str:
        content_type, correlation, user = self._summary
        return f"[ContentType: {content_type}, CorrelationData: {correlation!r}, UserProperty: {user}]"


@functools.lru_cache(maxsize=16)
def _content_type(value: str) -> bytes:
    return b"\x03" + _str16(value.encode())


def _str16(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _QuietWake:
    """Stands in for paho's wake-up socket (``_sockpairW``): paho sends one byte on it per publish to
    break its network loop out of ``select``, a syscall in the publishing thread plus a wake-up, a read
    and a write attempt in the network thread, per message. Our publishes are written by paho directly
    from the agent loop (paho does that when no ``loop_start`` thread exists), so the wake-up is only
    needed when something is left to write, which :meth:`MqttLink.publish` checks."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, data: bytes) -> int:
        return len(data)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self.sock.send(b"0")

    def close(self) -> None:
        self.sock.close()


def _quiet_wakeups(client: mqtt.Client) -> None:
    """Install :class:`_QuietWake` on a connected client (paho made its socket pair in ``loop()``)."""
    wake = client._sockpairW
    if wake is not None and not isinstance(wake, _QuietWake):
        client._sockpairW = _QuietWake(wake)  # type: ignore[assignment]


def _close(client: mqtt.Client) -> None:
    """Release the socket and paho's wake-up socket pair now, not at garbage collection."""
    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
    client._reset_sockets()
