"""Sensor models (pure logic, a fixed seed): the shapes the profiles promise."""

from __future__ import annotations

import math
import statistics

import pytest

from edgebridge.envelope import new_reading
from simulators.sensors import DEAD_TEMPERATURE, PROFILES, sensor

PERIOD = 1000.0
TIMES = [float(t) for t in range(0, 3000)]  # three periods, one reading a second


def test_daily_cycle_period_and_amplitude() -> None:
    s = sensor("indoor", 7, period=PERIOD, noise=0.0)
    temps = [s.temperature(t) for t in TIMES]
    assert max(temps) - min(temps) == pytest.approx(2 * 1.5, abs=0.02)
    # coldest at the start of each period, warmest half a period later
    assert [temps.index(min(temps[i : i + 1000]), i) for i in (0, 1000, 2000)] == [0, 1000, 2000]
    assert temps[500] == max(temps)


def test_noise_is_seeded_and_bounded() -> None:
    a, b, c = (sensor("indoor", seed, period=PERIOD) for seed in (1, 1, 2))
    assert [a.read(t) for t in TIMES[:50]] == [b.read(t) for t in TIMES[:50]]
    assert [a.read(t) for t in TIMES[:50]] != [c.read(t) for t in TIMES[:50]]
    clean = sensor("indoor", 1, period=PERIOD, noise=0.0)
    residual = [a.temperature(t) - clean.temperature(t) for t in TIMES]
    assert 0.05 < statistics.pstdev(residual) < 0.2  # the profile's 0.1 Cel


def test_humidity_is_anticorrelated_with_temperature() -> None:
    s = sensor("outdoor", 3, period=PERIOD)
    temps = [s.temperature(t) for t in TIMES]
    hums = [s.humidity(t) for t in TIMES]
    assert statistics.correlation(temps, hums) < -0.9
    assert all(0.0 <= h <= 100.0 for h in hums)


def test_drift() -> None:
    s = sensor("drifting", 5, noise=0.0, amplitude=0.0)
    assert s.temperature(10 * 86400.0) - s.temperature(0.0) == pytest.approx(20.0, abs=0.02)


def test_stuck_sensor_has_zero_variance() -> None:
    s = sensor("stuck", 9, period=PERIOD)
    assert statistics.pvariance([s.temperature(t) for t in TIMES]) == 0
    assert statistics.pvariance([s.humidity(t) for t in TIMES]) == 0


def test_spikes_at_the_configured_rate() -> None:
    s = sensor("spiky", 11, period=PERIOD)
    clean = sensor("spiky", 11, period=PERIOD, spike_rate=0.0)
    spikes = sum(abs(s.temperature(t) - clean.temperature(t)) > 10 for t in TIMES)
    assert 0.03 * len(TIMES) < spikes < 0.07 * len(TIMES)  # 5 %, with binomial slack


def test_faulty_sensor_dies_out_of_range_but_valid() -> None:
    s = sensor("faulty", 13, dead_after=100.0)
    assert s.temperature(99.0) != DEAD_TEMPERATURE
    dead = s.read(100.0)
    assert dead == s.read(5000.0)
    assert dead["temperature"]["v"] < -30 and dead["humidity"]["v"] == 0.0
    new_reading("dev-dead", 1, dead)  # still a valid reading: the enricher's range flags find it


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_gives_valid_senml_readings(profile: str) -> None:
    s = sensor(profile, 17)
    for t in range(0, 86400, 600):
        data = s.read(float(t))
        assert {m["u"] for m in data.values()} == {"Cel", "%RH"}
        assert all(math.isfinite(m["v"]) for m in data.values())
        new_reading("dev-1", 1, data)


def test_unknown_profile() -> None:
    with pytest.raises(ValueError, match=r"known: .*indoor"):
        sensor("nope", 1)
