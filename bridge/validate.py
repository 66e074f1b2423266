"""From one MQTT message to the Kafka records it becomes: validated events, or dead letters.

Events (``{prefix}/{device}/events``): a single event or a batch, decoded with the shared envelope, item
by item (one bad item of a batch does not sink the others). Refused: a payload over
``max_message_bytes`` (``oversized``), not JSON, not our schema, or an event whose ``deviceid``/
``source`` is not the device of the topic (``device_mismatch``: a device publishes only as itself).
Each valid event becomes one record of ``raw_topic``: key = device id, value = the event re-encoded
on its own, headers ``content-type``, ``ce_id``, ``ce_seq``, ``mqtt_topic``.

Status and command responses are forwarded verbatim (key = device id), after the size check. A topic
that matches our filters but is not one of our device topics is dead-lettered as ``bad_topic``.
"""

from __future__ import annotations

from typing import Any

from bridge.config import UplinkConfig
from bridge.deadletter import dead_letter, rfc3339
from bridge.records import Header, Record
from bridge.routes import parse_topic
from edgebridge.envelope import CONTENT_TYPE, decode_message_partial, encode
from edgebridge.errors import EnvelopeError

__all__ = ["Translator"]

_CONTENT_TYPE = CONTENT_TYPE.encode()


class Translator:
    def __init__(self, prefix: str, config: UplinkConfig) -> None:
        self._prefix = prefix
        self._config = config

    def records(
        self, topic: str, payload: bytes, received_wall: float, properties: Any = None
    ) -> list[Record]:
        """Never raises for bad input: whatever is refused comes back as a dead letter."""
        route = parse_topic(self._prefix, topic)
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
                payload, max_bytes=self._config.max_message_bytes, deviceid=deviceid)
        except EnvelopeError as exc:
            return [self._dead(topic, payload, received_wall, deviceid, exc)]
        mqtt_topic = topic.encode()
        raw = self._config.raw_topic
        key = deviceid.encode()
        out = [
            Record(raw, key, encode(event), [
                ("content-type", _CONTENT_TYPE),
                ("ce_id", event.id.encode()),
                ("ce_seq", str(event.seq).encode()),
                ("mqtt_topic", mqtt_topic),
            ], "event")
            for event in good
        ]
        out.extend(self._dead(topic, item.payload, received_wall, deviceid, item.error) for item in bad)
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
        target = self._config.status_topic if kind == "status" else self._config.responses_topic
        return Record(target, deviceid.encode(), payload, headers, kind)

    def _dead(self, topic: str, payload: bytes, received_wall: float, deviceid: str | None,
              exc: EnvelopeError) -> Record:
        return dead_letter(
            self._config.deadletter_topic, reason=exc.reason, error=str(exc), mqtt_topic=topic,
            received_wall=received_wall, payload=payload, deviceid=deviceid,
            max_payload=self._config.max_deadletter_payload, index=exc.index,
        )
