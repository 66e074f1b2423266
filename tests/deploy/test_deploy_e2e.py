"""The real agent and the real bridge, configured by nothing but the files `edgebridge deploy init`
wrote, over TLS through the shipped Mosquitto: events reach Kafka, receipts come back to the device, a
command goes down and its reply comes up. (The session's Kafka is plaintext: its security is the Kafka
part's.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from bridge.config import BridgeConfig
from edge_agent.config import AgentConfig
from edgebridge.config import load_config
from edgebridge.devbrokers._process import free_port
from tests.agent.conftest import agent_running
from tests.bridge.helpers import BridgeThread, read_topic
from tests.conftest import BrokerAddresses
from tests.deploy.conftest import deploy, env_file
from tests.deploy.secured_broker import ShippedMosquitto
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers


def test_agent_and_bridge_with_deploy_inits_files_reach_kafka_over_tls(
        tmp_path: Path, brokers: BrokerAddresses, kafka_topic: Callable[..., str],
        consumer_group: Callable[[], str], monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    out = tmp_path / "deployment"
    url = f"mqtts://127.0.0.1:{port}"
    # the paths are where this machine keeps the files: a container would see DIR/bridge elsewhere
    assert deploy("init", "--out", str(out), "--devices", "pump-1,pump-2", "--device-url", url,
                  "--bridge-url", url, "--cloud-ca-file", str(out / "ca.crt"),
                  "--device-ca-file", str(out / "devices" / "pump-1" / "ca.crt")) == 0
    raw, commands, responses = kafka_topic("raw"), kafka_topic("cmd"), kafka_topic("resp")
    # the bridge: env/bridge.env as compose passes it, plus the Kafka settings (the Kafka part's job)
    env = {**env_file(out / "env" / "bridge.env"), "EDGEBRIDGE_KAFKA_BOOTSTRAP": brokers.kafka_bootstrap}
    bridge_config = load_config(BridgeConfig, env=env, overrides={
        "topics.raw": raw, "topics.commands": commands, "topics.command_responses": responses,
        "topics.status": kafka_topic("status"), "topics.deadletter": kafka_topic("dlq"),
        "downlink.group_id": consumer_group(), "metrics.enabled": False, "uplink.receipt_interval": 0.05})
    device = out / "devices" / "pump-1"
    agent_overrides: dict[str, Any] = {
        "state_dir": str(tmp_path / "agent"), "metrics.enabled": False, "systemd.notify": False,
        "simulated.enabled": True, "simulated.interval": 0.01, "simulated.limit": 40,
        "forwarder.reconnect_initial": 0.05, "forwarder.reconnect_max": 0.5}
    # the device's unit hands mqtt-password over as the systemd credential of that name
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(device))
    agent_config = load_config(AgentConfig, device / "agent.toml", env={}, overrides=agent_overrides)
    broker = ShippedMosquitto(tmp_path / "mosquitto", out / "mosquitto")
    broker.port = port
    broker.start()
    bridge = BridgeThread(bridge_config)
    try:
        bridge.start()  # healthy: both its MQTT connections logged in as their users
        with agent_running(agent_config) as agent:
            records = read_topic(brokers.kafka_bootstrap, raw, 40, timeout=60)
            assert sorted(orjson.loads(r.value)["seq"] for r in records) == list(range(1, 41))
            assert {r.key for r in records} == {b"pump-1"}
            # the uplink's user wrote the receipts and the device read them: its outbox is empty
            wait_for(lambda: agent.outbox.stats.committed >= 40 and agent.outbox.stats.rows == 0, 30,
                     "the receipts of all 40 events")
            assert agent.link.stats.connects == 1
            producer = Producer({"bootstrap.servers": brokers.kafka_bootstrap})
            producer.produce(commands, orjson.dumps({"id": "c-1", "command": "ping"}), b"pump-1")
            assert producer.flush(30) == 0
            (reply,) = read_topic(brokers.kafka_bootstrap, responses, 1, timeout=60)
            assert orjson.loads(reply.value)["id"] == "c-1" and orjson.loads(reply.value)["ok"]
    finally:
        bridge.close()
        broker.stop()


def test_two_bridge_replicas_share_the_devices_each_as_its_own_users(
        tmp_path: Path, brokers: BrokerAddresses, kafka_topic: Callable[..., str],
        consumer_group: Callable[[], str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`--bridges 2`: env/bridge.env and env/bridge-2.env run two bridges at once (four MQTT users,
    none taking another's session), splitting the devices' messages through the shared subscription;
    Kafka gets every event of both devices and both outboxes are emptied by receipts."""
    port = free_port()
    out = tmp_path / "deployment"
    url = f"mqtts://127.0.0.1:{port}"
    assert deploy("init", "--out", str(out), "--devices", "pump-1,pump-2", "--device-url", url,
                  "--bridge-url", url, "--cloud-ca-file", str(out / "ca.crt"), "--bridges", "2",
                  "--device-ca-file", str(out / "ca.crt")) == 0
    raw, group = kafka_topic("raw", partitions=2), consumer_group()
    topics = {"topics.raw": raw, "topics.commands": kafka_topic("cmd"),
              "topics.command_responses": kafka_topic("resp"), "topics.status": kafka_topic("status"),
              "topics.deadletter": kafka_topic("dlq"), "downlink.group_id": group}
    bridges = []
    for name in ("bridge.env", "bridge-2.env"):
        env = {**env_file(out / "env" / name), "EDGEBRIDGE_KAFKA_BOOTSTRAP": brokers.kafka_bootstrap}
        bridges.append(BridgeThread(load_config(BridgeConfig, env=env, overrides={
            **topics, "metrics.enabled": False, "uplink.receipt_interval": 0.05})))
    assert {b.bridge.config.uplink.share_group for b in bridges} == {"bridges"}
    broker = ShippedMosquitto(tmp_path / "mosquitto", out / "mosquitto")
    broker.port = port
    broker.start()
    started: list[BridgeThread] = []
    try:
        for bridge in bridges:
            bridge.start()
            started.append(bridge)
        agents = []
        for device in ("pump-1", "pump-2"):
            folder = out / "devices" / device
            monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(folder))
            agents.append(load_config(AgentConfig, folder / "agent.toml", env={}, overrides={
                "state_dir": str(tmp_path / device), "metrics.enabled": False, "systemd.notify": False,
                "simulated.enabled": True, "simulated.interval": 0.01, "simulated.limit": 60,
                "forwarder.reconnect_initial": 0.05, "forwarder.reconnect_max": 0.5}))
        with agent_running(agents[0]) as one, agent_running(agents[1]) as two:
            records = read_topic(brokers.kafka_bootstrap, raw, 120, timeout=90)
            seqs: dict[bytes | None, set[int]] = {}
            for r in records:
                seqs.setdefault(r.key, set()).add(orjson.loads(r.value)["seq"])
            assert seqs == {b"pump-1": set(range(1, 61)), b"pump-2": set(range(1, 61))}
            for agent in (one, two):
                wait_for(lambda a=agent: a.outbox.stats.committed >= 60 and a.outbox.stats.rows == 0, 30,
                         "the receipts of all 60 events")
                assert agent.link.stats.connects == 1
        # both replicas took part, and none lost its uplink connection to the other's login
        received = [b.metric("edgebridge_bridge_received_messages_total") for b in bridges]
        assert all(n > 0 for n in received) and sum(received) >= 120, received
        for bridge in bridges:
            assert bridge.metric("edgebridge_bridge_mqtt_reconnects_total", {"client": "uplink"}) == 0
    finally:
        for bridge in started:
            bridge.close()
        broker.stop()
