"""edgebridge.metrics: /metrics and /healthz on a per-component registry."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import Counter

from edgebridge.config import load_config
from edgebridge.errors import ConfigError
from edgebridge.metrics import LoopProgress, MetricsConfig, MetricsServer, new_registry


def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_serves_its_own_registry() -> None:
    registry = new_registry()
    Counter("edgebridge_test_published", "Events published", registry=registry).inc(3)
    with MetricsServer("127.0.0.1", 0, registry) as server:
        assert server.port > 0
        status, content_type, body = get(f"{server.url}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert "edgebridge_test_published_total 3.0" in body
    assert "process_" in body or "python_info" in body  # process/platform collectors are on it


def test_two_servers_in_one_process_do_not_share_metrics() -> None:
    a, b = new_registry(process_metrics=False), new_registry(process_metrics=False)
    Counter("edgebridge_test_events", "x", registry=a).inc()
    Counter("edgebridge_test_events", "x", registry=b)  # same name: fine on separate registries
    with MetricsServer(registry=a) as sa, MetricsServer(registry=b) as sb:
        assert sa.port != sb.port
        assert "edgebridge_test_events_total 1.0" in get(f"{sa.url}/metrics")[2]
        assert "edgebridge_test_events_total 0.0" in get(f"{sb.url}/metrics")[2]


def test_openmetrics_on_request() -> None:
    with MetricsServer(registry=new_registry(process_metrics=False)) as server:
        status, content_type, body = get(f"{server.url}/metrics", accept="application/openmetrics-text")
    assert status == 200
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")


def test_health_ok_and_unhealthy() -> None:
    state: dict[str, Any] = {"ok": True, "detail": {"outbox_rows": 12}}

    def health() -> tuple[bool, Mapping[str, Any]]:
        return state["ok"], state["detail"]

    with MetricsServer(registry=new_registry(process_metrics=False), health=health) as server:
        status, content_type, body = get(f"{server.url}/healthz")
        assert (status, content_type) == (200, "application/json")
        assert json.loads(body) == {"status": "ok", "detail": {"outbox_rows": 12}}
        state.update(ok=False, detail={"mqtt": "disconnected"})
        status, _, body = get(f"{server.url}/healthz")
        assert status == 503
        assert json.loads(body) == {"status": "unhealthy", "detail": {"mqtt": "disconnected"}}


def test_health_that_raises_is_unhealthy(caplog: pytest.LogCaptureFixture) -> None:
    def health() -> tuple[bool, None]:
        raise RuntimeError("db locked")

    with MetricsServer(registry=new_registry(process_metrics=False), health=health) as server:
        status, _, body = get(f"{server.url}/healthz")
    assert status == 503
    assert json.loads(body)["detail"] == {"error": "RuntimeError: db locked"}
    assert any(r.getMessage() == "health check raised" for r in caplog.records)


def test_default_health_and_unknown_path() -> None:
    with MetricsServer(registry=new_registry(process_metrics=False)) as server:
        assert get(f"{server.url}/healthz")[0] == 200
        assert get(f"{server.url}/nope")[0] == 404


def test_lifecycle() -> None:
    server = MetricsServer(registry=new_registry(process_metrics=False))
    with pytest.raises(RuntimeError):
        _ = server.port
    server.start()
    url = server.url
    with pytest.raises(RuntimeError):
        server.start()
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/metrics", timeout=5)


def test_port_in_use_raises_oserror() -> None:
    with MetricsServer(registry=new_registry(process_metrics=False)) as first:
        second = MetricsServer("127.0.0.1", first.port, new_registry(process_metrics=False))
        with pytest.raises(OSError):
            second.start()


def test_metrics_config_validates_port() -> None:
    assert load_config(MetricsConfig, None, env={"EDGEBRIDGE_PORT": "0"}).port == 0
    with pytest.raises(ConfigError) as info:
        load_config(MetricsConfig, None, env={"EDGEBRIDGE_PORT": "70000"})
    assert info.value.key == "port"


def test_loop_progress_is_unhealthy_until_the_first_turn_and_while_a_turn_lasts_too_long() -> None:
    now = [100.0]
    progress = LoopProgress(2.0, clock=lambda: now[0])
    assert progress.health() == (False, {"loop": "starting", "stall_after_s": 2.0})
    progress.turn()
    now[0] += 2.0
    assert progress.health()[0] is True
    now[0] += 0.5
    ok, detail = progress.health()
    assert (ok, detail["loop"], detail["last_turn_age_s"]) == (False, "stalled", 2.5)
    progress.turn()
    assert progress.health()[0] is True
    with pytest.raises(ValueError):
        LoopProgress(0)


def test_loop_progress_answers_healthz() -> None:
    now = [0.0]
    progress = LoopProgress(1.0, clock=lambda: now[0])
    with MetricsServer(registry=new_registry(process_metrics=False), health=progress.health) as server:
        def status() -> int:
            try:
                return int(urllib.request.urlopen(f"{server.url}/healthz", timeout=5).status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert status() == 503
        progress.turn()
        assert status() == 200
        now[0] = 5.0
        assert status() == 503
