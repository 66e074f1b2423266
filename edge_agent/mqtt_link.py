"""The MQTT connection: paho-mqtt 2.x behind a small adapter, driven by the agent loop (no thread).

paho runs in its "external event loop" mode: the agent loop waits in :meth:`MqttLink.poll`, which polls
paho's socket and the loop's :class:`~edge_agent.waker.Waker` together, then calls ``loop_read`` /
``loop_write`` / ``loop_misc``. Every paho callback therefore runs in the agent thread, and publishes
are written to the socket by ``client.publish`` itself. Reconnecting is a state of the same loop:
``poll`` opens a connection once the backoff delay has passed, and in between only waits on the waker.
The agent loop reads:

- ``current``: ``(generation, client)`` of the live connection or ``None``; ``generation`` grows at each
  successful CONNACK, which is how the agent loop learns it must resend from the lowest un-acked seq;
- ``acks``: a deque of ``(generation, mid, ok)``. Bounded by construction: a PUBACK only answers a
  message the agent published, and the agent never has more than ``window`` un-acked messages;
- ``commands``: a ``queue.Queue(maxsize=64)`` of incoming command messages, overflow policy
  ``drop_newest`` counted in ``stats.commands_dropped`` (a command sender retries on its own timeout);
- ``receipts``: a deque of incoming receipt payloads (at most 256; overflow policy ``drop_newest``,
  counted in ``stats.receipts_dropped``: a lost receipt costs a resend, never an event).

Each connection attempt uses a fresh paho client with the same client id (the device id) and a
persistent session (MQTT 5: ``clean_start=False`` and a session expiry; 3.1.1: ``clean_session=False``),
so no message hides in a previous client's buffers: everything un-acked is in the outbox and is
republished by the agent. Reconnects wait :class:`edgebridge.retry.Backoff` (exponential, capped, full
jitter). On connect: a retained ``online`` status; the Last Will is a retained ``offline``.

The TCP connect and TLS handshake of an attempt are blocking (paho has no asynchronous connect) and
bounded by ``min(connect_timeout, 5 s)``; the CONNACK is awaited in the loop, up to ``connect_timeout``.
"""

from __future__ import annotations

import collections
import logging
import math
import queue
import select
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from edge_agent.config import ForwarderConfig
from edge_agent.waker import Waker
from edgebridge.logs import rate_limited
from edgebridge.mqtt.client import FastClient, connect_properties
from edgebridge.mqtt.properties import PackedProperties
from edgebridge.mqtt.sockets import BufferedSocket
from edgebridge.retry import Backoff
from edgebridge.settings import MqttSettings

__all__ = ["LinkStats", "MqttLink"]

log = logging.getLogger(__name__)

_READ = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
_MISC_EVERY = 1.0  # seconds between loop_misc calls (keepalive PINGREQ, PINGRESP timeout)


