"""What the pipeline page shows, as one immutable value per look (:class:`PipelineView`)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DeadLetter", "GroupLag", "Hop", "MetricSample", "PipelineView", "TopicRate"]


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
class Hop:
    """A named figure of one hop (:mod:`dashboard.hops`)."""

    key: str  # stable, for the page's data-hop and tests
    label: str
    rate: float | None  # per second, over the last look
    value: str  # the total, or the figure itself; "" when not reported
    source: str  # where it is read


@dataclass(frozen=True)
class PipelineView:
    when: float = 0.0
    topics: list[TopicRate] = field(default_factory=list)
    groups: list[GroupLag] = field(default_factory=list)
    deadletters_by_reason: dict[str, int] = field(default_factory=dict)
    metrics: list[MetricSample] = field(default_factory=list)
    hops: list[Hop] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
