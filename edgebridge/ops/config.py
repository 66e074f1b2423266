"""The configuration the operator's tools read: the same ``[kafka]`` and ``[topics]`` as the components.

An operator points a tool at a component's own TOML file (``--config /etc/edgebridge/enricher.toml``)
or a small file of its own, and the environment (``EDGEBRIDGE_KAFKA_BOOTSTRAP``,
``EDGEBRIDGE_KAFKA_LIBRDKAFKA__SASL_PASSWORD``) goes on top, as for the components.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from edgebridge.config import config_or_exit_code as load_or_exit
from edgebridge.settings import KafkaSettings
from edgebridge.topics import KafkaTopics

__all__ = ["OpsConfig", "RedriveSettings", "config_or_exit_code"]


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


# the sections of a component's file the tools read; the rest ([mqtt], [pipeline], instance_id ...) is
# the component's, and ignored here rather than refused as unknown
SECTIONS = ("kafka", "topics", "redrive")


def config_or_exit_code(args: argparse.Namespace, prog: str) -> OpsConfig | int:
    """:func:`edgebridge.config.config_or_exit_code` for the tools, on any component's file.

    ``--config /etc/edgebridge/enricher.toml`` works: its ``[kafka]`` (SASL, TLS), ``[topics]`` and
    ``[redrive]`` are taken, every other key is left to its component; the environment goes on top.
    """
    return load_or_exit(OpsConfig, args, prog, sections=SECTIONS)
