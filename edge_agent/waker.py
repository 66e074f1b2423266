"""The agent loop's wake-up: a flag plus a socket pair whose read end the loop polls with paho's socket.

Source threads call :meth:`Waker.set` (the ``threading.Event`` call they used before); the agent loop
waits in :meth:`edge_agent.mqtt_link.MqttLink.poll`, on the broker socket and :meth:`fileno` at once, so
one ``poll`` wakes for either. One byte is written per ``False -> True`` change of the flag, not per
``set``: a busy source costs one syscall per loop iteration, not per event. :meth:`clear` lowers the
flag before it drains the socket, so a ``set`` racing it leaves a byte behind (a spurious wake-up at
worst), never a lost one.
"""

from __future__ import annotations

import contextlib
import socket

__all__ = ["Waker"]


class Waker:
    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._flag = False

    def fileno(self) -> int:
        return self._r.fileno()

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            with contextlib.suppress(BlockingIOError, OSError):  # full: a wake-up is pending anyway
                self._w.send(b"\0")

    def is_set(self) -> bool:
        return self._flag

    def clear(self) -> None:
        self._flag = False
        with contextlib.suppress(BlockingIOError, OSError):
            while self._r.recv(4096):
                pass

    def close(self) -> None:
        self._r.close()
        self._w.close()
