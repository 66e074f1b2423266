"""edgebridge.service, the one way every component runs: exit status 0/1/2, SIGTERM/SIGINT stop the run
(real signals to a real child process), ``/metrics`` and ``/healthz`` served while it runs and released
after, nothing of prometheus_client or ``http.server`` loaded with metrics off."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import Counter

from edgebridge import service
from edgebridge.devbrokers._process import free_port, port_is_free
from edgebridge.errors import ConfigError, EdgeBridgeError, ShutdownRequested
from edgebridge.metrics import MetricsServer, new_registry
from edgebridge.settings import LogSettings, MetricsConfig
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("edgebridge.test.service")


@dataclass(frozen=True)
class Config:
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsConfig = field(default_factory=lambda: MetricsConfig(enabled=False))


def _healthy() -> tuple[bool, dict[str, Any]]:
    return True, {"loop": "turning"}


def _no_registry() -> Any:
    raise AssertionError("the registry is asked for only when metrics are enabled")


def _service(run: Callable[[threading.Event], int | None], **kw: Any) -> service.Service:
    return service.Service(run, health=kw.pop("health", _healthy), registry=kw.pop("registry", _no_registry),
                           **kw)


@pytest.fixture(autouse=True)
def _root_logger() -> Iterator[None]:
    """service.run sets up logging on the root logger: put it back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


# --- exit status -----------------------------------------------------------------------------------------


