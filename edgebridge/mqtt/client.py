"""The paho client both sides build on, and what a client driven by its caller's loop needs.

:class:`FastClient` takes the packet a publisher receives once per message, a PUBACK with a success
reason (0x00 Success, 0x10 No matching subscribers) and no properties, without paho's decoding into a
``ReasonCode`` and a ``Properties`` object (the largest per-message cost of a publishing loop): the
packet id is read from its two bytes, the message marked published and handed to :attr:`acked`
instead of ``on_publish``. Only with paho's in-flight limit off (``max_inflight_messages_set(0)``,
the caller bounds what is un-acknowledged): under a limit a PUBACK must also send what waited for room,
which only paho's own path does. Any other PUBACK (a failure reason code, properties) and every other
packet take paho's path, to ``on_publish``.

A caller that runs paho in its "external event loop" mode (the agent: ``loop_read`` / ``loop_write``
from its own poll) wraps the socket after ``connect`` with :meth:`FastClient.buffer_socket` and
releases it with :meth:`FastClient.close_sockets`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgebridge.mqtt.sockets import BufferedSocket

__all__ = ["FastClient", "connect_properties"]


class FastClient(mqtt.Client):
    """paho's client with the success-PUBACK fast path (see the module docstring)."""

    acked: Callable[[mqtt.Client, int], None] | None = None

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> mqtt.MQTTErrorCode:
        packet = self._in_packet["packet"]
        size = len(packet)
        # packet id (2 bytes); MQTT 5 may add a reason code below 0x80, then a property length (0: none)
        if cmd == "PUBACK" and self._max_inflight_messages == 0 and (size == 2 or (
                self._protocol == mqtt.MQTTv5
                and (size == 3 or (size == 4 and packet[3] == 0))
                and packet[2] < 0x80)):
            mid = packet[0] << 8 | packet[1]
            with self._out_message_mutex:
                message = self._out_messages.pop(mid, None)
                if message is None:
                    return mqtt.MQTT_ERR_SUCCESS
                self._inflight_messages -= 1
            message.info._set_as_published()
            acked = self.acked
            if acked is not None:
                acked(self, mid)
            return mqtt.MQTT_ERR_SUCCESS
        return super()._handle_pubackcomp(cmd)

    @property
    def unacknowledged(self) -> int:
        """Messages we published and the broker has not PUBACKed yet."""
        return len(self._out_messages)

    def buffer_socket(self) -> BufferedSocket:
        """After a successful ``connect``: put the socket behind read and write buffers (the caller's
        loop then flushes it, :meth:`BufferedSocket.flush`, and polls :attr:`BufferedSocket.fd`)."""
        raw = self._sock
        if raw is None:
            raise RuntimeError("buffer_socket() before connect()")
        sock = BufferedSocket(raw)
        self._sock = sock
        return sock

    def close_sockets(self) -> None:
        """Release the socket and paho's wake-up socket pair now, not at garbage collection."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self._reset_sockets()


def connect_properties(session_expiry: int, receive_maximum: int | None = None) -> Properties:
    """MQTT 5 CONNECT properties: a session expiry and, when given, a Receive Maximum."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return props
