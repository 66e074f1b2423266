"""From one MQTT message to the Kafka records it becomes: validated events, or dead letters.

Events (``{prefix}/{device}/events``): a single event or a batch, decoded with the shared envelope, item
by item (one bad item of a batch does not sink the others). Refused: a payload over
``max_message_bytes`` (``oversized``), not JSON, not our schema, or an event whose ``deviceid``/
``source`` is not the device of the topic (``device_mismatch``: a device publishes only as itself).
Each valid event becomes one record of ``topics.raw``: key = device id, value = the event on its own
(a single-event message: its payload, verbatim; an item of a batch: the item re-encoded), headers
``content-type``, ``ce_id``, ``ce_seq``, ``mqtt_topic``. The value is valid by construction either way: the
same decoder accepted exactly those bytes, or built the event that was encoded.

Status and command responses are forwarded verbatim (key = device id), after the size check. A topic
that matches our filters but is not one of our device topics is dead-lettered as ``bad_topic``.

Every record of an event, and the dead letter of a refused item that still has a readable ``seq`` (and
``epoch``), carries them (``Record.seq``/``.epoch``): once Kafka confirms the record, the device is owed
a receipt for that seq, refused or not, or its agent would send it again forever.

Total: :meth:`Translator.records` never raises. A failure of the translation itself (a bug, or an
input no check foresaw) dead-letters the message as ``internal_error`` with the exception's class and
text, and the stream goes on.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from bridge.config import UplinkConfig
from bridge.deadletter import INTERNAL_ERROR, dead_letter
from bridge.records import Header, Record
from bridge.routes import Route, parse_topic
from edgebridge.deadletters import rfc3339
from edgebridge.envelope import CONTENT_TYPE, decode_message_partial, device_types, seq_and_epoch, to_dict
from edgebridge.errors import EnvelopeError
from edgebridge.logs import rate_limited
from edgebridge.topics import KafkaTopics

__all__ = ["Translator"]

log = logging.getLogger(__name__)

_CONTENT_TYPE_HEADER: Header = ("content-type", CONTENT_TYPE.encode())  # one tuple shared by all records
_ROUTE_CACHE = 10_000  # topics whose route is remembered (cleared when full: ~2 MB at most)
_dumps = orjson.dumps  # an event from the decoder always encodes: no EnvelopeError wrapper needed


class Translator:
    def __init__(self, prefix: str, config: UplinkConfig, topics: KafkaTopics) -> None:
        self._prefix = prefix
        self._config = config
        self._topics = topics
        self._routes: dict[str, Route | None] = {}  # parse_topic is ~2 us: once per topic, not per message
        self._known_types = device_types(config.known_types)

    def records(
        self, topic: str, payload: bytes, received_wall: float, properties: Any = None
    ) -> list[Record]:
        """Never raises: whatever is refused comes back as a dead letter, with the reason."""
        try:
            return self._records(topic, payload, received_wall, properties)
        except Exception as exc:  # a bug or an unforeseen input costs this message, never the stream
            rate_limited(log, "internal-error", 10.0).error(
                "translating a message failed; dead-lettered", exc_info=True, extra={"topic": topic[:200]})
            route = self._routes.get(topic)
            error = EnvelopeError(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            return [self._dead(topic, payload, received_wall, route.deviceid if route else None, error,
                               error_class=type(exc).__name__)]

    def _records(
        self, topic: str, payload: bytes, received_wall: float, properties: Any
    ) -> list[Record]:
        try:
            route = self._routes[topic]
        except KeyError:
            if len(self._routes) >= _ROUTE_CACHE:
                self._routes.clear()
            route = self._routes[topic] = parse_topic(self._prefix, topic)
        if route is None:
            return [self._dead(topic, payload, received_wall, None,
                               EnvelopeError("bad_topic", f"not a device topic under {self._prefix!r}"))]
        if len(payload) > self._config.max_message_bytes:
            detail = f"{len(payload)} bytes, the limit is {self._config.max_message_bytes}"
            return [self._dead(topic, payload, received_wall, route.deviceid,
                               EnvelopeError("oversized", detail))]
        if route.kind == "events":
            return self._events(topic, payload, received_wall, route.deviceid)
        return [self._verbatim(topic, payload, received_wall, route.deviceid, route.kind, properties)]

    def _events(self, topic: str, payload: bytes, received_wall: float, deviceid: str) -> list[Record]:
        try:
            good, bad = decode_message_partial(
                payload, max_bytes=self._config.max_message_bytes, deviceid=deviceid,
                known_types=self._known_types)
        except EnvelopeError as exc:
            seq, epoch = _single_seq(payload) if exc.reason != "oversized" else (0, "")
            return [self._dead(topic, payload, received_wall, deviceid, exc, seq, epoch)]
        content_type, topic_header = _CONTENT_TYPE_HEADER, ("mqtt_topic", topic.encode())
        raw = self._topics.raw
        key = deviceid.encode()
        if len(good) == 1 and not bad and payload.lstrip()[:1] == b"{":
            # a single event: the payload is that event's JSON already (same bytes the decoder accepted)
            event = good[0]
            return [Record(raw, key, payload, [content_type, ("ce_id", event.id.encode()),
                                               ("ce_seq", str(event.seq).encode()), topic_header], "event",
                           "", event.seq, event.epoch or "")]
        out = [
            Record(raw, key, _dumps(to_dict(event)), [content_type, ("ce_id", event.id.encode()),
                                                      ("ce_seq", str(event.seq).encode()), topic_header],
                   "event", "", event.seq, event.epoch or "")
            for event in good
        ]
        out.extend(self._dead(topic, item.payload, received_wall, deviceid, item.error, item.seq, item.epoch)
                   for item in bad)
        return out

    def _verbatim(self, topic: str, payload: bytes, received_wall: float, deviceid: str, kind: str,
                  properties: Any) -> Record:
        headers: list[Header] = [
            ("mqtt_topic", topic.encode()),
            ("received_at", rfc3339(received_wall).encode()),
        ]
        correlation = getattr(properties, "CorrelationData", None)
        if correlation is not None:
            headers.append(("correlation_data", bytes(correlation)))
        content_type = getattr(properties, "ContentType", None)
        if content_type is not None:
            headers.append(("content-type", str(content_type).encode()))
        target = self._topics.status if kind == "status" else self._topics.command_responses
        return Record(target, deviceid.encode(), payload, headers, kind)

    def _dead(self, topic: str, payload: bytes, received_wall: float, deviceid: str | None,
              exc: EnvelopeError, seq: int = 0, epoch: str = "", error_class: str | None = None) -> Record:
        return dead_letter(
            self._topics.deadletter, reason=exc.reason, error=exc, mqtt_topic=topic,
            received_wall=received_wall, payload=payload, deviceid=deviceid,
            max_payload=self._config.max_deadletter_payload, index=exc.index, seq=seq, epoch=epoch,
            error_class=error_class,
        )


def _single_seq(payload: bytes) -> tuple[int, str]:
    """The seq and epoch of a refused single-event payload, if it has readable ones (error path only)."""
    if payload.lstrip()[:1] != b"{":
        return 0, ""
    try:
        return seq_and_epoch(orjson.loads(payload))
    except orjson.JSONDecodeError:
        return 0, ""
