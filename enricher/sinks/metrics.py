"""The sink's Prometheus metrics, read at scrape time from the counts its runner keeps."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from enricher.sinks.base import SinkRunner

__all__ = ["register"]

P = "edgebridge_sink_"


class _SinkCollector(Collector):
    def __init__(self, runner: SinkRunner) -> None:
        self.runner = runner

    def collect(self) -> Iterator[CounterMetricFamily]:
        r = self.runner
        yield CounterMetricFamily(P + "written", "Rows inserted (an event id already stored is not)",
                                  value=r.written)
        yield CounterMetricFamily(P + "skipped", "Valid events that are not rows (gap events)",
                                  value=r.skipped)
        yield CounterMetricFamily(P + "quarantined", "Records kept in sink_quarantine with their reason",
                                  value=r.quarantined)


def register(runner: SinkRunner, registry: CollectorRegistry) -> None:
    registry.register(_SinkCollector(runner))
