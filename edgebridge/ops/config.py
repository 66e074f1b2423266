"""The configuration the operator's tools read: the same ``[kafka]`` and ``[topics]`` as the components.

An operator points a tool at a component's own TOML file (``--config /etc/edgebridge/enricher.toml``):
the sections a tool does not know are refused by the loader, so the tools' configuration is its own
small file or the environment (``EDGEBRIDGE_KAFKA_BOOTSTRAP``, ``EDGEBRIDGE_KAFKA_LIBRDKAFKA__...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgebridge.settings import KafkaSettings
from edgebridge.topics import KafkaTopics

__all__ = ["OpsConfig", "RedriveSettings"]


@dataclass(frozen=True)
class RedriveSettings:
    """``[redrive]``: where ``edgebridge deadletters redrive`` remembers what it redrove."""

    # compacted, key = "{topic}/{partition}/{offset}" of a dead letter: written in the same Kafka
    # transaction as the redriven record, so a second redrive skips exactly what the first one moved
    marker_topic: str = "iot.events.deadletter.redriven"
    transactional_id: str = "edgebridge-redrive"


@dataclass(frozen=True)
class OpsConfig:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: KafkaTopics = field(default_factory=KafkaTopics)
    redrive: RedriveSettings = field(default_factory=RedriveSettings)
