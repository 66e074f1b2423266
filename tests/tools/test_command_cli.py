"""``edgebridge command DEVICE NAME --wait`` through the real bridge to a real agent and back.

The answer is printed; a device that does not answer gives the timeout exit code; a command whose
expiry passed while the device was offline is not run when it comes back, while one still valid is.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from simulators.audit import read_records
from simulators.processes import ComponentProcess
from tests.conftest import BrokerAddresses
from tests.tools.conftest import Tools
from tests.waiting import wait_for

pytestmark = [pytest.mark.brokers, pytest.mark.timeout(600)]

DEVICE = "dev-cmd"


def _bridge(tools: Tools, brokers: BrokerAddresses, prefix: str, workdir: Path) -> ComponentProcess:
    t = tools.topics
    config = {
        "mqtt": {"url": brokers.mqtt_url, "topic_prefix": prefix},
        "kafka": {"bootstrap": tools.bootstrap},
        "log": {"level": "INFO"},
        "uplink": {"client_id": f"{prefix}-up", "receipt_interval": 0.2},
        "downlink": {"enabled": True, "client_id": f"{prefix}-down", "group_id": f"{prefix}-down"},
        "topics": {"raw": t.raw, "status": t.status, "command_responses": t.command_responses,
                   "deadletter": t.deadletter, "commands": t.commands},
    }
    proc = ComponentProcess("bridge", "bridge", config, workdir).start()
    assert proc.wait_healthy(60), f"bridge not healthy; see {proc.log_path}"
    return proc


def _agent(brokers: BrokerAddresses, prefix: str, workdir: Path) -> ComponentProcess:
    config = {
        "device_id": DEVICE, "state_dir": str(workdir / DEVICE),
        "mqtt": {"url": brokers.mqtt_url, "topic_prefix": prefix},
        "log": {"level": "INFO"},
        "simulated": {"enabled": True, "interval": 1.0, "limit": 3, "seed": 7},
        "systemd": {"notify": False},
        "forwarder": {"reconnect_initial": 0.1, "reconnect_max": 1.0},
    }
    return ComponentProcess("agent", DEVICE, config, workdir)


def _connected(agent: ComponentProcess) -> bool:
    """The agent's MQTT session is up (its /healthz detail), so its subscription to commands exists."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}/healthz", timeout=1) as r:
            return bool(json.loads(r.read())["detail"]["connected"])
    except (OSError, ValueError, KeyError):
        return False


def _sent_id(stderr: str) -> str:
    found = re.search(r"\(id (cli-[0-9a-f]+),", stderr)
    assert found, stderr
    return found.group(1)


def _responses(tools: Tools) -> dict[bytes, list[dict[str, Any]]]:
    """Every reply in iot.commands.responses by correlation data, read by a consumer of our own."""
    out: dict[bytes, list[dict[str, Any]]] = {}
    for r in read_records(tools.bootstrap, tools.topics.command_responses, idle=1.0):
        corr = dict(r.headers).get("correlation_data") or b""
        out.setdefault(corr, []).append(json.loads(r.value or b"{}"))
    return out


def test_command_waits_for_the_answer_times_out_and_never_runs_a_stale_command(
    tools: Tools, brokers: BrokerAddresses, mqtt_prefix: str, tmp_path: Path,
) -> None:
    bridge = _bridge(tools, brokers, mqtt_prefix, tmp_path)
    agent = _agent(brokers, mqtt_prefix, tmp_path).start()
    try:
        wait_for(lambda: _connected(agent), 60, "the agent connected")
        ping = tools.run("command", DEVICE, "ping", "--wait", "--timeout", "60")
        assert ping.returncode == 0, ping.stderr
        assert json.loads(ping.stdout)["pong"] is True

        interval = tools.run("command", DEVICE, "set-interval", "seconds=2", "--wait", "--timeout", "30",
                             "--json")
        assert interval.returncode == 0, interval.stderr
        answer = json.loads(interval.stdout)
        assert answer["ok"] is True and answer["result"]["interval"] == 2.0
        assert answer["id"] == _sent_id(interval.stderr)

        unknown = tools.run("command", DEVICE, "self-destruct", "--wait", "--timeout", "30")
        assert unknown.returncode == 1
        assert f"{DEVICE} refused self-destruct: unknown command 'self-destruct'" in unknown.stderr

        # the device goes offline (a clean stop: its session stays in the broker, which queues for it)
        assert agent.terminate() == 0
        assert not agent.running and not _connected(agent)
        published = bridge.metric("edgebridge_bridge_commands_published_total")
        stale = tools.run("command", DEVICE, "set-interval", "seconds=9", "--wait", "--timeout", "3",
                          "--expires", "5")
        assert stale.returncode == 3, stale.stderr
        assert f"no answer from {DEVICE} within 3 s" in stale.stderr
        stale_id = _sent_id(stale.stderr)
        valid = tools.run("command", DEVICE, "status", "--expires", "600")  # no --wait: sent, id printed
        assert valid.returncode == 0, valid.stderr
        valid_id = valid.stdout.strip()
        # both reached the broker for the offline device: PUBACKed to the bridge's downlink
        wait_for(lambda: bridge.metric("edgebridge_bridge_commands_published_total") == published + 2, 30,
                 "both commands published to the broker")
        time.sleep(6)  # past the stale one's expiry, with a second to spare

        agent.start()  # the device comes back
        wait_for(lambda: _connected(agent), 60, "the agent reconnected")
        back = tools.run("command", DEVICE, "ping", "--wait", "--timeout", "60")
        assert back.returncode == 0, back.stderr
        wait_for(lambda: valid_id.encode() in _responses(tools), 30, "the still valid command answered")
        replies = _responses(tools)
        assert replies[valid_id.encode()][0]["ok"] is True  # queued for the offline device, run on return
        # the stale one expired in the broker (the MQTT 5 Message Expiry the bridge set): never delivered,
        # so never run; the agent answers every command it is handed, even one it refuses as expired
        assert stale_id.encode() not in replies, replies[stale_id.encode()]
        status = tools.run("command", DEVICE, "status", "--wait", "--timeout", "30")
        assert status.returncode == 0, status.stderr
    finally:
        agent.terminate()
        bridge.terminate()
