"""``[aggregates]`` of the enricher's configuration file: the aggregator's window, lateness and ids.

The aggregator reads the same file as the enricher (``[kafka]`` with its SASL/SSL settings, ``[topics]``,
``[commit]``, ``[log]``, ``[metrics]``); this section holds only what is its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgebridge.errors import ConfigError
from edgebridge.kafka_ids import AGGREGATOR_GROUP, AGGREGATOR_TRANSACTIONAL_ID_PREFIX
from enricher.aggregates.windows import WindowRule

__all__ = ["AggregateSettings"]


@dataclass(frozen=True)
class AggregateSettings:
    # tumbling windows of this many seconds, aligned on the Unix epoch (a 60 s window starts on the minute)
    window_seconds: float = 60.0
    # a window stays open until its device's watermark (the latest event time seen from that device)
    # passes its end by this much; an event for a window closed by then is counted as too late.
    # 60 s: a device's events reordered by bridge replicas or resent after a reconnect still count.
    lateness_seconds: float = 60.0
    # an event time more than this far after the time Kafka took its processed record is a device clock
    # ahead: counted as "ahead", not applied, the watermark not moved (else one reading stamped 2099
    # would make every later reading of the device too late). 0 turns the check off.
    max_ahead_seconds: float = 300.0
    # per device: open windows (one more makes its oldest final early) and measurement names counted as
    # too late or ahead (the others under "*"): its state record stays far below Kafka's record size
    max_open_windows: int = 1000
    # a device none of whose records Kafka took for this many days (by its partition's clock: the Kafka
    # time of the latest record processed from it) is forgotten: its open windows are emitted final and
    # its state deleted (a tombstone), so memory and restores do not grow with every device ever seen.
    # As the enricher's epoch_idle_days; longer than the outages devices buffer through. 0: never.
    idle_days: float = 7.0
    # stable per instance and unique among instances: it makes the transactional.id
    instance_id: str = "aggregator-0"
    group_id: str = AGGREGATOR_GROUP
    transactional_id_prefix: str = AGGREGATOR_TRANSACTIONAL_ID_PREFIX
    # a transaction every this many ms: each one re-emits the figures of every window it changed, so
    # a longer interval than the enricher's means fewer superseded records in iot.aggregates
    commit_interval_ms: int = 1000
    # the aggregator's /metrics and /healthz, beside the enricher's [metrics] port on the same host
    metrics_port: int = 9112

    def validate(self) -> None:
        if not self.window_ms >= 1:
            raise ConfigError("window_seconds", "must be at least 0.001")
        if not self.lateness_seconds >= 0:
            raise ConfigError("lateness_seconds", "must not be negative")
        if not self.max_ahead_seconds >= 0:
            raise ConfigError("max_ahead_seconds", "must not be negative (0: no check)")
        if not self.idle_days >= 0:
            raise ConfigError("idle_days", "must not be negative (0: devices are never forgotten)")
        if self.max_open_windows < 1:
            raise ConfigError("max_open_windows", "must be at least 1")
        if self.commit_interval_ms < 1:
            raise ConfigError("commit_interval_ms", "must be at least 1")
        if not self.instance_id:
            raise ConfigError("instance_id", "must be set (stable per instance)")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError("metrics_port", f"must be between 0 and 65535, not {self.metrics_port}")

    @property
    def window_ms(self) -> int:
        return round(self.window_seconds * 1000)

    @property
    def lateness_ms(self) -> int:
        return round(self.lateness_seconds * 1000)

    @property
    def max_ahead_ms(self) -> int | None:
        return round(self.max_ahead_seconds * 1000) or None

    @property
    def idle_ms(self) -> int | None:
        return round(self.idle_days * 86_400_000) or None

    @property
    def rule(self) -> WindowRule:
        """The window rule these settings make (the aggregator's, and the check's recomputation's)."""
        return WindowRule(self.window_ms, self.lateness_ms, self.max_open_windows, self.idle_ms)

    @property
    def transactional_id(self) -> str:
        return f"{self.transactional_id_prefix}-{self.instance_id}"
