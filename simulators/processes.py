"""edgebridge components as child processes: what the demo, the chaos suite and the tests drive.

A :class:`ComponentProcess` writes its TOML config from a plain nested dict, runs
``python -m edgebridge <component> run --config FILE`` with a log file of its own, and offers the
operations fault injection needs: ``terminate`` (SIGTERM, graceful), ``kill`` (SIGKILL), ``restart``,
plus ``metrics()`` scraped from the component's Prometheus endpoint and ``rss_mb()`` read from /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgebridge.devbrokers._process import free_port

__all__ = ["ComponentProcess", "component_env", "stop_process", "to_toml"]


def component_env() -> dict[str, str]:
    """Our environment without ``EDGEBRIDGE_*``: a component's config file is the whole truth, the
    caller's variables must not leak into it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}


def stop_process(proc: subprocess.Popen[Any], timeout: float = 30.0) -> int:
    """SIGTERM and wait; SIGKILL if it does not stop in ``timeout``. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def to_toml(config: Mapping[str, Any], _path: tuple[str, ...] = ()) -> str:
    """A nested dict as TOML: scalars first, then one table per nested dict."""
    scalars = [f'"{k}" = {_toml_value(v)}' if "." in k else f"{k} = {_toml_value(v)}"
               for k, v in config.items() if not isinstance(v, Mapping)]
    out = []
    if _path and scalars:
        out.append("[" + ".".join(_path) + "]")
    out += scalars
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.append(to_toml(value, (*_path, key)))
    return "\n".join(out) + "\n"


class ComponentProcess:
    """One `edgebridge <component> run` child process with its config, log and metrics port."""

    def __init__(self, component: str, name: str, config: Mapping[str, Any], workdir: Path,
                 *, metrics: bool = True) -> None:
        self.component = component
        self.name = name
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.metrics_port = free_port() if metrics else 0
        full = dict(config)
        full["metrics"] = {"enabled": metrics, "host": "127.0.0.1", "port": self.metrics_port}
        self.config_path = workdir / f"{name}.toml"
        self.config_path.write_text(to_toml(full))
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> ComponentProcess:
        env = component_env()
        cmd = [sys.executable, "-m", "edgebridge", self.component, "run", "--config", str(self.config_path)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        self.starts += 1
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Returns the exit code."""
        if self.proc is None:
            return None
        return stop_process(self.proc, timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> ComponentProcess:
        self.terminate()
        return self.start()

    def healthy(self) -> bool:
        if not self.metrics_port or not self.running:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def wait_healthy(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return True
            if not self.running:
                return False
            time.sleep(0.1)
        return False

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics as ``name{labels}`` -> value; empty when unreachable."""
        if not self.metrics_port:
            return {}
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                try:
                    out[key] = float(value)
                except ValueError:
                    continue
        return out

    def metric(self, name: str) -> float:
        """The sum of all samples of ``name`` (over its labels)."""
        return sum(v for k, v in self.metrics().items() if k == name or k.startswith(name + "{"))

    def rss_mb(self) -> float:
        """The resident memory of the running process in MiB (Linux ``/proc``)."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"{self.name}: no VmRSS in /proc/{self.proc.pid}/status")
