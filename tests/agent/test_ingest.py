"""The local ingest socket end to end: datagrams -> outbox -> MQTT; bad ones counted, never fatal."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig
from edgebridge.config import load_config
from tests.agent.conftest import Subscriber
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers


def test_ingest_socket_to_mqtt(
    tmp_path: Path, mqtt_url: str, mqtt_prefix: str, subscriber: Callable[..., Subscriber]
) -> None:
    sub = subscriber(f"{mqtt_prefix}/dev-in/events")
    config = load_config(
        AgentConfig,
        overrides={
            "device_id": "dev-in",
            "state_dir": str(tmp_path / "s"),
            "mqtt.url": mqtt_url,
            "mqtt.topic_prefix": mqtt_prefix,
            "ingest.enabled": True,
            "metrics.enabled": False,
            "systemd.notify": False,
        },
        env={},
    )
    agent = Agent(config)
    thread = threading.Thread(target=agent.run)
    thread.start()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        assert agent.started.wait(10)
        path = str(config.ingest_path)
        for i in range(20):
            client.sendto(orjson.dumps({"level": {"v": i, "u": "m"}}), path)
        client.sendto(b"not json", path)
        client.sendto(b'{"data": {"x": {"v": [1]}}}', path)  # JSON, not a reading
        client.sendto(orjson.dumps({"data": {"door": {"v": True}}, "time": "2024-05-01T12:00:00Z"}), path)
        wait_for(lambda: len(sub.events()) >= 21, 15, "21 events")
    finally:
        client.close()
        agent.stop()
        thread.join(30)
    events = sub.events()
    assert [e["seq"] for e in events] == list(range(1, 22))
    assert [e["data"]["level"]["v"] for e in events[:20]] == list(range(20))
    assert events[20]["time"] == "2024-05-01T12:00:00Z"
    ingest = agent.threaded[0]
    assert (ingest.stats.read, ingest.stats.bad) == (21, 2)
    assert not config.ingest_path.exists()
