"""Building a paho MQTT 5 client from :class:`~edgebridge.settings.MqttSettings` (TLS, credentials).

Read buffering: paho reads a packet in three or more ``recv`` calls (command byte, each length byte,
body) plus one ``select`` per packet; at thousands of small PUBLISHes a second those syscalls, each
releasing and re-taking the GIL that the uplink's service thread wants too, were most of the bridge's
MQTT cost. :class:`_BufferedSocket` serves those reads from one 64 KiB ``recv`` and reports the rest
through ``pending()``, the hook paho's loop already uses for TLS buffers (it then polls the socket
with a zero timeout and reads on). TLS sockets buffer a record themselves and are left alone.
"""

from __future__ import annotations

import socket
import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgebridge.settings import MqttSettings

__all__ = ["connect_properties", "new_client"]


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


class _Client(mqtt.Client):
    # paho 2.1/2.2 create the socket in this (private) method; see the module docstring for why
    def _create_socket(self) -> object:  # type: ignore[override]
        sock = super()._create_socket()
        return _BufferedSocket(sock) if type(sock) is socket.socket else sock


def new_client(settings: MqttSettings, client_id: str, *, manual_ack: bool) -> mqtt.Client:
    client = _Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if settings.username is not None:
        password = settings.password.reveal() if settings.password is not None else None
        client.username_pw_set(settings.username, password)
    if settings.tls:
        client.tls_set(
            ca_certs=str(settings.ca_file) if settings.ca_file else None,
            certfile=str(settings.cert_file) if settings.cert_file else None,
            keyfile=str(settings.key_file) if settings.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    # paho's own reconnect loop: it owns the thread; capped so an hour-long outage retries every 30 s
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect_properties(session_expiry: int, receive_maximum: int | None = None) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return props
