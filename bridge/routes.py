"""Which MQTT topic goes where: the three uplink routes and their subscription filters.

``{prefix}/{device}/events``            -> ``topics.raw``               (validated events, one record each)
``{prefix}/{device}/status``            -> ``topics.status``            (online/offline, verbatim)
``{prefix}/{device}/commands/response`` -> ``topics.command_responses`` (command replies, verbatim)

Topic grammar and device-id rules are :mod:`edgebridge.topics`'; this module only maps its kinds onto
the uplink's routes (``commands`` flows the other way, so it is not one of them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bridge.config import UplinkConfig
from edgebridge.errors import EnvelopeError
from edgebridge.topics import COMMAND_RESPONSE, EVENTS, STATUS, parse_device_topic, subscription

__all__ = ["Route", "filters", "parse_topic"]

Kind = Literal["events", "status", "response"]
_ROUTES: dict[str, Kind] = {EVENTS: "events", STATUS: "status", COMMAND_RESPONSE: "response"}


@dataclass(frozen=True, slots=True)
class Route:
    kind: Kind
    deviceid: str


def parse_topic(prefix: str, topic: str) -> Route | None:
    """The route of ``topic``, or ``None`` when it is not one of our device topics (or the id is bad)."""
    try:
        deviceid, kind = parse_device_topic(topic, prefix)
    except EnvelopeError:
        return None
    route = _ROUTES.get(kind)
    return Route(route, deviceid) if route is not None else None


def filters(prefix: str, config: UplinkConfig) -> list[str]:
    """The subscription filters, with ``$share/<group>/`` in front when replicas share them."""
    plain = [
        config.events_filter or subscription(EVENTS, prefix),
        config.status_filter or subscription(STATUS, prefix),
        config.responses_filter or subscription(COMMAND_RESPONSE, prefix),
    ]
    if config.share_group:
        return [f"$share/{config.share_group}/{f}" for f in plain]
    return plain
