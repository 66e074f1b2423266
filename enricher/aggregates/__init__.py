"""Windowed aggregates of the processed readings: per device and measurement, tumbling windows by event
time with an allowed lateness, exactly once into ``iot.aggregates`` (docs/aggregates.md).

- :mod:`~enricher.aggregates.windows`: the window rule and a device's windows (pure functions);
- :mod:`~enricher.aggregates.table`: the windows of the assigned partitions as Kafka records;
- :mod:`~enricher.aggregates.aggregator`: the consume-transform-produce loop, on the enricher's
  checkpoint and rebalance machinery;
- :mod:`~enricher.aggregates.cli`: ``edgebridge aggregator run``.
"""

from enricher.aggregates.config import AggregateSettings
from enricher.aggregates.windows import DeviceWindows, Figures, WindowRule

__all__ = ["AggregateSettings", "DeviceWindows", "Figures", "WindowRule"]