@dataclass
class LinkStats:
    connects: int = 0  # successful CONNACKs
    connect_failures: int = 0
    disconnects: int = 0
    commands_dropped: int = 0
    receipts_dropped: int = 0
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
        subscribe: list[str],
        receipts_topic: str | None,
        wake: Waker,
    ) -> None:
        self.settings = settings
        self.config = config
        self.client_id = client_id
        self.status_topic = status_topic
        self._online = online
        self._offline = offline
        self._subscribe = subscribe
        self._receipts_topic = receipts_topic
        self._wake = wake
        self.v5 = config.protocol == "5"
        self.current: tuple[int, mqtt.Client] | None = None
        self.generation = 0
        self.acks: collections.deque[tuple[int, int, bool]] = collections.deque()
        self.commands: queue.Queue[mqtt.MQTTMessage] = queue.Queue(64)
        self.receipts: collections.deque[bytes] = collections.deque()
        self.stats = LinkStats()
        self._backoff = Backoff(config.reconnect_initial, config.reconnect_max)
        # the session: a paho client with an open socket (None: waiting for ``_retry_at``)
        self._client: FastClient | None = None
        self._sock: BufferedSocket | None = None
        self._poller = select.poll()
        self._poller.register(wake.fileno(), select.POLLIN)
        self._mask = 0  # what the socket is registered for in the poller (0: not registered)
        self._retry_at = 0.0
        self._began = 0.0
        self._misc_at = 0.0
        self._drop = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect at the next :meth:`poll`."""
        self._closed = False
        self._retry_at = 0.0

    def stop(self, timeout: float = 1.0) -> None:
        """Send DISCONNECT (no Last Will) if connected, close the socket; no reconnect after this."""
        self._closed = True
        client = self._client
        if client is None:
            return
        if self.current is not None:
            self.current = None  # a disconnect of ours: _on_disconnect stays quiet
            self.stats.disconnects += 1
            client.disconnect()
            end = time.monotonic() + timeout
            while client.want_write() and client.socket() is not None and time.monotonic() < end:
                select.select([], [client.socket()], [], 0.05)  # type: ignore[type-var]
                client.loop_write()
        self._end_session()

    def reconnect(self) -> None:
        """Drop the connection; :meth:`poll` reconnects after a backoff."""
        self._drop = True

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
        """Publish QoS 1 on the live connection: ``(generation, mid)``, or ``None`` when offline.
        paho writes the packet from here; what the socket did not take, :meth:`poll` writes."""
        current = self.current
        if current is None:
            return None
        generation, client = current
        props = None
        if self.v5 and (user or content_type or correlation is not None):
            props = PackedProperties(content_type, correlation, user)
        info = client.publish(topic, payload, qos=1, retain=retain, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        return generation, info.mid

    # -- the agent loop's wait ---------------------------------------------------------------------

    # A loop driving many agents waits on every link's socket itself (:attr:`socket`, :meth:`wants_write`)
    # and calls ``poll(0)`` when one is ready or :meth:`due_at` has come: the same work, no wait here.

    @property
    def socket(self) -> BufferedSocket | None:
        """The broker socket (None: no connection): a new object for each connection attempt, whose
        descriptor may have the number of the closed one."""
        return self._sock

    def wants_write(self) -> bool:
        """Bytes are waiting for the socket to take them."""
        sock, client = self._sock, self._client
        return sock is not None and client is not None and bool(sock.unsent or client.want_write())

    def due_at(self) -> float:
        """The monotonic time from which :meth:`poll` has work the socket and the waker will not signal:
        a (re)connect, data already buffered, keepalive, the CONNACK's deadline."""
        if self._closed:
            return math.inf
        sock = self._sock
        if self._client is None or sock is None:
            return self._retry_at
        if self._drop or sock.buffered():
            return 0.0
        if self.current is None:
            return min(self._misc_at, self._began + self.config.connect_timeout)
        return self._misc_at

    def poll(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the broker socket or the waker, then do the network work:
        read (PUBACKs, CONNACK, commands: their callbacks run here), write what is pending, keepalive,
        and connect or reconnect when due. Clears the waker."""
        now = time.monotonic()
        self.stats.heartbeat = now
        if self._drop and self._client is not None:
            self._end_session()
        self._drop = False
        if self._client is None and not self._closed and now >= self._retry_at:
            self._connect(now)
        client, sock = self._client, self._sock
        if client is None or sock is None:
            wait = min(timeout, max(0.0, self._retry_at - now)) if not self._closed else timeout
            self._wait(wait)
            return
        if not sock.flush():
            self._end_session()
            return
        mask = _READ | select.POLLOUT if sock.unsent or client.want_write() else _READ
        if mask != self._mask:
            self._poller.modify(sock.fd, mask)
            self._mask = mask
        ready = self._wait(0.0 if sock.buffered() else timeout)
        rc = mqtt.MQTT_ERR_SUCCESS
        if sock.buffered() or ready.get(sock.fd, 0) & _READ:
            rc = client.loop_read()
        if rc == mqtt.MQTT_ERR_SUCCESS and client.want_write():
            rc = client.loop_write()
        now = time.monotonic()
        if rc == mqtt.MQTT_ERR_SUCCESS and now >= self._misc_at:
            self._misc_at = now + _MISC_EVERY
            rc = client.loop_misc()
        if rc != mqtt.MQTT_ERR_SUCCESS or client.socket() is None or self._drop or not sock.flush():
            self._end_session()
        elif self.current is None and now - self._began > self.config.connect_timeout:
            self.stats.connect_failures += 1
            rate_limited(log, "connack", 30.0).warning("no CONNACK in time", extra={"url": self.settings.url})
            self._end_session()

    def _wait(self, timeout: float) -> dict[int, int]:
        ready = dict(self._poller.poll(timeout * 1000.0))
        if ready.get(self._wake.fileno()) or self._wake.is_set():
            self._wake.clear()
        return ready

    # -- connection states ---------------------------------------------------------------------------

    def _connect(self, now: float) -> None:
        s = self.settings
        client = self._new_client()
        props = connect_properties(self.config.session_expiry) if self.v5 else None
        try:
            client.connect(
                s.host,
                s.port,
                keepalive=s.keepalive,
                clean_start=False if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            )
            if client.socket() is None:  # the CONNECT write failed: paho closed the socket, no raise
                raise ConnectionError("connection lost while sending CONNECT")
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            self.stats.connect_failures += 1
            rate_limited(log, "connect", 30.0).warning("mqtt connect failed",
                                                       extra={"url": s.url, "error": str(exc)})
            client.close_sockets()
            self._retry_at = time.monotonic() + self._backoff.next_delay()
            return
        sock = client.buffer_socket()
        self._client, self._sock = client, sock
        self._poller.register(sock.fd, _READ)
        self._mask = _READ
        self._began = self._misc_at = time.monotonic()

    def _end_session(self) -> None:
        """Close the session's socket and schedule the next attempt after a backoff."""
        client, sock = self._client, self._sock
        self._client = self._sock = None
        if sock is not None and self._mask:
            self._poller.unregister(sock.fd)
        self._mask = 0
        was_connected = self.current is not None
        self.current = None
        if was_connected:
            self.stats.disconnects += 1
        if client is not None:
            client.close_sockets()
        self._retry_at = time.monotonic() + self._backoff.next_delay()

    def _new_client(self) -> FastClient:
        protocol = mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311
        kwargs: dict[str, Any] = {} if self.v5 else {"clean_session": False}
        client = FastClient(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol, **kwargs
        )
        client.connect_timeout = min(self.config.connect_timeout, 5.0)
        # The agent enforces the window, so paho's limit is off (0): paho would otherwise scan every
        # message in flight for a queued one to send, on each PUBACK (and FastClient's PUBACK fast
        # path is taken only with it off).
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        self.settings.authenticate(client)
        client.will_set(self.status_topic, self._offline, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.acked = self._on_acked
        client.on_message = self._on_message
        return client

    # -- paho callbacks (in the agent loop, from poll) -----------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self.stats.connect_failures += 1
            rate_limited(log, "refused", 30.0).error("mqtt connection refused", extra={"reason": str(rc)})
            self._drop = True
            return
        self._backoff.reset()
        client.publish(self.status_topic, self._online(), qos=1, retain=True)
        if self._subscribe:
            client.subscribe([(topic, 1) for topic in self._subscribe])
        self.stats.connects += 1
        self.generation += 1
        self.current = (self.generation, client)
        log.info(
            "mqtt connected", extra={"url": self.settings.url, "session_present": bool(flags.session_present)}
        )

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: Any, rc: Any, _p: Any) -> None:
        if self.current is not None:
            rate_limited(log, "disconnect", 30.0).warning("mqtt disconnected", extra={"reason": str(rc)})

    def _on_publish(self, client: mqtt.Client, _u: object, mid: int, rc: Any, _p: Any) -> None:
        current = self.current
        if current is not None and current[1] is client:
            self.acks.append((current[0], mid, not rc.is_failure))

    def _on_acked(self, client: mqtt.Client, mid: int) -> None:
        current = self.current
        if current is not None and current[1] is client:
            self.acks.append((current[0], mid, True))

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self._receipts_topic:
            if len(self.receipts) >= 256:
                self.stats.receipts_dropped += 1
                rate_limited(log, "receipts-full", 30.0).warning("receipt queue full, receipt dropped")
            else:
                self.receipts.append(bytes(msg.payload))
            return
        try:
            self.commands.put_nowait(msg)
        except queue.Full:
            self.stats.commands_dropped += 1
            rate_limited(log, "commands-full", 30.0).warning(
                "command queue full, command dropped", extra={"topic": msg.topic}
            )
