"""Dead letters: what the uplink could not accept, kept with the reason instead of stalling the stream.

A dead-letter record carries the original payload (cut to ``max_payload`` bytes, the cut announced in
``dlq_truncated``) and headers saying why::

    dlq_reason    a code of edgebridge.envelope.REASONS, or "kafka_rejected" (Kafka refused the record)
    dlq_error     the human-readable detail
    dlq_index     the position of the refused item in a batch (absent for a whole message)
    mqtt_topic    where it arrived
    received_at   RFC 3339 UTC time the bridge received it
    dlq_source    "bridge"

Key: the device id of the MQTT topic when there is one, so one device's rejects stay together.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.records import Header, Record

__all__ = ["INTERNAL_ERROR", "KAFKA_REJECTED", "dead_letter"]

KAFKA_REJECTED = "kafka_rejected"  # Kafka refused the record itself (too large, invalid)
INTERNAL_ERROR = "internal_error"  # translating the message failed (its exception class and text)


def rfc3339(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dead_letter(
    topic: str,
    *,
    reason: str,
    error: str,
    mqtt_topic: str,
    received_wall: float,
    payload: bytes,
    deviceid: str | None,
    max_payload: int,
    index: int | None = None,
    seq: int = 0,
    epoch: str = "",
) -> Record:
    headers: list[Header] = [
        ("dlq_reason", reason.encode()),
        ("dlq_error", error[:1000].encode("utf-8", "replace")),
        ("mqtt_topic", mqtt_topic.encode("utf-8", "replace")),
        ("received_at", rfc3339(received_wall).encode()),
        ("dlq_source", b"bridge"),
    ]
    if index is not None:
        headers.append(("dlq_index", str(index).encode()))
    if len(payload) > max_payload:
        headers.append(("dlq_truncated", str(len(payload)).encode()))
        payload = payload[:max_payload]
    key = deviceid.encode() if deviceid is not None else None
    return Record(topic, key, payload, headers, "deadletter", reason, seq, epoch)
