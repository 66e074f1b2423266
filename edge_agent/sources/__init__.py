"""Event sources: simulated sensors (polled), a serial port and a local ingest socket (threaded)."""

from edge_agent.sources.base import Intake, PolledSource, SourceStats, ThreadedSource

__all__ = ["Intake", "PolledSource", "SourceStats", "ThreadedSource"]
