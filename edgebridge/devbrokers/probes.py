"""Readiness probes that speak each broker's protocol, with no client library.

An open port is not readiness: Kafka accepts connections well before it can serve metadata, and
Mosquitto may refuse a CONNECT while it loads a large persistence file. So each probe performs the
smallest real exchange: an MQTT 3.1.1 CONNECT answered by CONNACK, and a Kafka Metadata (v4) request
answered with at least one broker. The Metadata answer also names the cluster, which lets the Kafka
broker tell its own cluster from another one on the same port. The code stays dependency-free so
that `edgebridge brokers` works on a machine that only has the agent's extras installed.
"""

from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass

__all__ = ["KafkaMetadata", "PartitionState", "kafka_metadata", "mqtt_connack"]


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


@dataclass(frozen=True)
class PartitionState:
    """One partition as the Metadata answer describes it: who leads, who holds it, who is in sync."""

    topic: str
    partition: int
    leader: int  # -1: no leader
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    error: int  # 0, or Kafka's error code (e.g. 5 LEADER_NOT_AVAILABLE)
    internal: bool


@dataclass(frozen=True)
class KafkaMetadata:
    """What a Kafka Metadata response tells: its brokers, its cluster and controller, and (when all
    topics were asked) every partition's leader, replicas and in-sync replicas."""

    brokers: list[tuple[int, str, int]]  # (node id, host, port)
    cluster_id: str | None
    controller_id: int
    partitions: tuple[PartitionState, ...] = ()


def _kafka_string(data: bytes, pos: int) -> tuple[str | None, int]:
    """A (nullable) INT16-length-prefixed string at ``pos``, and the position after it."""
    (length,) = struct.unpack_from(">h", data, pos)
    pos += 2
    if length < 0:
        return None, pos
    return data[pos : pos + length].decode(), pos + length


def kafka_metadata(host: str, port: int, timeout: float = 2.0, *, topics: bool = False) -> KafkaMetadata:
    """Send a Kafka Metadata v4 request for no topics (``topics``: for all of them) and parse the answer.

    v4 is the oldest Metadata version Kafka 4.x still serves (KIP-896 removed v0-v3) and the newest
    that is not a "flexible" (tagged-field) version, so its framing stays simple. Its response carries
    the cluster id (every version since v2 does), right after the broker list, then the topics.
    """
    client_id = b"edgebridge-probe"
    header = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id
    # a null topic list (-1) asks for every topic, an empty one for none; no auto-creation either way
    body = struct.pack(">i", -1 if topics else 0) + b"\x00"
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        data = _recv_exact(sock, size)
    try:
        return _parse_metadata_v4(data)
    except (struct.error, UnicodeDecodeError) as exc:
        raise ConnectionError(f"malformed Metadata response: {exc}") from exc


def _parse_metadata_v4(data: bytes) -> KafkaMetadata:
    # correlation id, throttle_time_ms, [brokers: node_id host port rack], cluster_id, controller_id, ...
    correlation, _throttle, count = struct.unpack_from(">iii", data, 0)
    if correlation != 1:
        raise ConnectionError(f"unexpected correlation id {correlation}")
    pos = 12
    brokers = []
    for _ in range(count):
        (node_id,) = struct.unpack_from(">i", data, pos)
        node_host, pos = _kafka_string(data, pos + 4)
        (node_port,) = struct.unpack_from(">i", data, pos)
        _rack, pos = _kafka_string(data, pos + 4)
        brokers.append((node_id, node_host or "", node_port))
    cluster_id, pos = _kafka_string(data, pos)
    (controller_id, topic_count) = struct.unpack_from(">ii", data, pos)
    pos += 8
    partitions = []
    # [topics: error_code, name, is_internal, [partitions: error_code, index, leader, [replicas], [isr]]]
    for _ in range(topic_count):
        name, pos = _kafka_string(data, pos + 2)
        internal = data[pos] != 0
        (count,) = struct.unpack_from(">i", data, pos + 1)
        pos += 5
        for _ in range(count):
            error, index, leader, n_replicas = struct.unpack_from(">hiii", data, pos)
            pos += 14
            replicas = struct.unpack_from(f">{n_replicas}i", data, pos)
            pos += 4 * n_replicas
            (n_isr,) = struct.unpack_from(">i", data, pos)
            isr = struct.unpack_from(f">{n_isr}i", data, pos + 4)
            pos += 4 + 4 * n_isr
            partitions.append(PartitionState(name or "", index, leader, replicas, isr, error, internal))
    return KafkaMetadata(brokers, cluster_id, controller_id, tuple(partitions))
