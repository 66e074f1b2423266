"""`edgebridge demo --dashboard`: the SQLite sink and the dashboard beside the demo's pipeline.

The sink (``edgebridge sink sqlite``) writes the processed events into ``sink.db`` of the demo's work
folder; the dashboard (``edgebridge dashboard``) reads it, the local brokers, and the bridge's, the
enricher's and the sink's metrics endpoints. Both are child processes started as an operator starts
them. The dashboard listens on 127.0.0.1 without a login (``no_login``: the demo's brokers are local
and throwaway); its URL is what it prints when it listens.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from edgebridge.devbrokers import LocalBrokers
from edgebridge.devbrokers._process import free_port
from simulators.processes import component_env, stop_process, to_toml

__all__ = ["DemoDashboard"]


class DemoDashboard:
    def __init__(self, brokers: LocalBrokers, workdir: Path, metrics: dict[str, int]) -> None:
        self.brokers = brokers
        self.workdir = workdir
        self.db = workdir / "sink.db"
        self.sink_metrics = free_port()
        kafka = {"bootstrap": brokers.kafka_bootstrap}
        (workdir / "sink.toml").write_text(to_toml({
            "instance_id": "demo-sink-1", "kafka": kafka, "log": {"level": "WARNING"},
            "metrics": {"enabled": True, "host": "127.0.0.1", "port": self.sink_metrics}}))
        endpoints = {**metrics, "sink": self.sink_metrics}
        (workdir / "dashboard.toml").write_text(to_toml({
            "web": {"host": "127.0.0.1", "port": 0, "no_login": True},
            "sources": {"sqlite": str(self.db),
                        "metrics": [f"{n}=http://127.0.0.1:{p}/metrics" for n, p in endpoints.items()]},
            "kafka": kafka, "mqtt": {"url": brokers.mosquitto.url}, "log": {"level": "WARNING"}}))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.url: str | None = None

    def _spawn(self, name: str, *args: str, stdout: int | None = None) -> subprocess.Popen[bytes]:
        env = component_env()
        with open(self.workdir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "edgebridge", *args], stdin=subprocess.DEVNULL,
                                    stdout=stdout if stdout is not None else log, stderr=log, env=env)
        self.procs.append(proc)
        return proc

    def start(self, timeout: float = 60.0) -> str:
        """Start both; the dashboard's URL. ``RuntimeError`` when either does not come up in time."""
        config = self.workdir / "sink.toml"
        self._spawn("sink", "sink", "sqlite", "--db", str(self.db), "--config", str(config))
        deadline = time.monotonic() + timeout
        while not self.db.exists():  # the sink creates it before it consumes; the dashboard needs it
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                raise RuntimeError(f"the sink did not start; see {self.workdir / 'sink.log'}")
            time.sleep(0.2)
        dashboard = self._spawn("dashboard", "dashboard", "--config", str(self.workdir / "dashboard.toml"),
                                stdout=subprocess.PIPE)
        assert dashboard.stdout is not None
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(dashboard.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(max(1.0, deadline - time.monotonic()))
        text = line[0].decode() if line else ""
        if not text.startswith("dashboard: "):
            raise RuntimeError(f"the dashboard did not start; see {self.workdir / 'dashboard.log'}")
        self.url = text.split(" ", 1)[1].strip()
        return self.url

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
            if proc.stdout is not None:
                proc.stdout.close()
