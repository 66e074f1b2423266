"""The aggregator's Prometheus metrics: the enricher's transaction and rebalance counts (the same
checkpoint and assignment code counts them) under ``edgebridge_aggregator_``, and its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from enricher.metrics import EnricherMetrics

__all__ = ["PREFIX", "AggregatorMetrics"]

PREFIX = "edgebridge_aggregator_"


class AggregatorMetrics(EnricherMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry, prefix=PREFIX)
        r = self.registry
        self.too_late = Counter(PREFIX + "too_late", "Readings of windows already final: counted, not "
                                "applied (at processing; an abort replays them)", registry=r)
        self.ahead = Counter(PREFIX + "ahead", "Readings timed more than max_ahead_seconds after Kafka "
                             "took them (a device clock ahead): counted, not applied", registry=r)
        self.closed = Counter(PREFIX + "windows_closed", "Windows that became final (at processing)",
                              registry=r)
        self.devices_forgotten = Counter(
            PREFIX + "devices_forgotten", "Devices idle for aggregates.idle_days of Kafka time: their open "
            "windows made final, their state deleted (at processing)", registry=r)
        self.devices_moved = Counter(
            PREFIX + "devices_moved", "Records (or restored state records) of a device on another input "
            "partition than its window state's: the processed topic gained partitions", registry=r)
        self.skipped = Counter(PREFIX + "skipped", "Processed records that are not readings", registry=r)
        self.open_windows = Gauge(PREFIX + "open_windows", "Open windows of the assigned partitions",
                                  registry=r)
