"""The enricher's outputs as Kafka records: the processed event and its alerts, or a dead letter.

Encoding happens before anything is produced, so a record that cannot be encoded costs only itself:
the processing loop turns the ``TypeError`` into an ``unencodable`` dead letter. The records go to Kafka
through :meth:`enricher.checkpoint.Checkpoint.send`, in the open transaction.
"""

from __future__ import annotations

from typing import Any

import orjson
from confluent_kafka import Message

from edgebridge import deadletters, envelope
from enricher.checkpoint import Headers
from enricher.steps import Item

__all__ = ["CONTENT_TYPE", "DEFAULT_MESSAGE_MAX_BYTES", "Output"]

#: the headers of a processed record
CONTENT_TYPE: Headers = [("content-type", envelope.CONTENT_TYPE.encode())]
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000  # librdkafka's default message.max.bytes
# librdkafka counts a record as key + value + headers + its wire overhead (a few varints, at most ~40
# bytes, and ~10 per header); these margins are generous
_RECORD_OVERHEAD = 256
_TRUNCATED_HEADER = 64  # "dlq_truncated" and a size, added after the room is measured

_UNREGISTERED: dict[str, Any] = {"registered": False}
_READING, _PROCESSED = envelope.READING_TYPE, envelope.PROCESSED_TYPE
_dumps = orjson.dumps


def _wire_size(headers: Headers) -> int:
    return sum(len(name) + len(value or b"") + 10 for name, value in headers)


class Output:
    """Encodes one instance's outputs; ``max_record`` is the largest record its producer sends
    (librdkafka's ``message.max.bytes``), which a dead letter must fit. The aggregator uses
    :meth:`deadletter` alone."""

    def __init__(self, instance_id: str, max_record: int = DEFAULT_MESSAGE_MAX_BYTES,
                 component: str = "enricher") -> None:
        self.instance_id = instance_id
        self.component = component  # the dead letters' dlq_component: "enricher" or "aggregator"
        self.max_record = max_record
        self.processtime = ""  # the processed events' ``processtime``: one per consumed batch

    def batch(self) -> None:
        """A consumed batch begins: its events share one ``processtime`` (a batch takes milliseconds)."""
        self.processtime = envelope.now_rfc3339()

    def encode(self, item: Item) -> tuple[bytes, list[bytes]]:
        """The processed record and the alert records, all encoded before any is produced. Raises
        ``TypeError`` for what orjson cannot write (an int past 64 bits after a conversion)."""
        event = item.event
        if event.type == _READING:
            device = item.device
            # the raw event's envelope with the processed type and data, encoded once (no Event between)
            obj = envelope.to_dict(event)
            obj["type"] = _PROCESSED
            obj["data"] = {
                "readings": item.readings,
                "derived": item.derived,
                "flags": item.flags,
                "late": item.late,
                "device": device.summary if device is not None else _UNREGISTERED,
                "ingesttime": envelope.rfc3339_ms(item.ingest_ms) if item.ingest_ms else None,
                "processtime": self.processtime,
            }
            value = _dumps(obj)
        else:
            value = envelope.encode(event)  # a gap event goes on as it came, so every hole stays explained
        # the epoch ("" for an event without one) with the seq: seqs restart at 1 in a device's new epoch
        alerts = [_dumps({"deviceid": event.deviceid, "epoch": event.epoch or "", "seq": event.seq,
                          "eventid": event.id, "time": event.time, **alert}) for alert in item.alerts]
        return value, alerts

    def deadletter(self, msg: Message, reason: str, error: BaseException,
                   step: str | None = None) -> tuple[bytes, bytes | None, Headers]:
        """The raw record as a dead letter (value, key, headers) with the one header schema
        (:mod:`edgebridge.deadletters`).

        Its value unchanged, unless the record with our headers would exceed ``max_record``: a raw
        record at Kafka's limit has no room left for them. Then the value is cut to fit and
        ``dlq_truncated`` holds its size; the whole record stays at its original offset. Without the cut,
        the produce fails, the transaction aborts and the record comes back, forever.
        """
        value, key = msg.value() or b"", msg.key()
        original = (msg.topic() or "", msg.partition() or 0, msg.offset() or 0)
        headers: Headers = list(deadletters.headers(
            reason=reason, error=error, component=self.component, original=original, step=step,
            instance=self.instance_id))
        room = self.max_record - len(key or b"") - _wire_size(headers) - _TRUNCATED_HEADER - _RECORD_OVERHEAD
        value, truncated = deadletters.cut(value, max(0, room))
        if truncated is not None:
            headers.append((deadletters.TRUNCATED, str(truncated).encode()))
        return value, key, headers
