"""End to end on the device: a real `edgebridge agent run` child process reads the virtual serial sensor
(:mod:`simulators.serial_sensor`), through garbage, partial lines and an unplug/replug, and commits
exactly its good lines, which an independent MQTT subscriber receives with the sensor model's values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from simulators.processes import ComponentProcess
from simulators.sensors import sensor
from simulators.serial_sensor import SerialSensor, agent_serial_settings
from tests.agent.conftest import Subscriber, agent_settings, status
from tests.waiting import wait_for


def test_agent_process_commits_every_good_serial_line(
    tmp_path: Path,
    mqtt_url: str,
    mqtt_prefix: str,
    subscriber: Callable[..., Subscriber],
    agent_process: Callable[..., ComponentProcess],
) -> None:
    device = "dev-serial-e2e"
    link = tmp_path / "usb-e2e-if00"
    state = tmp_path / "state"
    sub = subscriber(f"{mqtt_prefix}/{device}/events")
    dev = SerialSensor(link, "csv", sensor("outdoor", 21, period=120.0), seed=21)
    serial = {**agent_serial_settings(link, "csv"), "read_timeout": 0.05, "reopen_initial": 0.05}
    agent = agent_process(agent_settings(state, mqtt_url, mqtt_prefix, device, serial=serial)).start()
    try:
        assert dev.wait_opened(30), "the agent did not open the port"
        stats = dev.run(rate=40.0, duration=2.5, garbage=0.1, partial=0.05, unplug_every=1.0)
        assert stats.good > 0 and stats.garbage > 0 and stats.unplugs >= 1

        def committed() -> int:
            return (status(state / "outbox.db").get("last_seq") or {}).get(device, 0)  # type: ignore[no-any-return]

        wait_for(lambda: committed() >= stats.good, 30, f"{stats.good} committed")
        wait_for(lambda: len({e["seq"] for e in sub.events()}) >= stats.good, 30, "every event received")
        assert agent.terminate() == 0
    finally:
        dev.close()
    assert committed() == stats.good  # nothing more: the garbage became no event
    by_seq = {e["seq"]: e for e in sub.events()}
    assert sorted(by_seq) == list(range(1, stats.good + 1))
    model = sensor("outdoor", 21, period=120.0)
    assert [by_seq[s]["data"] for s in sorted(by_seq)] == [model.read(float(t)) for t in range(stats.good)]
