"""Dead letters: what the uplink could not accept, kept with the reason instead of stalling the stream.

The headers are the one schema of :mod:`edgebridge.deadletters` (``docs/deadletters.md``), with
``dlq_component=bridge``, ``dlq_mqtt_topic`` where the message arrived, ``dlq_time`` when the bridge
received it, ``dlq_index`` for an item of a batch. The value is the original payload, cut at
``max_payload`` bytes (the original size then in ``dlq_truncated``).

Key: the device id of the MQTT topic when there is one, so one device's rejects stay together.
"""

from __future__ import annotations

from bridge.records import Header, Record
from edgebridge import deadletters
from edgebridge.deadletters import INTERNAL_ERROR, KAFKA_REJECTED

__all__ = ["INTERNAL_ERROR", "KAFKA_REJECTED", "dead_letter"]


def dead_letter(
    topic: str,
    *,
    reason: str,
    error: str | BaseException,
    mqtt_topic: str,
    received_wall: float,
    payload: bytes,
    deviceid: str | None,
    max_payload: int,
    index: int | None = None,
    seq: int = 0,
    epoch: str = "",
    error_class: str | None = None,
) -> Record:
    """The dead-letter record of ``payload``; ``error_class`` overrides the class of ``error`` (the
    cause of an ``internal_error``, whose ``error`` is the text)."""
    value, truncated = deadletters.cut(payload, max_payload)
    headers: list[Header] = list(deadletters.headers(
        reason=reason, error=error, error_class=error_class, component="bridge", time=received_wall,
        mqtt_topic=mqtt_topic, index=index, truncated=truncated))
    key = deviceid.encode() if deviceid is not None else None
    return Record(topic, key, value, headers, "deadletter", reason, seq, epoch)
