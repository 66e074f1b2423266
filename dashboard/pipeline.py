"""The pipeline's health, read where it already lives: Kafka and the components' metrics endpoints.

One thread looks every ``period`` seconds and publishes an immutable :class:`PipelineView` (a reference
swap; the page reads the latest one):

- per topic of the wire contract: the sum of its partitions' end offsets, and the rate since the last
  look (records, and transaction markers, per second);
- per consumer group that reads one of those topics: its committed offset and lag per partition
  (end offset minus committed);
- dead letters by reason, and each device's latest ones, from the dead-letter topic's headers (read
  from the beginning once, then followed);
- each configured Prometheus endpoint's ``edgebridge_*`` samples, with a rate for the counters.

Nothing is stored beyond the last look: no second metrics store. A source that fails shows its error
on the page; the next look tries again.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import urllib.request
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from edgebridge import deadletters as dlq
from edgebridge.ops.reading import message_headers
from edgebridge.topics import KafkaTopics

__all__ = ["DeadLetter", "GroupLag", "MetricSample", "PipelineFeed", "PipelineView", "TopicRate"]

log = logging.getLogger(__name__)
TIMEOUT = 10.0
RECENT_PER_DEVICE = 20
OWN_GROUPS = "edgebridge-dashboard-"  # the dashboard's reader: not a pipeline group to show


@dataclass(frozen=True)
class TopicRate:
    topic: str
    role: str  # the field of KafkaTopics: raw, processed, ...
    end: int | None  # sum of end offsets; None: not readable
    rate: float | None  # per second since the previous look


@dataclass(frozen=True)
class GroupLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    end: int | None

    @property
    def lag(self) -> int | None:
        if self.end is None:
            return None
        return self.end - (self.committed if self.committed is not None and self.committed >= 0 else 0)


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    when: str
    reason: str
    error: str
    component: str


@dataclass(frozen=True)
class MetricSample:
    endpoint: str
    name: str
    labels: str
    value: float
    rate: float | None


@dataclass(frozen=True)
class PipelineView:
    when: float = 0.0
    topics: list[TopicRate] = field(default_factory=list)
    groups: list[GroupLag] = field(default_factory=list)
    deadletters_by_reason: dict[str, int] = field(default_factory=dict)
    metrics: list[MetricSample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class PipelineFeed:
    def __init__(self, client_config: dict[str, Any], topics: KafkaTopics,
                 endpoints: list[tuple[str, str]], period: float = 2.0) -> None:
        self._client_config = client_config
        self.topics = topics
        self.endpoints = endpoints
        self.period = period
        self.view = PipelineView()
        self.version = 0
        self.recent: dict[str, deque[DeadLetter]] = {}  # device -> its latest dead letters
        self._reasons: Counter[str] = Counter()
        self._last_ends: dict[str, tuple[float, int]] = {}
        self._last_metrics: dict[tuple[str, str, str], tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeline-feed", daemon=True)
        self._consumer: Any = None
        self._admin: Any = None
        self._dlq_assigned = False

    def start(self) -> PipelineFeed:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def deadletters_of(self, device: str) -> list[DeadLetter]:
        return list(reversed(self.recent.get(device, ())))

    def _run(self) -> None:
        from confluent_kafka import Consumer
        from confluent_kafka.admin import AdminClient

        self._admin = AdminClient(self._client_config)
        self._consumer = Consumer({**self._client_config,
                                   "group.id": f"{OWN_GROUPS}{uuid.uuid4().hex[:8]}",  # never committed
                                   "enable.auto.commit": False, "isolation.level": "read_committed",
                                   "auto.offset.reset": "earliest"})
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self._look()
                except Exception as exc:  # a bug must not end the feed silently: shown, tried again
                    log.exception("pipeline look failed")
                    self.view = PipelineView(time.time(), errors=[f"internal error: {exc}"])
                    self.version += 1
                self._stop.wait(max(0.0, self.period - (time.monotonic() - started)))
        finally:
            self._consumer.close()

    def _look(self) -> None:
        errors: list[str] = []
        ends: dict[tuple[str, int], int] = {}
        topics: list[TopicRate] = []
        for role, name in self._names().items():
            topics.append(self._topic(role, name, ends, errors))
        groups = self._groups(ends, errors)
        self._read_deadletters(errors)
        metrics = self._metrics(errors)
        self.view = PipelineView(time.time(), topics, groups, dict(self._reasons), metrics, errors)
        self.version += 1

    def _names(self) -> dict[str, str]:
        return {f.name: getattr(self.topics, f.name) for f in dataclasses.fields(self.topics)}

    def _partitions(self, topic: str) -> list[int]:
        meta = self._consumer.list_topics(topic, timeout=TIMEOUT).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        return sorted(meta.partitions)

    def _topic(self, role: str, name: str, ends: dict[tuple[str, int], int], errors: list[str]) -> TopicRate:
        from confluent_kafka import TopicPartition

        try:
            parts = self._partitions(name)
            if not parts:
                return TopicRate(name, role, None, None)
            total = 0
            for p in parts:
                end = self._consumer.get_watermark_offsets(TopicPartition(name, p), timeout=TIMEOUT,
                                                           cached=False)[1]
                ends[(name, p)] = end
                total += end
        except Exception as exc:  # KafkaException: shown on the page
            errors.append(f"{name}: {exc}")
            return TopicRate(name, role, None, None)
        now = time.monotonic()
        rate = None
        if name in self._last_ends:
            then, before = self._last_ends[name]
            rate = (total - before) / (now - then) if now > then else None
        self._last_ends[name] = (now, total)
        return TopicRate(name, role, total, rate)

    def _groups(self, ends: dict[tuple[str, int], int], errors: list[str]) -> list[GroupLag]:
        from confluent_kafka import ConsumerGroupTopicPartitions

        ours = set(self._names().values())
        try:
            listed = self._admin.list_consumer_groups(request_timeout=TIMEOUT).result()
            ids = sorted(g.group_id for g in listed.valid if not g.group_id.startswith(OWN_GROUPS))
            futures = {g: self._admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)],
                                                                  request_timeout=TIMEOUT)[g] for g in ids}
        except Exception as exc:
            errors.append(f"consumer groups: {exc}")
            return []
        out = []
        for group, future in futures.items():
            try:
                result = future.result()
            except Exception as exc:
                errors.append(f"group {group}: {exc}")
                continue
            for tp in result.topic_partitions or ():
                if tp.topic in ours:
                    end = ends.get((tp.topic, tp.partition))
                    out.append(GroupLag(group, tp.topic, tp.partition, tp.offset, end))
        return out

    def _read_deadletters(self, errors: list[str]) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        topic = self.topics.deadletter
        try:
            if not self._dlq_assigned:
                parts = self._partitions(topic)
                if not parts:
                    return
                self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
                self._dlq_assigned = True
            for _ in range(50):  # at most 50 000 a look: a huge backlog is caught up over several looks
                batch = self._consumer.consume(1000, 0.2)
                if not batch:
                    break
                for msg in batch:
                    if msg.error() is None:
                        self._deadletter(msg)
        except Exception as exc:
            errors.append(f"{topic}: {exc}")

    def _deadletter(self, msg: Any) -> None:
        headers = {name: raw.decode("utf-8", "replace") for name, raw in message_headers(msg).items()}
        reason = headers.get(dlq.REASON, "?")
        self._reasons[reason] += 1
        device = (msg.key() or b"").decode("utf-8", "replace") or "-"
        letters = self.recent.setdefault(device, deque(maxlen=RECENT_PER_DEVICE))
        letters.append(DeadLetter(msg.partition(), msg.offset(), headers.get(dlq.TIME, ""), reason,
                                  f"{headers.get(dlq.ERROR_CLASS, '')}: {headers.get(dlq.ERROR, '')}"[:300],
                                  headers.get(dlq.COMPONENT, "")))

    def _metrics(self, errors: list[str]) -> list[MetricSample]:
        from prometheus_client.parser import text_string_to_metric_families

        out = []
        now = time.monotonic()
        for endpoint, url in self.endpoints:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    text = response.read(4 * 1024 * 1024).decode("utf-8", "replace")
                families = list(text_string_to_metric_families(text))
            except Exception as exc:  # unreachable, not Prometheus text: shown, tried again next look
                errors.append(f"metrics {endpoint}: {exc}")
                continue
            for family in families:
                if not family.name.startswith("edgebridge_"):
                    continue
                for s in family.samples:
                    if s.name.endswith("_created"):
                        continue
                    labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                    key = (endpoint, s.name, labels)
                    rate = None
                    if family.type == "counter" and key in self._last_metrics:
                        then, before = self._last_metrics[key]
                        rate = (s.value - before) / (now - then) if now > then else None
                    self._last_metrics[key] = (now, s.value)
                    out.append(MetricSample(endpoint, s.name, labels, s.value, rate))
        return out
