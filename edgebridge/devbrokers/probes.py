"""Readiness probes that speak each broker's protocol, with no client library.

An open port is not readiness: Kafka accepts connections well before it can serve metadata, and
Mosquitto may refuse a CONNECT while it loads a large persistence file. So each probe performs the
smallest real exchange: an MQTT 3.1.1 CONNECT answered by CONNACK, and a Kafka Metadata (v4) request
answered with at least one broker. The code stays dependency-free so that `edgebridge brokers` works
on a machine that only has the agent's extras installed.
"""

from __future__ import annotations

import socket
import ssl
import struct

__all__ = ["kafka_metadata", "mqtt_connack"]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by peer")
        buf += chunk
    return bytes(buf)


def _mqtt_string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">H", len(raw)) + raw


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_connack(
    host: str,
    port: int,
    *,
    username: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
    timeout: float = 2.0,
) -> int:
    """Send an MQTT 3.1.1 CONNECT (clean session) and return the CONNACK return code (0 = accepted)."""
    flags = 0x02  # clean session: the probe leaves nothing behind in the broker
    payload = _mqtt_string("edgebridge-probe")
    if username is not None:
        flags |= 0x80
        payload += _mqtt_string(username)
        if password is not None:
            flags |= 0x40
            payload += _mqtt_string(password)
    variable = _mqtt_string("MQTT") + bytes([4, flags]) + struct.pack(">H", 10)
    body = variable + payload
    packet = bytes([0x10]) + _remaining_length(len(body)) + body
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        sock: socket.socket = tls.wrap_socket(raw, server_hostname=host) if tls else raw
    except BaseException:
        raw.close()
        raise
    with sock:
        sock.settimeout(timeout)
        sock.sendall(packet)
        head = _recv_exact(sock, 4)
        if head[0] != 0x20:
            raise ConnectionError(f"expected CONNACK, got packet type {head[0] >> 4}")
        rc = head[3]
        if rc == 0:
            sock.sendall(b"\xe0\x00")  # DISCONNECT, so the broker logs a clean close
        return rc


def kafka_metadata(host: str, port: int, timeout: float = 2.0) -> list[tuple[int, str, int]]:
    """Send a Kafka Metadata v4 request for no topics; return the brokers as (node id, host, port).

    v4 is the oldest Metadata version Kafka 4.x still serves (KIP-896 removed v0-v3) and the newest
    that is not a "flexible" (tagged-field) version, so its framing stays simple.
    """
    client_id = b"edgebridge-probe"
    header = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id
    body = struct.pack(">i", 0) + b"\x00"  # an empty topic list; no auto-creation
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        data = _recv_exact(sock, size)
    correlation, _throttle, count = struct.unpack_from(">iii", data, 0)
    if correlation != 1:
        raise ConnectionError(f"unexpected correlation id {correlation}")
    pos = 12
    brokers = []
    for _ in range(count):
        (node_id, host_len) = struct.unpack_from(">ih", data, pos)
        pos += 6
        node_host = data[pos : pos + host_len].decode()
        pos += host_len
        (node_port, rack_len) = struct.unpack_from(">ih", data, pos)
        pos += 6 + max(rack_len, 0)
        brokers.append((node_id, node_host, node_port))
    return brokers
