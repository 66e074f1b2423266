"""Built-in sensor models for demos, tests and benchmarks: a polled source, no thread.

Each sample is one ``edgebridge.reading.v1`` event holding every configured sensor, each a bounded
random walk (temperature in ``Cel``, humidity ``%RH``, pressure ``Pa``, illuminance ``lx``, voltage ``V``,
CO2 ``ppm``). ``interval = 0`` produces as many events as the agent asks for (benchmarks).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from edge_agent.clock import Clock
from edge_agent.sources.base import SourceStats
from edgebridge.envelope import READING_TYPE, Event, new_event_ids, now_rfc3339

__all__ = ["MODELS", "SimulatedSource"]


@dataclass(frozen=True)
class Model:
    unit: str
    start: float
    step: float
    low: float
    high: float
    digits: int


MODELS: dict[str, Model] = {
    "temperature": Model("Cel", 21.0, 0.1, -40.0, 85.0, 2),
    "humidity": Model("%RH", 45.0, 0.5, 0.0, 100.0, 1),
    "pressure": Model("Pa", 101_325.0, 10.0, 87_000.0, 108_500.0, 0),
    "illuminance": Model("lx", 300.0, 20.0, 0.0, 100_000.0, 0),
    "voltage": Model("V", 12.0, 0.01, 10.0, 14.5, 3),
    "co2": Model("ppm", 420.0, 5.0, 350.0, 5000.0, 0),
}


_new_event = tuple.__new__
_NO_EXT = Event._field_defaults["extensions"]
class SimulatedSource:
    name = "simulated"

    def __init__(
        self,
        deviceid: str,
        clock: Clock,
        sensors: list[str],
        interval: float,
        seed: int | None,
        limit: int = 0,
    ) -> None:
        self.deviceid = deviceid
        self.clock = clock
        self.stats = SourceStats()
        self.interval = interval
        self.limit = limit
        self._rng = random.Random(seed)
        self._models = [
            (name, m.unit, m.step, m.low, m.high, m.digits) for name in sensors for m in [MODELS[name]]
        ]
        self._values = {name: MODELS[name].start for name in sensors}
        self._next = time.monotonic()

    @property
    def exhausted(self) -> bool:
        """``limit`` events were produced: nothing more will come."""
        return bool(self.limit) and self.stats.read >= self.limit

    @property
    def next_at(self) -> float:
        """The monotonic time of the next sample (a loop driving many agents sleeps until then)."""
        return self._next

    def set_interval(self, seconds: float) -> None:
        self.interval = max(0.0, seconds)
        self._next = time.monotonic()

    def due(self, max_events: int) -> int:
        """How many samples are due now, at most ``max_events`` and within ``limit``; the schedule
        moves past them (a subclass making other readings paces itself with this)."""
        now = time.monotonic()
        self.stats.heartbeat = now
        if self.interval > 0:
            due = int((now - self._next) / self.interval) + 1 if now >= self._next else 0
            n = min(due, max_events)
            self._next += n * self.interval
            if due > max_events and now - self._next > 1.0:
                self._next = now  # fell behind by more than a second: skip, do not burst forever
        else:
            n = max_events
        if self.limit:
            n = min(n, self.limit - self.stats.read)
        return n

    def poll(self, max_events: int) -> list[Event]:
        n = self.due(max_events)
        if n <= 0:
            return []
        stamp = self.clock.stamp()  # one stamp per poll: the samples of one poll share a millisecond
        synced, boot, mono = stamp.clocksynced, stamp.bootid, stamp.monotime
        when = now_rfc3339()
        deviceid, rand, values = self.deviceid, self._rng.random, self._values
        make = _new_event
        out = []
        for event_id in new_event_ids(n):
            data = {}
            for name, unit, step, low, high, digits in self._models:
                value = values[name] + step * (2.0 * rand() - 1.0)
                value = low if value < low else high if value > high else value
                values[name] = value
                data[name] = {"v": round(value, digits), "u": unit}
            # trusted input: built directly, the validators of new_reading are for outside data
            fields = (event_id, deviceid, 1, READING_TYPE, when, data, boot, mono, synced, _NO_EXT, None)
            out.append(make(Event, fields))
        self.stats.read += n
        return out
