"""Commands round-trip with correlation data; READY/WATCHDOG/STATUS to a test NOTIFY_SOCKET, and the
watchdog pings stop while the drain loop is stuck. The agent runs in-process here."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig
from edge_agent.sdnotify import Notifier
from edgebridge.config import load_config
from tests.agent.conftest import Subscriber
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.05)
    yield sock, path
    sock.close()


def _drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            return out


@pytest.fixture
def running_agent(
    tmp_path: Path, mqtt_url: str, mqtt_prefix: str, notify_socket: tuple[socket.socket, str]
) -> Iterator[Agent]:
    config = load_config(
        AgentConfig,
        overrides={
            "device_id": "dev-ctl",
            "state_dir": str(tmp_path / "state"),
            "mqtt.url": mqtt_url,
            "mqtt.topic_prefix": mqtt_prefix,
            "simulated.enabled": True,
            "simulated.interval": 0.01,
            "metrics.enabled": False,
        },
        env={},
    )
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket[1], "WATCHDOG_USEC": "400000"})
    agent = Agent(config, notifier=notifier)
    thread = threading.Thread(target=agent.run, name="agent-under-test")
    thread.start()
    assert agent.started.wait(10)
    wait_for(lambda: agent.link.current is not None, 10, "agent connected")
    yield agent
    agent.stop()
    thread.join(30)
    assert not thread.is_alive()


def test_ready_watchdog_and_stuck_drain_loop(
    running_agent: Agent, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, _ = notify_socket
    seen: list[str] = []
    wait_for(lambda: seen.extend(_drain(sock)) or any("WATCHDOG=1" in m for m in seen), 10, "WATCHDOG=1")
    assert any(m.startswith("READY=1") for m in seen)
    wait_for(
        lambda: seen.extend(_drain(sock)) or any(m.startswith("STATUS=backlog") for m in seen), 10, "STATUS"
    )
    # The drain loop gets stuck inside the forwarder: the pings must stop.
    entered, release = threading.Event(), threading.Event()
    real_pump = running_agent.forwarder.pump

    def stuck_pump(outbox: object) -> int:
        entered.set()
        release.wait(30)
        return real_pump(outbox)  # type: ignore[arg-type]

    running_agent.forwarder.pump = stuck_pump  # type: ignore[method-assign]
    assert entered.wait(5)
    _drain(sock)  # what was sent before it got stuck
    deadline = time.monotonic() + 1.0  # 10 watchdog intervals of 0.1 s
    while time.monotonic() < deadline:
        assert not [m for m in _drain(sock) if "WATCHDOG=1" in m], "a stuck drain loop still pinged"
    running_agent.forwarder.pump = real_pump  # type: ignore[method-assign]
    release.set()
    after: list[str] = []
    wait_for(lambda: after.extend(_drain(sock)) or any("WATCHDOG=1" in m for m in after), 5, "pings resumed")


def _command_client(mqtt_url: str) -> mqtt.Client:
    u = urlparse(mqtt_url)
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"ops-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )
    client.connect(u.hostname or "127.0.0.1", u.port or 1883)
    client.loop_start()
    return client


def test_commands_round_trip_with_correlation_and_dedup(
    running_agent: Agent, mqtt_url: str, mqtt_prefix: str, subscriber: Callable[..., Subscriber]
) -> None:
    reply_topic = f"{mqtt_prefix}/ops/replies"
    replies = subscriber(reply_topic)
    status = subscriber(f"{mqtt_prefix}/dev-ctl/status")
    client = _command_client(mqtt_url)
    topic = f"{mqtt_prefix}/dev-ctl/commands"
    requests = [
        (b"c1", {"id": "1", "command": "ping"}),
        (b"c2", {"id": "2", "command": "status"}),
        (b"c3", {"id": "3", "command": "set-interval", "args": {"seconds": 0.5}}),
        (b"c4", {"id": "3", "command": "set-interval", "args": {"seconds": 0.5}}),  # a repeat
        (b"c5", {"id": "5", "command": "flush"}),
        (b"c6", {"id": "6", "command": "self-destruct"}),
        (b"c7", {"id": "7", "command": "set-interval", "args": {"seconds": "soon"}}),
    ]
    try:
        for corr, body in [*requests, (b"c8", None)]:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = reply_topic
            props.CorrelationData = corr
            payload = orjson.dumps(body) if body is not None else b"{oops"
            client.publish(topic, payload, qos=1, properties=props).wait_for_publish(5)
        wait_for(lambda: len(replies.snapshot()) >= 8, 15, "8 replies")
    finally:
        client.disconnect()
        client.loop_stop()
    got = {bytes(m.properties.CorrelationData): orjson.loads(m.payload) for m in replies.snapshot()}
    assert got[b"c1"]["ok"] and got[b"c1"]["result"]["pong"] is True
    assert got[b"c2"]["ok"] and {"backlog_rows", "oldest_age_s", "last_ack_seq", "version"} <= set(
        got[b"c2"]["result"]
    )
    assert got[b"c3"] == got[b"c4"] and got[b"c3"]["result"]["interval"] == 0.5
    assert got[b"c5"]["ok"] and got[b"c5"]["result"]["committed_seq"] >= 1
    assert got[b"c6"]["ok"] is False and "unknown command" in got[b"c6"]["error"]
    assert got[b"c7"]["ok"] is False
    assert got[b"c8"]["ok"] is False and "malformed" in got[b"c8"]["error"]
    assert running_agent.commands.executed == 4  # ping, status, set-interval once, flush
    assert running_agent.commands.duplicates == 1
    assert running_agent.polled[0].interval == 0.5  # type: ignore[attr-defined]
    # the retained online status, with the version
    wait_for(lambda: bool(status.snapshot()), 5, "retained status")
    online = orjson.loads(status.snapshot()[0].payload)
    assert online["status"] == "online" and online["version"] and status.snapshot()[0].retain


def test_a_command_past_its_expires_is_not_run(
    running_agent: Agent, mqtt_url: str, mqtt_prefix: str, subscriber: Callable[..., Subscriber]
) -> None:
    """The device's own check of ``expires``, for what the broker's Message Expiry cannot catch: the
    command is published without an MQTT expiry, so only the agent stands between it and a stale run."""
    reply_topic = f"{mqtt_prefix}/ops/replies"
    replies = subscriber(reply_topic)
    client = _command_client(mqtt_url)
    before = running_agent.polled[0].interval  # type: ignore[attr-defined]
    past = "2020-01-01T00:00:00.000Z"
    future = "2999-01-01T00:00:00.000Z"
    try:
        for corr, body in [(b"stale", {"id": "s1", "command": "set-interval", "args": {"seconds": 7},
                                       "expires": past}),
                           (b"fresh", {"id": "f1", "command": "ping", "expires": future}),
                           (b"bad", {"id": "b1", "command": "ping", "expires": "tomorrow"})]:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = reply_topic
            props.CorrelationData = corr
            client.publish(f"{mqtt_prefix}/dev-ctl/commands", orjson.dumps(body), qos=1,
                           properties=props).wait_for_publish(5)
        wait_for(lambda: len(replies.snapshot()) >= 3, 15, "3 replies")
    finally:
        client.disconnect()
        client.loop_stop()
    got = {bytes(m.properties.CorrelationData): orjson.loads(m.payload) for m in replies.snapshot()}
    assert got[b"stale"]["ok"] is False and got[b"stale"]["error"].startswith(f"expired at {past}")
    assert got[b"fresh"]["ok"] is True and got[b"fresh"]["result"]["pong"] is True
    assert got[b"bad"]["ok"] is False and "not an RFC 3339 time" in got[b"bad"]["error"]
    assert running_agent.commands.expired == 1
    assert running_agent.commands.executed == 1  # the ping only
    assert running_agent.polled[0].interval == before != 7  # type: ignore[attr-defined]
