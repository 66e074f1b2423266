"""The serial source on a pty pair (:class:`simulators.serial_sensor.SerialSensor`): good lines become
events, garbage is counted, an unplug is survived; in every protocol."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edge_agent.clock import Clock
from edge_agent.config import SerialConfig
from edge_agent.sources.base import Intake
from edge_agent.sources.lines import LineParser
from edge_agent.sources.serial_port import SerialSource
from simulators.sensors import sensor
from simulators.serial_sensor import PROTOCOLS, SerialSensor, agent_serial_settings
from tests.waiting import wait_for

FAST = {"read_timeout": 0.05, "reopen_initial": 0.05, "reopen_max": 0.2}


def test_serial_pty_good_bad_partial_and_unplug(tmp_path: Path) -> None:
    link = tmp_path / "usb-sensor-if00"
    wake, stop = threading.Event(), threading.Event()
    intake = Intake(100, wake, stop)
    config = SerialConfig(enabled=True, port=str(link), protocol="json", units={"t": "Cel"}, **FAST)
    source = SerialSource("dev-serial", Clock("never"), config)
    dev = SerialSensor(link, "json")
    source.start(intake)
    try:
        wait_for(dev.opened, 10, "the port opened")
        for i in range(5):
            dev.write(b'{"t": %d}\n' % i)
        dev.write(b"\x00\xff garbage\n")  # not UTF-8
        dev.write(b"{not json\n")
        dev.write(b'{"t": {"v": 1, "u": "Cel", "extra": 1}}\n')  # JSON, but not a valid reading
        dev.write(b'{"t": ')  # a partial line, completed by the next write
        wait_for(lambda: source.stats.bad == 3, 10, "3 bad lines")
        dev.write(b"99}\n")
        wait_for(lambda: source.stats.read == 6, 10, "6 events")
        dev.unplug()
        wait_for(lambda: source.stats.reopened == 1, 10, "the unplug noticed")
        dev.plug()  # replugged: a new device node behind the same stable path
        wait_for(dev.opened, 10, "the port reopened")
        for i in range(3):
            dev.write(b'{"t": %d}\n' % (100 + i))
        wait_for(lambda: source.stats.read == 9, 10, "9 events")
    finally:
        source.stop()
        dev.close()
    events = intake.take(100)
    assert [e.data["t"]["v"] for e in events] == [0, 1, 2, 3, 4, 99, 100, 101, 102]
    assert all(e.data["t"]["u"] == "Cel" and e.clocksynced is False and e.bootid for e in events)
    assert source.stats.bad == 3


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_protocol_with_garbage_flood_overlong_and_replug(tmp_path: Path, protocol: str) -> None:
    link = tmp_path / "usb-sim-if00"
    intake = Intake(1000, threading.Event(), threading.Event())
    config = SerialConfig(**{**agent_serial_settings(link, protocol), **FAST, "max_line": 256})
    source = SerialSource("dev-serial", Clock("never"), config)
    dev = SerialSensor(link, protocol, sensor("outdoor", 5, period=600.0), seed=5)
    source.start(intake)

    def agent_has_all() -> bool:
        return source.stats.read == dev.stats.good and source.stats.bad == dev.stats.garbage

    try:
        wait_for(dev.opened, 10, "the port opened")
        for i in range(20):
            dev.garbage() if i % 4 == 3 else dev.reading(partial=i % 5 == 0)
        dev.flood(200)  # faster than the agent reads, and more than one read's worth
        dev.overlong(config.max_line)  # one bad line; its tail, a good line by itself, is no reading
        dev.reading()
        wait_for(agent_has_all, 20, "every line before the unplug")
        dev.unplug()
        wait_for(lambda: source.stats.reopened == 1, 10, "the unplug noticed")
        dev.plug()  # csv: the new device sends its header again, as the reopened source expects
        wait_for(dev.opened, 10, "the port reopened")
        for i in range(10):
            dev.garbage() if i == 4 else dev.reading(partial=i == 7)
        wait_for(agent_has_all, 20, "every line after the replug")
    finally:
        source.stop()
        dev.close()
    assert (dev.stats.good, dev.stats.garbage, dev.stats.unplugs) == (15 + 200 + 1 + 9, 5 + 1 + 1, 1)
    events = intake.take(1000)
    model = sensor("outdoor", 5, period=600.0)
    assert [e.data for e in events] == [model.read(float(t)) for t in range(len(events))]
    assert len(events) == dev.stats.good


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_paced_run_with_unplugs_loses_nothing(tmp_path: Path, protocol: str) -> None:
    link = tmp_path / "usb-run-if00"
    intake = Intake(1000, threading.Event(), threading.Event())
    config = SerialConfig(**{**agent_serial_settings(link, protocol), **FAST})
    source = SerialSource("dev-serial", Clock("never"), config)
    dev = SerialSensor(link, protocol, seed=3)
    source.start(intake)
    try:
        stats = dev.run(rate=100.0, duration=1.5, garbage=0.1, partial=0.1, unplug_every=0.5)
        wait_for(
            lambda: (source.stats.read, source.stats.bad) == (stats.good, stats.garbage), 20, "all lines"
        )
    finally:
        source.stop()
        dev.close()
    assert stats.good > 0 and stats.garbage > 0 and stats.unplugs >= 1
    assert source.stats.reopened == stats.unplugs


@pytest.mark.parametrize(
    ("protocol", "lines", "expected", "bad"),
    [
        (
            "kv",
            ["t=21.5 h=40", "door=true;mode=auto", "novalue", "x=nan"],
            [
                {"t": {"v": 21.5, "u": "Cel"}, "h": {"v": 40, "u": "%RH"}},
                {"door": {"v": True}, "mode": {"v": "auto"}},
            ],
            2,
        ),
        (
            "csv",
            ["time,temp,hum,ignored", "1,20.5,41,x", "2,bad", "3,21,,y"],
            [{"temperature": {"v": 20.5, "u": "Cel"}, "humidity": {"v": 41, "u": "%RH"}}],
            2,
        ),
    ],
)
def test_line_protocols(protocol: str, lines: list[str], expected: list[dict[str, object]], bad: int) -> None:
    parser = LineParser(
        protocol, {"t": "Cel", "h": "%RH"}, {"temp": "temperature:Cel", "hum": "humidity:%RH"}
    )
    good, errors = [], 0
    for line in lines:
        try:
            data = parser.parse(line)
        except ValueError:
            errors += 1
            continue
        if data is not None:
            good.append(data)
    assert good == expected
    assert errors == bad
