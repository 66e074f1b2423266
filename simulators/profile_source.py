"""A polled agent source whose readings come from a seeded sensor model (:mod:`simulators.sensors`).

It is the agent's :class:`edge_agent.sources.simulated.SimulatedSource` (same pacing, ``limit``,
``set_interval``) with the readings of a :class:`simulators.sensors.Sensor` instead of random walks, so a
virtual device of the fleet runs the agent's own loop, outbox and forwarder; only where the readings come
from differs from a real device. Model time is the sample index times the interval: the same seed gives
the same readings whatever the timing of the run.
"""

from __future__ import annotations

import math
import time

from edge_agent.clock import Clock
from edge_agent.sources.simulated import SimulatedSource
from edgebridge._stamps import rfc3339
from edgebridge.envelope import Event, new_reading
from simulators.sensors import Sensor

__all__ = ["ProfileSource"]


class ProfileSource(SimulatedSource):
    name = "profile"

    def __init__(self, deviceid: str, clock: Clock, model: Sensor, interval: float, limit: int = 0) -> None:
        super().__init__(deviceid, clock, [], interval, None, limit)
        self.model = model
        self.finished = False
        self.skew = 0.0  # seconds added to the readings' time: a clock gone wrong (simulators.fleet_faults)

    def finish(self) -> None:
        """No reading from now on: the fleet's time is up (what was committed still goes)."""
        self.finished = True

    def due(self, max_events: int) -> int:
        return 0 if self.finished else super().due(max_events)

    @property
    def next_at(self) -> float:
        # finished: no sample will come (a shared loop must not wake for one)
        return math.inf if self.finished else super().next_at

    def poll(self, max_events: int) -> list[Event]:
        n = self.due(max_events)
        if n <= 0:
            return []
        fields = self.clock.fields()
        if self.skew:
            fields["time"] = rfc3339(time.time() + self.skew)
        first = self.stats.read
        self.stats.read += n
        # seq 1 is a placeholder: the outbox assigns the real one at commit
        return [new_reading(self.deviceid, 1, self.model.read(i * self.interval), **fields)  # type: ignore[arg-type]
                for i in range(first, first + n)]
