"""The serial source on a pty pair: good lines become events, garbage is counted, an unplug is survived."""

from __future__ import annotations

import os
import termios
import threading
from pathlib import Path

import pytest

from edge_agent.clock import Clock
from edge_agent.config import SerialConfig
from edge_agent.sources.base import Intake
from edge_agent.sources.lines import LineParser
from edge_agent.sources.serial_port import SerialSource
from tests.waiting import wait_for


class Pty:
    """A virtual serial device; ``link`` is a stable path like /dev/serial/by-id/..."""

    def __init__(self, link: Path) -> None:
        self.master, self.slave = os.openpty()
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.ttyname(self.slave))

    def opened_raw(self) -> bool:  # pyserial switched the line to raw mode: it has the port open
        return not termios.tcgetattr(self.slave)[3] & termios.ECHO

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        os.close(self.master)
        os.close(self.slave)


def test_serial_pty_good_bad_partial_and_unplug(tmp_path: Path) -> None:
    link = tmp_path / "usb-sensor-if00"
    wake, stop = threading.Event(), threading.Event()
    intake = Intake(100, wake, stop)
    config = SerialConfig(
        enabled=True,
        port=str(link),
        protocol="json",
        units={"t": "Cel"},
        read_timeout=0.05,
        reopen_initial=0.05,
        reopen_max=0.2,
    )
    source = SerialSource("dev-serial", Clock("never"), config)
    dev = Pty(link)
    source.start(intake)
    try:
        wait_for(dev.opened_raw, 10, "the port opened")
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
        dev = Pty(link)  # replugged: a new device node behind the same stable path
        wait_for(dev.opened_raw, 10, "the port reopened")
        for i in range(3):
            dev.write(b'{"t": %d}\n' % (100 + i))
        wait_for(lambda: source.stats.read == 9, 10, "9 events")
    finally:
        source.stop()
        dev.unplug()
    events = intake.take(100)
    assert [e.data["t"]["v"] for e in events] == [0, 1, 2, 3, 4, 99, 100, 101, 102]
    assert all(e.data["t"]["u"] == "Cel" and e.clocksynced is False and e.bootid for e in events)
    assert source.stats.bad == 3


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
