"""A Kafka record as the uplink produces it: topic, key, value, headers."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Header", "Record"]

Header = tuple[str, str | bytes | None]  # what confluent-kafka accepts


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[Header]
    kind: str  # "event", "status", "response" or "deadletter": what the delivery counts as
    reason: str = ""  # a dead letter's dlq_reason, for the metric label
