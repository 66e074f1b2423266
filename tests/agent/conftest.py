"""Agent test helpers: a Mosquitto of the session (no Kafka: the agent never talks to it), an
independent subscriber that records what reached the broker, and agents to run (in a thread, or as a
child process by :class:`simulators.processes.ComponentProcess`)."""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest

from edgebridge.devbrokers import LocalBrokers
from edgebridge.errors import EdgeBridgeError
from simulators.processes import ComponentProcess


@pytest.fixture(scope="session")
def mqtt_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's Mosquitto: ``EDGEBRIDGE_MQTT_URL`` when set, else started here (Mosquitto only)."""
    url = os.environ.get("EDGEBRIDGE_MQTT_URL")
    if url:
        yield url
        return
    local = LocalBrokers(tmp_path_factory.mktemp("agent-mqtt"), only=("mosquitto",))
    try:
        local.up()
    except EdgeBridgeError as exc:
        local.down()
        pytest.fail(f"mosquitto unavailable: {exc}")
    try:
        yield local.mosquitto.url
    finally:
        local.down()


def status(db: Path) -> dict[str, Any]:
    """``read_status`` of an outbox the agent may still be creating: ``{}`` until its schema exists."""
    import sqlite3

    from edge_agent.outbox import read_status

    if not db.exists():
        return {}
    try:
        return read_status(db)
    except sqlite3.OperationalError:
        return {}


class Subscriber:
    """An independent MQTT 5 client with a persistent session: records every message of ``topic``.

    Subscribed to events, it also plays the bridge's part in the two-stage acknowledgment: for every
    event message it receives it publishes a receipt for its seqs to the device's receipts topic, so an
    agent deletes a row only once this reader has it (``receipts=False``: never, the row stays).
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        persistent: bool = False,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        receipts: bool = True,
    ) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.receipts = receipts and topic.endswith("/events")
        self.receipts_sent = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.connects = 0
        self.reconnect_index: list[int] = []

        def on_connect(c: mqtt.Client, *_a: object) -> None:
            self.connects += 1
            self.reconnect_index.append(len(self.messages))
            c.subscribe(topic, qos=1)

        self.client.on_connect = on_connect
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file))
        props = None
        if persistent:  # the broker queues for us while we are away (a broker restart)
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]  # floats work
        self.client.connect(host, port, clean_start=not persistent, properties=props)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)
        if self.receipts and msg.topic.endswith("/events"):
            self._receipt(client, msg)

    def _receipt(self, client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        from edgebridge.receipts import encode_receipt, merge_ranges

        base, device = msg.topic.rsplit("/", 1)[0], msg.topic.split("/")[-2]
        body = orjson.loads(msg.payload)
        seqs: dict[str, list[tuple[int, int]]] = {}
        for event in body if isinstance(body, list) else [body]:
            seq = event.get("seq") if isinstance(event, dict) else None
            if type(seq) is int and seq > 0:  # a test's own marker message has none
                seqs.setdefault(event.get("epoch") or "", []).append((seq, seq))
        for epoch, ranges in seqs.items():
            client.publish(f"{base}/receipts", encode_receipt(device, epoch, merge_ranges(ranges)), qos=1)
            self.receipts_sent += 1

    def snapshot(self) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return list(self.messages)

    def events(self, topic_suffix: str = "/events") -> list[dict[str, Any]]:
        """Every event received on ``*/events``, batches flattened, in arrival order."""
        out: list[dict[str, Any]] = []
        for msg in self.snapshot():
            if not msg.topic.endswith(topic_suffix):
                continue
            body = orjson.loads(msg.payload)
            out.extend(body if isinstance(body, list) else [body])
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(mqtt_url: str) -> Iterator[Callable[[str], Subscriber]]:
    from urllib.parse import urlparse

    made: list[Subscriber] = []

    def make(topic: str, url: str | None = None, persistent: bool = False, **auth: Any) -> Subscriber:
        u = urlparse(url or mqtt_url)
        sub = Subscriber(u.hostname or "127.0.0.1", u.port or 1883, topic, persistent, **auth)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


def agent_settings(
    state: Path, url: str, prefix: str, device: str = "dev-1", **tables: Mapping[str, Any]
) -> dict[str, Any]:
    """The config of an agent child process as the nested dict it is written from; ``tables`` add
    sections (``simulated={"enabled": True}``)."""
    return {"device_id": device, "state_dir": str(state), "mqtt": {"url": url, "topic_prefix": prefix},
            "log": {"level": "WARNING"}, **tables}


@pytest.fixture
def agent_process(tmp_path: Path) -> Iterator[Callable[..., ComponentProcess]]:
    """``agent_process(config, name="agent")``: ``edgebridge agent run`` as a child process (what kill -9
    tests need), not yet started, its config and log ``tmp_path/NAME.toml|log``; killed at the end."""
    made: list[ComponentProcess] = []

    def make(config: Mapping[str, Any], name: str = "agent") -> ComponentProcess:
        made.append(ComponentProcess("agent", name, config, tmp_path, metrics=False))
        return made[-1]

    yield make
    for proc in made:
        proc.kill()


def agent_config(state: Path, url: str, prefix: str, device: str = "dev-1", **overrides: Any) -> Any:
    """An in-process agent's config: ``overrides`` are dotted keys (``"mqtt.username": "x"``)."""
    from edge_agent.config import AgentConfig
    from edgebridge.config import load_config

    base = {
        "device_id": device,
        "state_dir": str(state),
        "mqtt.url": url,
        "mqtt.topic_prefix": prefix,
        "metrics.enabled": False,
        "systemd.notify": False,
        "forwarder.reconnect_initial": 0.05,
        "forwarder.reconnect_max": 0.2,
    }
    return load_config(AgentConfig, overrides={**base, **overrides}, env={})


@contextlib.contextmanager
def agent_running(config: Any) -> Iterator[Any]:
    """An :class:`~edge_agent.agent.Agent` running in a thread; stopped (and joined) on exit."""
    from edge_agent.agent import Agent

    agent = Agent(config)
    thread = threading.Thread(target=agent.run, name="agent-under-test")
    thread.start()
    try:
        assert agent.started.wait(15), "the agent did not start"
        yield agent
    finally:
        agent.stop()
        thread.join(30)
        assert not thread.is_alive(), "the agent did not stop"
