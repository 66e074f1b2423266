"""`edgebridge simulate serial` as a child process, read by the agent's serial source: its summary counts
are what the source saw; SIGTERM ends it with the summary and the link removed."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from edge_agent.clock import Clock
from edge_agent.config import SerialConfig
from edge_agent.sources.base import Intake
from edge_agent.sources.serial_port import SerialSource
from simulators.serial_sensor import agent_serial_settings
from tests.waiting import wait_for


def test_simulate_serial_cli_counts_match_the_source(tmp_path: Path) -> None:
    link = tmp_path / "sensor"
    cmd = [sys.executable, "-m", "edgebridge", "simulate", "serial", "--link", str(link), "--protocol", "kv",
           "--rate", "50", "--garbage", "0.2", "--partial", "0.1", "--seed", "4"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    intake = Intake(10000, threading.Event(), threading.Event())
    settings = {**agent_serial_settings(link, "kv"), "read_timeout": 0.05, "reopen_initial": 0.05}
    source = SerialSource("dev-cli", Clock("never"), SerialConfig(**settings))
    try:
        wait_for(link.exists, 30, "the link")
        source.start(intake)
        wait_for(lambda: source.stats.read >= 20 and source.stats.bad >= 2, 30, "lines read")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        found = re.search(r"wrote (\d+) good lines, (\d+) garbage lines; 0 unplugs", out)
        assert found, out
        good, garbage = int(found[1]), int(found[2])
        wait_for(lambda: (source.stats.read, source.stats.bad) == (good, garbage), 30, f"{good}, {garbage}")
    finally:
        source.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert '[serial]\nenabled = true\nport = "' in out and 'protocol = "kv"' in out
    assert not link.exists()
