"""Which MQTT topic goes where: the three uplink routes and their subscription filters.

``{prefix}/{device}/events``            -> ``uplink.raw_topic``       (validated events, one record each)
``{prefix}/{device}/status``            -> ``uplink.status_topic``    (online/offline, verbatim)
``{prefix}/{device}/commands/response`` -> ``uplink.responses_topic`` (command replies, verbatim)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bridge.config import UplinkConfig
from edgebridge.envelope import is_deviceid

__all__ = ["Route", "filters", "parse_topic"]

Kind = Literal["events", "status", "response"]
_SUFFIXES: dict[tuple[str, ...], Kind] = {
    ("events",): "events",
    ("status",): "status",
    ("commands", "response"): "response",
}


@dataclass(frozen=True, slots=True)
class Route:
    kind: Kind
    deviceid: str


def parse_topic(prefix: str, topic: str) -> Route | None:
    """The route of ``topic``, or ``None`` when it is not one of our device topics (or the id is bad)."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1 :].split("/")
    kind = _SUFFIXES.get(tuple(parts[1:]))
    if kind is None or not is_deviceid(parts[0]):
        return None
    return Route(kind, parts[0])


def filters(prefix: str, config: UplinkConfig) -> list[str]:
    """The subscription filters, with ``$share/<group>/`` in front when replicas share them."""
    plain = [
        config.events_filter or f"{prefix}/+/events",
        config.status_filter or f"{prefix}/+/status",
        config.responses_filter or f"{prefix}/+/commands/response",
    ]
    if config.share_group:
        return [f"$share/{config.share_group}/{f}" for f in plain]
    return plain