def test_a_run_that_returns_is_a_clean_stop_0_and_its_own_status_is_kept(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert service.run(Config(), lambda c: _service(lambda stop: None), name="x", log=log) == 0
    assert service.run(Config(), lambda c: _service(lambda stop: 3), name="x", log=log) == 3
    assert capsys.readouterr().err == ""  # a clean run logs nothing of its own


def test_an_exception_out_of_run_is_fatal_1_logged_with_its_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def run(stop: threading.Event) -> None:
        raise RuntimeError("the loop broke")

    assert service.run(Config(), lambda c: _service(run), name="thing", log=log) == 1
    err = capsys.readouterr().err
    assert 'msg="thing failed"' in err and "RuntimeError: the loop broke" in err and "Traceback" in err


def test_an_exception_out_of_build_is_fatal_1(capsys: pytest.CaptureFixture[str]) -> None:
    def build(config: Config) -> service.Service:
        raise EdgeBridgeError("no way")

    assert service.run(Config(), build, name="thing", log=log) == 1
    assert 'msg="thing failed"' in capsys.readouterr().err


def test_an_expected_fatal_error_is_one_line_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    class Fenced(EdgeBridgeError):
        pass

    def run(stop: threading.Event) -> None:
        raise Fenced("producer fenced")

    built = _service(run, fatal={Fenced: "fatal kafka error, exiting for a restart"})
    assert service.run(Config(), lambda c: built, name="thing", log=log) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert 'msg="fatal kafka error, exiting for a restart" error="producer fenced"' in lines[0]


@pytest.mark.parametrize("where", ["build", "run"])
def test_a_config_error_is_2(where: str, capsys: pytest.CaptureFixture[str]) -> None:
    def run(stop: threading.Event) -> None:
        raise ConfigError("topics.raw", "topic 'x' does not exist")

    def build(config: Config) -> service.Service:
        if where == "build":
            run(threading.Event())
        return _service(run)

    assert service.run(Config(), build, name="thing", log=log) == 2
    err = capsys.readouterr().err
    assert 'msg="configuration error"' in err and "topics.raw: topic 'x' does not exist" in err
    assert "Traceback" not in err


def test_a_status_build_returns_is_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    def build(config: Config) -> int:
        print("edgebridge thing: cannot open /x.db", file=sys.stderr)
        return 2

    assert service.run(Config(), build, name="thing", log=log) == 2
    assert capsys.readouterr().err == "edgebridge thing: cannot open /x.db\n"


def test_shutdown_requested_is_a_clean_stop_only_after_a_stop_signal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def interrupted(stop: threading.Event) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # the handler sets stop; a wait then gives up
        assert stop.wait(5)
        raise ShutdownRequested("stopping")

    def unasked(stop: threading.Event) -> None:
        raise ShutdownRequested("nobody asked")

    assert service.run(Config(), lambda c: _service(interrupted), name="thing", log=log) == 0
    assert capsys.readouterr().err == ""
    assert service.run(Config(), lambda c: _service(unasked), name="thing", log=log) == 1
    assert 'msg="thing failed"' in capsys.readouterr().err


def test_the_signal_handlers_are_restored_whatever_happened() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    def broken(stop: threading.Event) -> None:
        assert signal.getsignal(signal.SIGTERM) not in before  # ours while running
        raise RuntimeError("broken")

    assert service.run(Config(), lambda c: _service(broken), name="thing", log=log) == 1
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


# --- metrics and health ----------------------------------------------------------------------------------


def _metrics_on(port: int) -> Config:
    return Config(metrics=MetricsConfig(enabled=True, host="127.0.0.1", port=port))


def test_metrics_and_healthz_are_served_while_running_and_released_after() -> None:
    port = free_port()
    registry = new_registry()
    Counter("edgebridge_test_turns", "Turns", registry=registry).inc(7)
    healthy = [False]
    seen: dict[str, tuple[int, str]] = {}

    def run(stop: threading.Event) -> None:
        url = f"http://127.0.0.1:{port}"
        seen["metrics"] = _get(f"{url}/metrics")
        seen["unhealthy"] = _get(f"{url}/healthz")
        healthy[0] = True
        seen["healthy"] = _get(f"{url}/healthz")

    built = _service(run, health=lambda: (healthy[0], {"loop": "turning" if healthy[0] else "stalled"}),
                     registry=lambda: registry)
    assert service.run(_metrics_on(port), lambda c: built, name="thing", log=log) == 0
    assert seen["metrics"][0] == 200 and "edgebridge_test_turns_total 7.0" in seen["metrics"][1]
    assert seen["unhealthy"][0] == 503 and '"stalled"' in seen["unhealthy"][1]
    assert seen["healthy"][0] == 200 and '"turning"' in seen["healthy"][1]
    assert port_is_free(port)  # the server stopped with the run
    assert not [t for t in threading.enumerate() if t.name.startswith("metrics-http")]


def test_the_metrics_server_stops_after_a_failed_run_too() -> None:
    port = free_port()

    def run(stop: threading.Event) -> None:
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        raise RuntimeError("broken")

    built = _service(run, registry=new_registry)
    assert service.run(_metrics_on(port), lambda c: built, name="thing", log=log) == 1
    assert port_is_free(port)


def test_a_metrics_port_in_use_is_fatal_1_before_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[bool] = []
    with MetricsServer("127.0.0.1", 0) as taken:
        port = taken.port
        built = _service(lambda stop: ran.append(True), registry=new_registry)
        assert service.run(_metrics_on(port), lambda c: built, name="thing", log=log) == 1
    assert ran == []
    err = capsys.readouterr().err
    assert 'msg="cannot serve metrics"' in err and f"port={port}" in err


def test_serve_metrics_with_metrics_off_asks_for_nothing() -> None:
    assert service.serve_metrics(MetricsConfig(enabled=False), _no_registry, _healthy) is None


# --- a real child process: real signals, and what it imports ------------------------------------------------

CHILD = textwrap.dedent("""
    import logging, os, sys, threading, time
    from dataclasses import dataclass, field
    from edgebridge import service
    from edgebridge.settings import LogSettings, MetricsConfig

    mode, port = sys.argv[1], int(sys.argv[2])

    @dataclass(frozen=True)
    class Config:
        log: LogSettings = field(default_factory=LogSettings)
        metrics: MetricsConfig = field(default_factory=lambda: MetricsConfig(enabled=port > 0, port=port))

    turns = [0]

    def registry():
        from prometheus_client import Counter
        from edgebridge.metrics import MetricsServer, new_registry
        r = new_registry()
        Counter("child_turns", "Turns of the child's loop", registry=r).inc(3)
        return r

    def build(config):
        print("building", flush=True)
        if mode == "slow-build":  # the parent signals now, then lets the build end: the shell keeps it
            deadline = time.monotonic() + 30
            while not os.path.exists(sys.argv[3]) and time.monotonic() < deadline:
                time.sleep(0.01)

        def run(stop):
            print("running", flush=True)
            while not stop.wait(0.05):
                turns[0] += 1
            print("run returned", flush=True)

        def own_stop():
            os.write(1, b"own stop\\n")  # signal handler: no buffered print

        return service.Service(run, health=lambda: (turns[0] > 0, {"turns": turns[0]}), registry=registry,
                               stop=own_stop)

    status = service.run(Config(), build, name="child", log=logging.getLogger("child"))
    heavy = [m for m in ("prometheus_client", "http.server") if m in sys.modules]
    print("loaded:", ",".join(heavy) or "-", flush=True)
    sys.exit(status)
""")


class Child:
    def __init__(self, mode: str, port: int = 0, go: Path | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(port), str(go)],
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
        self.lines: list[str] = []

    def wait_line(self, want: str) -> None:
        assert self.proc.stdout is not None
        while (line := self.proc.stdout.readline()) != "":
            self.lines.append(line.rstrip("\n"))
            if self.lines[-1] == want:
                return
        raise AssertionError(f"{want!r} never printed: {self.lines}, {self.proc.stderr.read()}")  # type: ignore[union-attr]

    def finish(self) -> tuple[int, list[str], str]:
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, self.lines + out.splitlines(), err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def child() -> Iterator[Callable[..., Child]]:
    started: list[Child] = []

    def start(mode: str, port: int = 0, go: Path | None = None) -> Child:
        started.append(Child(mode, port, go))
        return started[-1]

    yield start
    for c in started:
        c.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_ends_the_run_with_0(sig: signal.Signals, child: Callable[..., Child]) -> None:
    c = child("plain")
    c.wait_line("running")
    c.proc.send_signal(sig)
    status, lines, err = c.finish()
    assert status == 0, err
    assert lines == ["building", "running", "own stop", "run returned", "loaded: -"]
    assert "Traceback" not in err


def test_a_signal_during_the_build_is_kept_for_the_run(child: Callable[..., Child], tmp_path: Path) -> None:
    go = tmp_path / "go"
    c = child("slow-build", go=go)
    c.wait_line("building")
    c.proc.send_signal(signal.SIGTERM)
    go.touch()  # the build ends only now, the signal already taken
    status, lines, err = c.finish()
    assert status == 0, err
    # the component's own stop is called once it exists; its run then returns at once
    assert lines == ["building", "own stop", "running", "run returned", "loaded: -"]


def test_a_child_with_metrics_serves_them_until_sigterm(child: Callable[..., Child]) -> None:
    port = free_port()
    c = child("plain", port)
    c.wait_line("running")
    wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 10, "healthy once the loop turns")
    status, body = _get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200 and "child_turns_total 3.0" in body
    c.proc.send_signal(signal.SIGTERM)
    status, lines, err = c.finish()
    assert status == 0, err
    assert lines[-1] == "loaded: prometheus_client,http.server"
    assert 'msg="metrics server listening"' in err
