"""A Kafka record as the uplink produces it: topic, key, value, headers."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Header", "Record"]

Header = tuple[str, str | bytes | None]  # what confluent-kafka accepts


class Record(NamedTuple):
    """Immutable; a named tuple rather than a frozen dataclass because the uplink makes one per event
    (a frozen dataclass's ``__init__`` costs a ``object.__setattr__`` per field)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[Header]
    kind: str  # "event", "status", "response" or "deadletter": what the delivery counts as
    reason: str = ""  # a dead letter's dlq_reason, for the metric label
    # the device event it carries (an event, or the dead letter of one), owed a receipt once Kafka
    # confirms it; seq 0: nothing to receipt (status, responses, a payload without a readable seq)
    seq: int = 0
    epoch: str = ""
