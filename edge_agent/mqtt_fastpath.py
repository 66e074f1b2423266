"""What the agent changes under paho-mqtt 2.x on its per-message path, for its one publisher per
process (the figures behind each: ``bench/RESULTS.md``, Agent).

- :class:`PackedProperties`: PUBLISH properties packed once;
- :class:`FastClient`: a success PUBACK without properties handled in a few bytecodes;
- :class:`BufferedSocket`: one ``recv`` / ``send`` syscall per loop iteration, not per packet.

They rely on paho internals (``_in_packet``, ``_out_messages``, ``_inflight_messages``, ``_sock``),
which is why ``pyproject.toml`` pins ``paho-mqtt>=2.2,<2.3``; every test that publishes (``tests/agent``)
exercises them.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

from edgebridge.mqtt_wire import varint

__all__ = ["BufferedSocket", "FastClient", "PackedProperties"]


class FastClient(mqtt.Client):
    """paho's client with a fast path for the packet the agent receives once per message: a PUBACK
    with a success reason (0x00 Success, 0x10 No matching subscribers) and no properties. paho
    decodes each into a ``ReasonCode`` and a ``Properties`` object, the largest per-message cost of
    the loop; here the packet id is read from its two bytes and handed to :attr:`acked`.
    Any other PUBACK (a failure reason code, properties) and every other packet take paho's own
    path, to ``on_publish``. Relies on paho internals (``_in_packet``, ``_out_messages``,
    ``_inflight_messages``): see the module docstring for the pin."""

    acked: Callable[[mqtt.Client, int], None]

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> mqtt.MQTTErrorCode:
        packet = self._in_packet["packet"]
        size = len(packet)
        # packet id (2 bytes); MQTT 5 may add a reason code, then a property length (0: none)
        plain = size == 2 or (
            self._protocol == mqtt.MQTTv5
            and (size == 3 or (size == 4 and packet[3] == 0))
            and packet[2] < 0x80
        )
        if cmd == "PUBACK" and plain:
            mid = packet[0] << 8 | packet[1]
            with self._out_message_mutex:
                msg = self._out_messages.pop(mid, None)
                if msg is None:
                    return mqtt.MQTT_ERR_SUCCESS
                self._inflight_messages -= 1
            msg.info._set_as_published()
            self.acked(self, mid)
            return mqtt.MQTT_ERR_SUCCESS
        return super()._handle_pubackcomp(cmd)


class BufferedSocket:
    """paho's socket with a read buffer and a write buffer, so that syscalls are per loop iteration,
    not per packet.

    Reads: paho reads a packet in three ``recv`` calls (command byte, length, body), three syscalls
    per PUBACK; this reads up to 64 KiB per syscall and hands paho its bytes from memory.
    :meth:`buffered` tells ``MqttLink.poll`` not to wait while bytes remain (here, or decrypted inside
    an ``SSLSocket``), since the socket's fd no longer shows them.

    Writes: paho sends each packet as it is queued (one ``send`` per publish); this takes them into
    :attr:`unsent` and :meth:`flush` sends them in one call when the loop next waits. Nothing is
    lost by the delay: an unsent message is un-acked, so its row is still in the outbox."""

    __slots__ = ("_buf", "_pos", "_tls", "fd", "sock", "unsent")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.fd: int = sock.fileno()
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._buf = b""
        self._pos = 0
        self.unsent: list[bytes] = []

    def recv(self, size: int) -> bytes:
        pos = self._pos
        if pos >= len(self._buf):
            data: bytes = self.sock.recv(65536)  # BlockingIOError / SSLWantReadError: paho handles
            if len(data) <= size:
                return data
            self._buf, pos = data, 0
        end = pos + size
        self._pos = end
        return self._buf[pos:end]

    def buffered(self) -> bool:
        return self._pos < len(self._buf) or (self._tls and self.sock.pending() > 0)

    def send(self, data: bytes | bytearray) -> int:
        self.unsent.append(bytes(data))
        return len(data)

    def flush(self) -> bool:
        """Send what paho wrote, as far as the socket takes it now; ``False`` if the connection is
        broken (the caller ends the session)."""
        if not self.unsent:
            return True
        data = b"".join(self.unsent) if len(self.unsent) > 1 else self.unsent[0]
        try:
            sent: int = self.sock.send(data)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            sent = 0
        except OSError:
            return False
        self.unsent = [data[sent:]] if sent < len(data) else []
        return True

    def fileno(self) -> int:
        return self.fd

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def pending(self) -> int:
        return len(self._buf) - self._pos + (self.sock.pending() if self._tls else 0)

    def close(self) -> None:
        """Close, after one non-blocking attempt to send what is left (e.g. paho's DISCONNECT)."""
        self.flush()
        self._buf = b""
        self._pos = 0
        self.unsent = []
        self.sock.close()


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
        head = bytes((size,)) if size < 128 else varint(size)
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


