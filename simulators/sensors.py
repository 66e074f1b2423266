"""Sensor models: realistic readings per measurement, deterministic from a seed.

A :class:`Sensor` is a pure function of its parameters, its seed and the time ``t`` (seconds since an
arbitrary start): ``Sensor.read(t)`` gives ``{name: {"v": value, "u": unit}}``, reading data that
:func:`edgebridge.envelope.new_reading` accepts (SenML units ``Cel`` and ``%RH``). The same seed and the
same ``t`` always give the same reading, so a test or a load run can be replayed.

Behaviours, combined by a named profile (:data:`PROFILES`):

- a daily temperature cycle (``period`` seconds, ``amplitude`` around ``mean``, coldest at t=0) with
  Gaussian noise and a slow linear drift;
- relative humidity tied to it, inversely (warmer air holds more water: the relative value falls);
- spikes: a reading off by ``spike_size`` with probability ``spike_rate`` per reading;
- stuck: from ``stuck_after`` on, the last value repeats exactly (variance 0);
- dead: from ``dead_after`` on, an out-of-range sentinel (-40 Cel, 0 %RH, what many cheap sensors send
  when their probe is gone), finite so that it is a valid reading the enricher's range flags catch.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["DAY", "DEAD_HUMIDITY", "DEAD_TEMPERATURE", "PROFILES", "Profile", "Sensor", "sensor"]

DAY = 86400.0
DEAD_TEMPERATURE = -40.0
DEAD_HUMIDITY = 0.0


@dataclass(frozen=True)
class Profile:
    """The parameters of one kind of sensor; see the module docstring for what each does."""

    mean: float = 21.0  # Cel
    amplitude: float = 1.5  # Cel, half the daily swing
    period: float = DAY  # s
    noise: float = 0.1  # Cel, standard deviation
    drift: float = 0.0  # Cel per day
    humidity_mean: float = 45.0  # %RH
    humidity_per_degree: float = 2.0  # %RH lost per Cel above the mean
    spike_rate: float = 0.0  # probability per reading
    spike_size: float = 15.0  # Cel
    stuck_after: float | None = None  # s
    dead_after: float | None = None  # s


PROFILES: dict[str, Profile] = {
    "indoor": Profile(),
    "outdoor": Profile(mean=12.0, amplitude=6.0, noise=0.3, drift=0.05, humidity_mean=70.0,
                       humidity_per_degree=3.0),
    "drifting": Profile(drift=2.0),
    "spiky": Profile(spike_rate=0.05),
    "stuck": Profile(stuck_after=0.0),
    "faulty": Profile(noise=0.3, spike_rate=0.02, dead_after=6 * 3600.0),
}  # fmt: skip


class Sensor:
    """Temperature and humidity of one simulated device, a pure function of ``(profile, seed, t)``."""

    def __init__(self, profile: Profile, seed: int) -> None:
        self.profile = profile
        self.seed = seed

    def _rng(self, t: float) -> random.Random:
        # one generator per (seed, t): a reading does not depend on which readings were taken before
        return random.Random(f"{self.seed}:{t!r}")

    def temperature(self, t: float) -> float:
        p = self.profile
        if p.dead_after is not None and t >= p.dead_after:
            return DEAD_TEMPERATURE
        if p.stuck_after is not None and t >= p.stuck_after:
            t = p.stuck_after  # the value it froze at, without fresh noise
        rng = self._rng(t)
        value = p.mean - p.amplitude * math.cos(2 * math.pi * t / p.period) + p.drift * t / DAY
        value += rng.gauss(0.0, p.noise)
        if rng.random() < p.spike_rate:
            value += p.spike_size * rng.choice((-1, 1))
        return round(value, 2)

    def humidity(self, t: float) -> float:
        p = self.profile
        if p.dead_after is not None and t >= p.dead_after:
            return DEAD_HUMIDITY
        if p.stuck_after is not None and t >= p.stuck_after:
            t = p.stuck_after
        # from the cycle, not from temperature(t): a temperature spike is a probe glitch, not wetter air
        cycle = -p.amplitude * math.cos(2 * math.pi * t / p.period)
        value = p.humidity_mean - p.humidity_per_degree * cycle + self._rng(-t - 1).gauss(0.0, 0.5)
        return round(min(100.0, max(0.0, value)), 1)

    def read(self, t: float) -> dict[str, Any]:
        """Reading data ``{"temperature": {"v", "u": "Cel"}, "humidity": {"v", "u": "%RH"}}``."""
        return {
            "temperature": {"v": self.temperature(t), "u": "Cel"},
            "humidity": {"v": self.humidity(t), "u": "%RH"},
        }


def sensor(profile: str, seed: int, **overrides: Any) -> Sensor:
    """A sensor of a named profile, with some parameters replaced (``sensor("indoor", 1, period=60)``)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(sorted(PROFILES))}")
    return Sensor(replace(PROFILES[profile], **overrides), seed)
