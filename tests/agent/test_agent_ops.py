"""Operating the agent against the real Mosquitto: ``/metrics`` exposes every count with exact numbers,
``/healthz`` follows the loop heartbeat, ``edgebridge agent status`` reads a real outbox."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.cli import serve_metrics
from edge_agent.config import OutboxConfig
from edge_agent.outbox import Outbox, read_status
from edgebridge.devbrokers import LocalBrokers
from edgebridge.envelope import new_reading
from tests.agent.conftest import Subscriber, agent_config, agent_running
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = _get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_metrics_expose_every_count(
    tmp_path: Path, mqtt_prefix: str, private_brokers: Callable[..., LocalBrokers],
    subscriber: Callable[..., Subscriber],
) -> None:
    local = private_brokers("mosquitto")
    mosquitto = local.mosquitto
    # the receipting reader's session is made first, so the broker queues for it across its restarts
    subscriber(f"{mqtt_prefix}/dev-metrics/events", url=mosquitto.url, persistent=True)
    mosquitto.stop()  # the agent starts while the broker is away: a backlog past the bound
    config = agent_config(
        tmp_path / "state",
        mosquitto.url,
        mqtt_prefix,
        "dev-metrics",
        **{
            "simulated.enabled": True,
            "simulated.interval": 0.0,
            "simulated.limit": 100,
            "ingest.enabled": True,
            "outbox.max_rows": 40,
            "outbox.min_free_bytes": 0,
            "metrics.enabled": True,
            "metrics.port": 0,
        },
    )
    with agent_running(config) as agent:
        server = serve_metrics(agent)
        assert server is not None
        try:
            # 100 readings in one group commit into a bound of 40 rows: the 61 oldest are evicted and
            # one gap event (seq 101) announces 1..61; 39 readings + the gap stay.
            wait_for(lambda: agent.outbox.stats.committed == 101, 15, "101 events committed")
            ingest = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                for bad in (b"not json", b"[]", b'{"data": {"x": {"v": [1]}}}'):
                    ingest.sendto(bad, str(config.ingest_path))
            finally:
                ingest.close()
            wait_for(lambda: agent.threaded[0].stats.bad == 3, 10, "3 bad datagrams counted")
            mosquitto.start()
            wait_for(lambda: agent.outbox.stats.rows == 0, 30, "the backlog drained")
            mosquitto.stop()  # nothing in flight now: one reconnect, no resend
            wait_for(lambda: agent.link.current is None, 15, "disconnected")
            mosquitto.start()
            wait_for(lambda: agent.link.stats.connects == 2, 30, "reconnected")
            got = _scrape(server.port)
        finally:
            server.stop()
        o = agent.outbox.stats
    p = "edgebridge_agent_"
    expected = {
        (p + "events_read_total", (("source", "simulated"),)): 100,
        (p + "events_read_total", (("source", "ingest"),)): 0,
        (p + "bad_input_total", (("source", "simulated"),)): 0,
        (p + "bad_input_total", (("source", "ingest"),)): 3,
        (p + "events_committed_total", ()): 101,
        (p + "events_evicted_total", ()): 61,
        (p + "gap_events_total", ()): 1,
        (p + "events_published_total", ()): 40,
        (p + "messages_published_total", ()): 40,
        (p + "events_acknowledged_total", ()): 40,
        (p + "events_deleted_total", ()): 40,
        (p + "events_receipted_total", ()): 40,
        (p + "receipts_ignored_total", ()): 0,
        (p + "events_resent_total", ()): 0,
        (p + "unreceipted_events", ()): 0,
        (p + "backlog_events", ()): 0,
        (p + "backlog_bytes", ()): 0,
        (p + "reconnects_total", ()): 1,
        (p + "resends_total", ()): 0,
        (p + "last_seq", ()): 101,
        (p + "last_ack_seq", ()): 101,
        (p + "outbox_payload_bytes_total", ()): o.payload_bytes,
    }
    assert {k: got.get(k) for k in expected} == expected
    assert got[(p + "connect_failures_total", ())] >= 1  # the attempts while the broker was away
    assert got[(p + "connected", ())] == 1
    assert got[(p + "disk_write_bytes_total", ())] >= 0  # bytes this process sent to the block layer
    assert o.payload_bytes > 101 * 200


def test_healthz_follows_the_loop_heartbeat(tmp_path: Path, mqtt_url: str, mqtt_prefix: str) -> None:
    config = agent_config(
        tmp_path / "state",
        mqtt_url,
        mqtt_prefix,
        "dev-health",
        **{
            "simulated.enabled": True,
            "simulated.interval": 0.05,
            "metrics.enabled": True,
            "metrics.port": 0,
            "systemd.stall_after": 1.0,
        },
    )
    with agent_running(config) as agent:
        server = serve_metrics(agent)
        assert server is not None
        url = f"http://127.0.0.1:{server.port}/healthz"
        entered, release = threading.Event(), threading.Event()
        real_pump = agent.forwarder.pump
        try:
            wait_for(lambda: agent.link.current is not None, 30, "connected")
            wait_for(lambda: _get(url)[0] == 200, 10, "healthy")

            def stuck_pump(outbox: Any) -> int:
                entered.set()
                release.wait(30)
                return real_pump(outbox)

            agent.forwarder.pump = stuck_pump
            assert entered.wait(5)
            replies: list[tuple[int, bytes]] = []

            def unhealthy() -> bool:
                replies.append(_get(url))
                return replies[-1][0] == 503

            wait_for(unhealthy, 10, "unhealthy while stuck")
            detail = json.loads(replies[-1][1])
            assert detail["status"] == "unhealthy" and detail["detail"]["stalled"] == ["drain-loop"]
            agent.forwarder.pump = real_pump
            release.set()
            wait_for(lambda: _get(url)[0] == 200, 10, "healthy again")
        finally:
            agent.forwarder.pump = real_pump
            release.set()
            server.stop()


def test_status_cli_reads_a_real_outbox(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Outbox(state / "outbox.db", "dev-st", OutboxConfig(max_rows=10, min_free_bytes=0)) as box:
        # 12 readings into 10 rows: 1..3 evicted, gap 13 announces them; then 4..6 acknowledged
        box.commit([new_reading("dev-st", 1, {"n": {"v": i}}) for i in range(12)])
        box.commit(acked=[(4, 6)])
    config = tmp_path / "agent.toml"
    config.write_text(f'device_id = "dev-st"\nstate_dir = "{state}"\n')

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edgebridge", "agent", "status", "--config", str(config), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    as_json = cli("--json")
    assert as_json.returncode == 0, as_json.stderr
    status = json.loads(as_json.stdout)
    assert {k: status[k] for k in ("backlog_rows", "oldest_seq", "last_seq", "evicted", "last_ack_seq")} == {
        "backlog_rows": 7,
        "oldest_seq": 7,
        "last_seq": {"dev-st": 13},
        "evicted": 3,
        "last_ack_seq": 6,
    }
    assert status["backlog_bytes"] == read_status(state / "outbox.db")["backlog_bytes"]
    assert status["backlog_bytes"] > 0
    assert status["oldest_age_s"] >= 0 and status["last_ack_age_s"] >= 0
    text = cli()
    assert text.returncode == 0, text.stderr
    lines = dict(line.split(": ", 1) for line in text.stdout.splitlines())
    assert lines["backlog_rows"] == "7" and lines["evicted"] == "3" and lines["last_ack_seq"] == "6"
    (state / "outbox.db").rename(state / "elsewhere.db")
    missing = cli()
    assert missing.returncode == 3 and "no outbox" in missing.stderr
