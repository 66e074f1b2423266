"""Topic names: the MQTT topics of a device and the Kafka topics of the pipeline.

MQTT, under a configurable prefix (default ``devices``, may itself have levels: ``site1/devices``)::

    {prefix}/{device_id}/events              device -> cloud, one event or a batch
    {prefix}/{device_id}/status              retained "online" / "offline" (the agent's Last Will)
    {prefix}/{device_id}/commands            cloud -> device
    {prefix}/{device_id}/commands/response   the default MQTT 5 response topic of a command
    {prefix}/{device_id}/receipts            cloud -> device: the seqs Kafka holds (edgebridge.receipts)

A device id is one topic level (see :func:`edgebridge.envelope.is_deviceid`); builders refuse any other,
so nothing is ever published to a topic with a wildcard or an extra level in it. Every refusal is
``EnvelopeError("bad_topic")``.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from functools import lru_cache

from edgebridge._validate import is_deviceid
from edgebridge.errors import EnvelopeError

__all__ = [
    "COMMANDS",
    "COMMAND_RESPONSE",
    "DEFAULT_PREFIX",
    "EVENTS",
    "KINDS",
    "RECEIPTS",
    "STATUS",
    "KafkaTopics",
    "command_response_topic",
    "commands_topic",
    "device_topic",
    "events_topic",
    "parse_device_topic",
    "receipts_topic",
    "status_topic",
    "subscription",
]

DEFAULT_PREFIX = "devices"

# The kinds of device topic: what follows "{prefix}/{device_id}/".
EVENTS = "events"
STATUS = "status"
COMMANDS = "commands"
COMMAND_RESPONSE = "commands/response"
RECEIPTS = "receipts"
KINDS: frozenset[str] = frozenset({EVENTS, STATUS, COMMANDS, COMMAND_RESPONSE, RECEIPTS})


@lru_cache(maxsize=64)
def _check_prefix(prefix: str) -> str:
    levels = prefix.split("/") if isinstance(prefix, str) else [""]
    for level in levels:
        if not level or "+" in level or "#" in level or "\0" in level or level.startswith("$"):
            raise EnvelopeError("bad_topic", f"topic prefix {prefix!r}: empty level, wildcard or $")
    return prefix


def device_topic(device_id: str, kind: str, prefix: str = DEFAULT_PREFIX) -> str:
    """``{prefix}/{device_id}/{kind}`` for one of :data:`KINDS`."""
    if not is_deviceid(device_id):
        raise EnvelopeError("bad_topic", f"device id {device_id!r} cannot be an MQTT topic level")
    if kind not in KINDS:
        raise EnvelopeError("bad_topic", f"unknown device topic kind {kind!r}")
    return f"{_check_prefix(prefix)}/{device_id}/{kind}"


def events_topic(device_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    return device_topic(device_id, EVENTS, prefix)


def status_topic(device_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    return device_topic(device_id, STATUS, prefix)


def commands_topic(device_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    return device_topic(device_id, COMMANDS, prefix)


def receipts_topic(device_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    return device_topic(device_id, RECEIPTS, prefix)


def command_response_topic(device_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The default response topic; a command's own MQTT 5 ``ResponseTopic`` takes precedence."""
    return device_topic(device_id, COMMAND_RESPONSE, prefix)


def subscription(kind: str, prefix: str = DEFAULT_PREFIX, *, share_group: str | None = None) -> str:
    """The filter for ``kind`` of every device: ``devices/+/events``.

    With ``share_group`` it is an MQTT 5 shared subscription (``$share/{group}/devices/+/events``), so
    that bridge replicas split the devices' messages between them.
    """
    if kind not in KINDS:
        raise EnvelopeError("bad_topic", f"unknown device topic kind {kind!r}")
    topic_filter = f"{_check_prefix(prefix)}/+/{kind}"
    if share_group is None:
        return topic_filter
    if not share_group or any(c in share_group for c in "/+#\0"):
        raise EnvelopeError("bad_topic", f"share group {share_group!r} must be one level, no wildcards")
    return f"$share/{share_group}/{topic_filter}"


def parse_device_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """``(device_id, kind)`` of a device topic; ``EnvelopeError("bad_topic")`` for anything else.

    The bridge calls this on every received message: the device id it returns is the one the broker
    authorised to publish there, and the envelope's ``deviceid`` must equal it.
    """
    if not isinstance(topic, str):
        raise EnvelopeError("bad_topic", f"topic must be a string, got {type(topic).__name__}")
    head = _check_prefix(prefix) + "/"
    if not topic.startswith(head):
        raise EnvelopeError("bad_topic", f"topic {topic[:200]!r} is not under {prefix!r}")
    device_id, _, kind = topic[len(head) :].partition("/")
    if kind not in KINDS:
        raise EnvelopeError("bad_topic", f"topic {topic[:200]!r} is not a device topic")
    if not is_deviceid(device_id):
        raise EnvelopeError("bad_topic", f"topic {topic[:200]!r} has no valid device id")
    return device_id, kind


@dataclass(frozen=True, slots=True)
class KafkaTopics:
    """The Kafka topic names; keys are the device id, UTF-8.

    ``devices``, ``enricher_state`` and ``aggregates_state`` are compacted; ``aggregates`` is compacted
    with deletion (the latest figures of each window, for the retention time: docs/aggregates.md);
    ``status`` receives the devices' online/offline status that the bridge forwards from MQTT.
    """

    raw: str = "iot.events.raw"
    processed: str = "iot.events.processed"
    deadletter: str = "iot.events.deadletter"
    alerts: str = "iot.alerts"
    devices: str = "iot.devices"
    commands: str = "iot.commands"
    command_responses: str = "iot.commands.responses"
    enricher_state: str = "iot.enricher.state"
    status: str = "iot.devices.status"
    aggregates: str = "iot.aggregates"  # the aggregator's windows (enricher.aggregates)
    aggregates_state: str = "iot.aggregates.state"  # its open windows per device

    def names(self) -> tuple[str, ...]:
        """Every topic name, e.g. to create them all."""
        return astuple(self)

    @property
    def compacted(self) -> frozenset[str]:
        """The topics that must be created with ``cleanup.policy=compact``."""
        return frozenset({self.devices, self.enricher_state, self.aggregates_state})

    @property
    def compacted_with_deletion(self) -> frozenset[str]:
        """The topics created with ``cleanup.policy=compact,delete``: the latest record of each key, for
        the topic's retention time."""
        return frozenset({self.aggregates})
