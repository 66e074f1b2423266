"""The enricher's configuration: ``[topics]``, ``[commit]``, ``[pipeline]`` and the shared sections.

Every topic name is configurable (tests give each run its own). ``instance_id`` makes the Kafka
``transactional.id`` (``{transactional_id_prefix}-{instance_id}``): it must be stable across restarts of
one instance, so that a restarted instance fences its own zombie and aborts its open transaction at once,
and different between instances running side by side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from edgebridge.envelope import DEVICE_TYPES, device_types
from edgebridge.errors import ConfigError
from edgebridge.kafka_ids import ENRICHER_GROUP, ENRICHER_TRANSACTIONAL_ID_PREFIX
from edgebridge.settings import KafkaSettings, LogSettings, MetricsConfig
from edgebridge.topics import KafkaTopics
from enricher.aggregates.config import AggregateSettings

__all__ = ["EXACTLY_ONCE_CONSUMER", "CommitSettings", "EnricherConfig", "PipelineSettings"]

# Open holes kept per device before the lowest is given up (its seqs then taken for duplicates: lost to
# processed). Bridge replicas on a shared subscription make holes one seq wide: the broker deals a
# device's messages to the replicas in turn, and a replica that dies leaves a hole for each message in
# flight to it, at most its Receive Maximum (the bridge's `uplink.receive_maximum`, 1000), possibly
# all of one device, until the agents' resends fill them. 256 was exceeded on the three-node cluster
# (tests/e2e/test_scaleout.py: 69 seqs lost with one of two bridges killed behind a Kafka failover).
# 2048 covers two replicas dying at once; only a device with holes pays for them (~16 B a range in
# memory and in its state record).
DEFAULT_MAX_SEEN_RANGES = 2048

DEFAULT_STEPS = ["validate", "dedup", "calibrate", "normalise", "derive", "flag", "route"]

# The consumer side of exactly-once, for the enricher and the sinks alike: committed records only,
# offsets never committed nor stored by librdkafka (they go into the transaction, or into the sink's
# database), and cooperative rebalancing, so that a rebalance does not stop every partition.
EXACTLY_ONCE_CONSUMER: Mapping[str, str | bool] = MappingProxyType({
    "isolation.level": "read_committed",
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
})


@dataclass(frozen=True)
class CommitSettings:
    """A transaction is committed every ``interval_ms`` or every ``max_messages`` consumed, first wins."""

    interval_ms: int = 100
    max_messages: int = 5000
    # librdkafka transaction.timeout.ms: how long a crashed instance's open transaction blocks
    # read_committed readers of its partitions when *another* instance takes them over (a restart of
    # the same instance aborts it at once through the stable transactional.id).
    transaction_timeout_ms: int = 60000

    def validate(self) -> None:
        if self.interval_ms < 1:
            raise ConfigError("interval_ms", "must be at least 1")
        if self.max_messages < 1:
            raise ConfigError("max_messages", "must be at least 1")
        if self.transaction_timeout_ms < 1000:
            raise ConfigError("transaction_timeout_ms", "must be at least 1000")


@dataclass(frozen=True)
class PipelineSettings:
    """The steps, in order: built-in names or ``module:callable`` of your own."""

    steps: list[str] = field(default_factory=lambda: list(DEFAULT_STEPS))
    unknown_devices: Literal["process", "deadletter"] = "process"
    # event types taken from iot.events.raw: readings and gaps, and any type a deployment adds, which
    # is deduplicated and passed on to processed as it came (edgebridge.envelope.device_types)
    known_types: list[str] = field(default_factory=lambda: sorted(DEVICE_TYPES))
    # dedup: at most this many disjoint seen-ranges above the contiguous mark per device; past it the
    # oldest hole is given up (counted as an expired gap) so memory and state records stay bounded.
    max_seen_ranges: int = DEFAULT_MAX_SEEN_RANGES
    # dedup: an epoch of a device (one life of its outbox) other than its current one is forgotten once
    # its last record is this old, by the raw records' Kafka timestamps (see enricher.dedup)
    epoch_idle_days: float = 7.0
    # derive: dew point from these two measurements (after calibration and normalisation)
    temperature: str = "temperature"
    humidity: str = "humidity"
    # flag: the same value this many times in a row flags a stuck sensor (0: off)
    stuck_count: int = 10
    max_bytes: int = 256 * 1024

    def validate(self) -> None:
        if not self.steps:
            raise ConfigError("steps", "at least one step")
        if self.max_seen_ranges < 1:
            raise ConfigError("max_seen_ranges", "must be at least 1")
        if not self.epoch_idle_days > 0:
            raise ConfigError("epoch_idle_days", "must be > 0")
        if self.stuck_count < 0:
            raise ConfigError("stuck_count", "must be >= 0")
        device_types(self.known_types)


@dataclass(frozen=True)
class EnricherConfig:
    instance_id: str = "enricher-0"
    group_id: str = ENRICHER_GROUP
    transactional_id_prefix: str = ENRICHER_TRANSACTIONAL_ID_PREFIX
    # static group membership (group.instance.id = instance_id): a restarted instance gets its partitions
    # back at once instead of after a rebalance that waits out the dead member's session.timeout.ms
    static_membership: bool = True
    # /healthz answers 503 once the processing loop has been inside one turn this many seconds; 0: the
    # longest a healthy turn may wait (a takeover waits for the previous owner's open transaction, up to
    # commit.transaction_timeout_ms + 60 s)
    stall_after: float = 0.0
    topics: KafkaTopics = field(default_factory=KafkaTopics)
    commit: CommitSettings = field(default_factory=CommitSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    # the aggregator's own settings: it runs from this file too (edgebridge aggregator run)
    aggregates: AggregateSettings = field(default_factory=AggregateSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def validate(self) -> None:
        if not self.instance_id:
            raise ConfigError("instance_id", "must be set (stable per instance)")
        if not self.stall_after >= 0:
            raise ConfigError("stall_after", "must not be negative")

    @property
    def health_stall_after(self) -> float:
        """``stall_after``, or its default when 0 (see the field)."""
        return self.stall_after or self.commit.transaction_timeout_ms / 1000 + 60

    @property
    def transactional_id(self) -> str:
        return f"{self.transactional_id_prefix}-{self.instance_id}"
