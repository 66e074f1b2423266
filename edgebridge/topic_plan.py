"""The contract's Kafka topics as they should be, and how a cluster's topics differ from that.

The registry, the enricher's dedup state and the redrive markers (``[redrive] marker_topic``, what
`edgebridge deadletters redrive` moved, see :mod:`edgebridge.ops.redrive`) are compacted (only the
latest value per key matters and must be kept forever); the state topic has as many partitions as the
raw topic, because the enricher restores a raw partition's dedup state from the state partition of the
same number. With a replication factor above 1, ``min.insync.replicas`` is RF-1 (at least 1): an
acknowledged write (the components produce with ``acks=all``) is then on at least two brokers, and one
broker may be down without stopping the writers. The aggregator's output and state topics are
partitioned like the processed topic, for the same reason (its input partition ``p`` owns their
partition ``p``); its output keeps the latest figures of each window key for the retention time
(compact,delete).

Pure functions: :mod:`edgebridge.kafka_admin` reads the cluster and applies the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from edgebridge.ops.config import RedriveSettings
from edgebridge.topics import KafkaTopics

__all__ = ["ExistingTopic", "TopicDiff", "TopicSpec", "align_state", "diff_topic", "wanted_topics"]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        settings = "".join(f", {k}={v}" for k, v in sorted(self.config.items()))
        plural = "s" if self.partitions != 1 else ""
        return f"{self.name}: {self.partitions} partition{plural}, replication factor " \
               f"{self.replication_factor}{settings}"


@dataclass(frozen=True)
class ExistingTopic:
    partitions: int
    replication_factor: int
    config: Mapping[str, str]  # the values of the keys we set, as the cluster reports them


@dataclass(frozen=True)
class TopicDiff:
    """How an existing topic differs from its spec: settings we set (``config``, name -> (now, wanted))
    and what we report without changing (fewer partitions, another replication factor)."""

    name: str
    config: Mapping[str, tuple[str | None, str]]
    notes: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.config and not self.notes


def wanted_topics(topics: KafkaTopics | None = None, partitions: int = 3, replication_factor: int = 1,
                  marker_topic: str = RedriveSettings.marker_topic) -> list[TopicSpec]:
    """Every contract topic: ``partitions`` for the keyed, parallel ones, 1 for the low-volume ones;
    ``marker_topic``: the redrive's (``[redrive] marker_topic``)."""
    t = topics or KafkaTopics()
    if partitions < 1 or replication_factor < 1:
        raise ValueError("partitions and replication factor must be at least 1")
    base = {"min.insync.replicas": str(max(1, replication_factor - 1))} if replication_factor > 1 else {}
    compacted = {**base, "cleanup.policy": "compact"}
    wanted = {
        t.raw: (partitions, base),
        t.processed: (partitions, base),
        t.deadletter: (1, base),
        t.alerts: (1, base),
        t.devices: (1, compacted),
        t.commands: (partitions, base),
        t.command_responses: (1, base),
        t.enricher_state: (partitions, compacted),
        t.status: (1, base),
        t.aggregates: (partitions, {**base, "cleanup.policy": "compact,delete"}),
        t.aggregates_state: (partitions, compacted),
        # one partition: a marker per redriven dead letter, few; made here so that no tool needs the
        # right to create topics, and replicated like the others
        marker_topic: (1, compacted),
    }
    return [TopicSpec(name, n, replication_factor, config) for name, (n, config) in wanted.items()]


def diff_topic(spec: TopicSpec, existing: ExistingTopic) -> TopicDiff:
    wanted = dict(spec.config)
    if existing.replication_factor != spec.replication_factor:
        # min.insync.replicas follows the replication factor the topic really has, which we do not
        # change: RF-1 of the factor asked would make an RF 1 topic refuse every acks=all write
        wanted.pop("min.insync.replicas", None)
    config = {k: (existing.config.get(k), v) for k, v in wanted.items() if existing.config.get(k) != v}
    notes = []
    if existing.partitions < spec.partitions:
        # Not added: a new partition moves devices' keys to other partitions (their order across the
        # move is lost), and the state topic must grow with the raw topic, in one deliberate step.
        notes.append(f"has {existing.partitions} partitions, {spec.partitions} asked: not added "
                     "(adding partitions remaps device keys; grow raw and state together, deliberately)")
    if existing.replication_factor != spec.replication_factor:
        notes.append(f"has replication factor {existing.replication_factor}, "
                     f"{spec.replication_factor} asked: not changed (a partition reassignment does that), "
                     "nor its min.insync.replicas")
    return TopicDiff(spec.name, config, tuple(notes))


def align_state(specs: list[TopicSpec], topics: KafkaTopics, existing: Mapping[str, ExistingTopic]
                ) -> tuple[list[TopicSpec], list[str]]:
    """The specs with the state topic partitioned like the raw topic *as it is* (and the aggregator's
    topics like the processed topic), and notes.

    A raw topic that exists keeps its partition count (partitions are never added), so a missing state
    topic is created with that count, not the one asked: the enricher refuses to start when they
    differ. Existing raw and state topics of different counts are reported (nothing here can fix it).
    """
    notes: list[str] = []
    for source, follower, who in ((topics.raw, topics.enricher_state, "the enricher"),
                                  (topics.processed, topics.aggregates, "the aggregator"),
                                  (topics.processed, topics.aggregates_state, "the aggregator")):
        specs = _follow(specs, source, follower, who, existing, notes)
    return specs, notes


def _follow(specs: list[TopicSpec], source: str, follower: str, who: str,
            existing: Mapping[str, ExistingTopic], notes: list[str]) -> list[TopicSpec]:
    """``follower`` partitioned like ``source`` as it exists (see :func:`align_state`)."""
    leader, state = existing.get(source), existing.get(follower)
    if leader is not None and state is not None and leader.partitions != state.partitions:
        notes.append(f"note {follower}: has {state.partitions} partitions, {source} has "
                     f"{leader.partitions}: they must be equal, {who} refuses to start")
    if leader is None:
        return specs
    out = []
    for spec in specs:
        if spec.name == follower and spec.partitions != leader.partitions:
            spec = replace(spec, partitions=leader.partitions)
            if state is None:
                notes.append(f"note {spec.name}: {leader.partitions} partitions, as {source} has")
        out.append(spec)
    return out
