"""The pipeline's health, read where it already lives: Kafka and the components' metrics endpoints.

One thread looks every ``period`` seconds and publishes an immutable :class:`PipelineView` (a reference
swap; the page reads the latest one):

- per topic of the wire contract: the sum of its partitions' end offsets, and the rate since the last
  look (records, and transaction markers, per second);
- per consumer group that reads one of those topics: its committed offset and lag per partition
  (end offset minus committed);
- dead letters by reason, and each device's latest ones, from the dead-letter topic's headers, and
  each device's last commands and replies (:mod:`dashboard.commands`): the three topics read from the
  beginning once, then followed;
- each configured Prometheus endpoint's ``edgebridge_*`` samples, with a rate for the counters (and the
  histograms' cumulative counts), and the figures by hop named from them (:mod:`dashboard.hops`).

What a look asks Kafka, kept small because it runs every few seconds against a shared cluster: the
end offsets of every partition of every topic in one ``ListOffsets`` request per broker (not one
request per partition); the topics' partitions, and the list of consumer groups, every
``SLOW_EVERY`` seconds only (they rarely change); and committed offsets only of the groups that read
one of our topics (a group is asked once when it first appears, and dropped if it reads none).

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
from typing import Any

from dashboard.commands import CommandLog
from dashboard.hops import hop_figures
from dashboard.pipeline_view import DeadLetter, GroupLag, MetricSample, PipelineView, TopicRate
from edgebridge import deadletters as dlq
from edgebridge.ops.reading import message_headers
from edgebridge.topics import KafkaTopics

__all__ = ["DeadLetter", "GroupLag", "MetricSample", "PipelineFeed", "PipelineView", "TopicRate"]

log = logging.getLogger(__name__)
TIMEOUT = 10.0
RECENT_PER_DEVICE = 20
OWN_GROUPS = "edgebridge-dashboard-"  # the dashboard's reader: not a pipeline group to show
SLOW_EVERY = 30.0  # seconds between two looks at what rarely changes: partitions, the list of groups


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
        self._followed: set[str] = set()  # the topics assigned to the consumer: read from the beginning
        self.commands = CommandLog()  # each device's last commands and replies
        self._partitions_of: dict[str, list[int]] = {}
        self._group_ids: list[str] = []  # the groups that read one of our topics
        self._probed: set[str] = set()  # every group asked once (ours or not)
        self._slow_at = -SLOW_EVERY  # monotonic time of the last look at partitions and groups

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
        if time.monotonic() - self._slow_at >= SLOW_EVERY:
            self._slow_at = time.monotonic()
            self._refresh_partitions(errors)
            self._refresh_groups(errors)
        ends = self._end_offsets(errors)
        topics = [self._topic(role, name, ends) for role, name in self._names().items()]
        groups = self._groups(ends, errors)
        self._read_followed(errors)
        metrics = self._metrics(errors)
        self.view = PipelineView(time.time(), topics, groups, dict(self._reasons), metrics,
                                 hop_figures(topics, metrics), errors)
        self.version += 1

    def _names(self) -> dict[str, str]:
        return {f.name: getattr(self.topics, f.name) for f in dataclasses.fields(self.topics)}

    def _partitions(self, topic: str) -> list[int]:
        meta = self._consumer.list_topics(topic, timeout=TIMEOUT).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        return sorted(meta.partitions)

    def _refresh_partitions(self, errors: list[str]) -> None:
        for name in set(self._names().values()):
            try:
                self._partitions_of[name] = self._partitions(name)
            except Exception as exc:  # KafkaException: shown on the page, asked again later
                errors.append(f"{name}: {exc}")

    def _end_offsets(self, errors: list[str]) -> dict[tuple[str, int], int]:
        """Every partition's end offset (the high watermark), in one request per broker."""
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec

        wanted = {TopicPartition(t, p): OffsetSpec.latest() for t, parts in self._partitions_of.items()
                  for p in parts}
        if not wanted:
            return {}
        ends = {}
        futures = self._admin.list_offsets(wanted, request_timeout=TIMEOUT)
        for tp, future in futures.items():
            try:
                ends[(tp.topic, tp.partition)] = future.result().offset
            except Exception as exc:
                errors.append(f"{tp.topic}[{tp.partition}]: {exc}")
                self._slow_at = -SLOW_EVERY  # a partition gone or moved: its metadata again next look
        return ends

    def _topic(self, role: str, name: str, ends: dict[tuple[str, int], int]) -> TopicRate:
        parts = self._partitions_of.get(name, [])
        if not parts or any((name, p) not in ends for p in parts):
            return TopicRate(name, role, None, None)
        total = sum(ends[(name, p)] for p in parts)
        now = time.monotonic()
        rate = None
        if name in self._last_ends:
            then, before = self._last_ends[name]
            rate = (total - before) / (now - then) if now > then else None
        self._last_ends[name] = (now, total)
        return TopicRate(name, role, total, rate)

    def _refresh_groups(self, errors: list[str]) -> None:
        try:
            listed = self._admin.list_consumer_groups(request_timeout=TIMEOUT).result()
        except Exception as exc:
            errors.append(f"consumer groups: {exc}")
            return
        ids = {g.group_id for g in listed.valid if not g.group_id.startswith(OWN_GROUPS)}
        # a group seen before keeps its verdict; a new one is asked on the next look (_groups)
        self._group_ids = sorted(g for g in self._group_ids if g in ids)
        self._probed &= ids
        self._group_ids += sorted(ids - self._probed)

    def _groups(self, ends: dict[tuple[str, int], int], errors: list[str]) -> list[GroupLag]:
        from confluent_kafka import ConsumerGroupTopicPartitions

        ours = set(self._names().values())
        try:
            futures = {g: self._admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)],
                                                                  request_timeout=TIMEOUT)[g]
                       for g in self._group_ids}
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
            self._probed.add(group)
            mine = [tp for tp in result.topic_partitions or () if tp.topic in ours]
            if not mine:  # reads none of our topics: not asked again until the group list changes
                self._group_ids.remove(group)
            for tp in mine:
                end = ends.get((tp.topic, tp.partition))
                out.append(GroupLag(group, tp.topic, tp.partition, tp.offset, end))
        return out

    def _read_followed(self, errors: list[str]) -> None:
        """The dead letters, the commands and their replies: each topic from its beginning once its
        partitions are known, then followed (one consumer for the three)."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        try:
            for topic in (self.topics.deadletter, self.topics.commands, self.topics.command_responses):
                parts = self._partitions_of.get(topic, [])
                if topic not in self._followed and parts:
                    start = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts]
                    self._consumer.incremental_assign(start)
                    self._followed.add(topic)
            if not self._followed:
                return
            for _ in range(50):  # at most 50 000 a look: a huge backlog is caught up over several looks
                batch = self._consumer.consume(1000, 0.2)
                if not batch:
                    break
                for msg in batch:
                    if msg.error() is None:
                        try:
                            self._record(msg)
                        except Exception as exc:  # one hostile record costs itself, not the batch
                            errors.append(f"{msg.topic()} [{msg.partition()}] @{msg.offset()}: {exc}")
        except Exception as exc:
            errors.append(f"following {', '.join(sorted(self._followed)) or 'topics'}: {exc}")

    def _record(self, msg: Any) -> None:
        topic = msg.topic()
        if topic == self.topics.deadletter:
            self._deadletter(msg)
            return
        device = (msg.key() or b"").decode("utf-8", "replace") or "-"
        kind, ms = msg.timestamp()
        at = ms / 1000 if kind and ms > 0 else None
        if topic == self.topics.commands:
            self.commands.command(device, msg.value(), at, msg.offset())
        else:
            self.commands.reply(device, msg.value(), message_headers(msg).get("correlation_data"), at,
                                msg.offset())

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
                    # a counter's and a histogram's samples only grow: their rate is meaningful
                    if family.type in ("counter", "histogram") and key in self._last_metrics:
                        then, before = self._last_metrics[key]
                        rate = (s.value - before) / (now - then) if now > then else None
                    self._last_metrics[key] = (now, s.value)
                    out.append(MetricSample(endpoint, s.name, labels, s.value, rate))
        return out
