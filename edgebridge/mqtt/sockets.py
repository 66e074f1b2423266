"""paho's socket behind a read buffer (and, for a client driven by its caller's loop, a write buffer),
so that syscalls are per loop turn, not per packet.

Reads: paho reads a packet in three or more ``recv`` calls (command byte, each length byte, body), each
a syscall that releases and re-takes the GIL; :class:`ReadBufferedSocket` reads up to 64 KiB per
syscall and hands paho its bytes from memory. What remains is reported by ``pending()``, the hook
paho's own loop already asks for TLS buffers (it then polls the socket with a zero timeout and reads
on), and by :meth:`ReadBufferedSocket.buffered`, for a caller's loop that polls the file descriptor
itself (the fd no longer shows those bytes).

Writes: paho sends each packet as it is queued (one ``send`` per publish); :class:`BufferedSocket`
takes them into :attr:`~BufferedSocket.unsent` and :meth:`~BufferedSocket.flush` sends them in one call
when the caller's loop next waits. Nothing is lost by the delay: an unsent message is un-acked.
"""

from __future__ import annotations

import ssl
from typing import Any

__all__ = ["BufferedSocket", "ReadBufferedSocket"]


class ReadBufferedSocket:
    """A socket whose reads come from a buffer filled 64 KiB at a time; writes go straight through."""

    __slots__ = ("_buf", "_pos", "_tls", "fd", "sock")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.fd: int = sock.fileno()
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._buf = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        pos = self._pos
        if pos >= len(self._buf):
            data: bytes = self.sock.recv(65536)  # BlockingIOError / SSLWantReadError: paho's "try again"
            if len(data) <= size:
                return data  # all of it (b"": end of file)
            self._buf, pos = data, 0
        end = pos + size
        self._pos = end
        return self._buf[pos:end]

    def buffered(self) -> bool:
        """Bytes remain to be read without a syscall (here, or decrypted inside an ``SSLSocket``)."""
        return self._pos < len(self._buf) or (self._tls and self.sock.pending() > 0)

    def pending(self) -> int:
        return max(len(self._buf) - self._pos, 0) + (self.sock.pending() if self._tls else 0)

    def send(self, data: bytes | bytearray) -> int:
        sent: int = self.sock.send(data)
        return sent

    def fileno(self) -> int:
        return self.fd

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def close(self) -> None:
        self._buf = b""
        self._pos = 0
        self.sock.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)  # whatever else paho or a callback asks of the socket


class BufferedSocket(ReadBufferedSocket):
    """A :class:`ReadBufferedSocket` whose writes wait in :attr:`unsent` until :meth:`flush`."""

    __slots__ = ("unsent",)

    def __init__(self, sock: Any) -> None:
        super().__init__(sock)
        self.unsent: list[bytes] = []

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

    def close(self) -> None:
        """Close, after one non-blocking attempt to send what is left (e.g. paho's DISCONNECT)."""
        self.flush()
        self.unsent = []
        super().close()
