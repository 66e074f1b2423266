"""Guarantee 6 at the edge, against the real Mosquitto: the retained ``offline`` Last Will after kill -9,
username/password and TLS links, a wrong password (retried with backoff, counted, never fatal, never
logged), and the ACL that lets a device publish only under its own id."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import orjson
import paho.mqtt.client as mqtt
import pytest

from edgebridge.devbrokers import LocalBrokers, MosquittoOptions
from simulators.processes import ComponentProcess
from tests.agent.conftest import (
    Subscriber,
    agent_config,
    agent_running,
    agent_settings,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers


def test_last_will_offline_is_retained_after_kill_9(
    tmp_path: Path,
    mqtt_url: str,
    mqtt_prefix: str,
    subscriber: Callable[..., Subscriber],
    agent_process: Callable[..., ComponentProcess],
) -> None:
    device = "dev-will"
    status_topic = f"{mqtt_prefix}/{device}/status"
    live = subscriber(status_topic)
    agent = agent_process(agent_settings(
        tmp_path / "state", mqtt_url, mqtt_prefix, device, simulated={"enabled": True, "interval": 0.05}
    )).start()

    def statuses(sub: Subscriber) -> list[str]:
        return [orjson.loads(m.payload)["status"] for m in sub.snapshot()]

    wait_for(lambda: "online" in statuses(live), 30, "the retained online status")
    agent.kill()  # no DISCONNECT: the broker publishes the Will when the TCP connection drops
    wait_for(lambda: statuses(live)[-1:] == ["offline"], 30, "the Last Will")
    # An independent subscriber arriving later gets the retained offline status, and only that.
    late = subscriber(status_topic)
    wait_for(lambda: bool(late.snapshot()), 10, "the retained status")
    msg = late.snapshot()[0]
    assert msg.retain
    assert orjson.loads(msg.payload) == {"status": "offline", "deviceid": device}
    assert len(late.snapshot()) == 1


def _acl(prefix: str) -> str:
    # The deployment's ACL (see deploy/agent.example.toml, [mqtt] security): username = device id; a
    # device writes its events, status and command replies and reads its commands and receipts, all
    # under its own id; only the reader (the bridge's part) writes receipts. Production prefix: "devices".
    device = "".join(f"pattern {mode} {prefix}/%u/{kind}\n" for mode, kind in (
        ("write", "events"), ("write", "status"), ("write", "commands/response"), ("read", "commands"),
        ("read", "receipts")))
    return f"user reader\ntopic read {prefix}/#\ntopic write {prefix}/+/receipts\n\n{device}"


def test_password_login_and_acl_device_publishes_only_under_its_own_id(
    tmp_path: Path,
    mqtt_prefix: str,
    private_brokers: Callable[..., LocalBrokers],
    subscriber: Callable[..., Subscriber],
) -> None:
    users = {"dev-1": "pw-one", "dev-2": "pw-two", "reader": "pw-reader"}
    local = private_brokers("mosquitto", mosquitto=MosquittoOptions(users=users, acl=_acl(mqtt_prefix)))
    url = local.mosquitto.url
    sub = subscriber(f"{mqtt_prefix}/+/events", url=url, username="reader", password="pw-reader")
    config = agent_config(
        tmp_path / "state",
        url,
        mqtt_prefix,
        "dev-1",
        **{
            "mqtt.username": "dev-1",
            "mqtt.password": "pw-one",
            "simulated.enabled": True,
            "simulated.interval": 0.01,
            "simulated.limit": 50,
        },
    )
    with agent_running(config) as agent:
        wait_for(lambda: len(sub.events()) >= 50, 30, "the agent's 50 events through the ACL")
        assert agent.forwarder.stats.refused == 0
    assert sorted({e["seq"] for e in sub.events()}) == list(range(1, 51))
    assert {m.topic for m in sub.snapshot()} == {f"{mqtt_prefix}/dev-1/events"}

    # dev-1, logged in with its own credentials, tries to publish as dev-2: the broker refuses it.
    u = urlparse(url)
    spoofer = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"spoof-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )
    spoofer.username_pw_set("dev-1", "pw-one")
    reasons: dict[int, int] = {}
    acked = threading.Event()

    def on_publish(_c: mqtt.Client, _u: object, mid: int, rc: mqtt.ReasonCode, _p: object) -> None:
        reasons[mid] = rc.value
        if len(reasons) == 3:
            acked.set()

    spoofer.on_publish = on_publish
    spoofer.connect(u.hostname or "127.0.0.1", u.port or 1883)
    spoofer.loop_start()
    try:
        spoof = spoofer.publish(f"{mqtt_prefix}/dev-2/events", b'{"spoofed": true}', qos=1)
        # nor may it receipt its own events (deleting them before Kafka has them)
        forged = spoofer.publish(f"{mqtt_prefix}/dev-1/receipts",
                                 b'{"deviceid":"dev-1","epoch":"","ranges":[[1,99]]}', qos=1)
        # then one it may publish: messages of one connection are handled in order, so once this one
        # reached the subscriber the spoofed one would have too, had the broker let it through
        marker = spoofer.publish(f"{mqtt_prefix}/dev-1/events", b'{"marker": true}', qos=1)
        assert acked.wait(10), "no PUBACKs"
        wait_for(lambda: any(m.payload == b'{"marker": true}' for m in sub.snapshot()), 10, "the marker")
    finally:
        spoofer.disconnect()
        spoofer.loop_stop()
    assert not [m for m in sub.snapshot() if "/dev-2/" in m.topic]
    assert reasons[marker.mid] == 0
    assert reasons[spoof.mid] == 135  # PUBACK "Not authorized" (MQTT 5)
    assert reasons[forged.mid] == 135


def test_tls_connection(
    tmp_path: Path,
    mqtt_prefix: str,
    private_brokers: Callable[..., LocalBrokers],
    subscriber: Callable[..., Subscriber],
) -> None:
    local = private_brokers("mosquitto", mosquitto=MosquittoOptions(tls=True))
    m = local.mosquitto
    assert m.url.startswith("mqtts://") and m.ca_file is not None
    sub = subscriber(f"{mqtt_prefix}/dev-tls/events", url=m.url, ca_file=m.ca_file)
    config = agent_config(
        tmp_path / "state",
        m.url,
        mqtt_prefix,
        "dev-tls",
        **{
            "mqtt.ca_file": str(m.ca_file),
            "simulated.enabled": True,
            "simulated.interval": 0.01,
            "simulated.limit": 30,
        },
    )
    with agent_running(config) as agent:
        wait_for(lambda: len(sub.events()) >= 30, 30, "30 events over TLS")
        assert agent.link.stats.connects == 1
    assert sorted({e["seq"] for e in sub.events()}) == list(range(1, 31))


def test_wrong_password_is_retried_with_backoff_counted_and_never_logged(
    tmp_path: Path,
    mqtt_prefix: str,
    private_brokers: Callable[..., LocalBrokers],
    caplog: pytest.LogCaptureFixture,
) -> None:
    local = private_brokers("mosquitto", mosquitto=MosquittoOptions(users={"dev-1": "right-pw"}))
    secret = "wrong-s3cret-pw"
    config = agent_config(
        tmp_path / "state",
        local.mosquitto.url,
        mqtt_prefix,
        "dev-1",
        **{
            "mqtt.username": "dev-1",
            "mqtt.password": secret,
            "simulated.enabled": True,
            "simulated.interval": 0.01,
        },
    )
    caplog.set_level(logging.DEBUG)
    with agent_running(config) as agent:
        wait_for(lambda: agent.link.stats.connect_failures >= 3, 30, "three refused connection attempts")
        committed = agent.outbox.stats.committed
        # still running: the loop beats, the outbox keeps committing what the sensor reads
        wait_for(lambda: agent.outbox.stats.committed > committed, 10, "events committed while refused")
        assert agent.health()[0]
        assert agent.link.current is None
        assert agent.link.stats.connects == 0
        assert agent.forwarder.stats.published_events == 0
    assert "mqtt connection refused" in caplog.text
    assert secret not in caplog.text
    for record in caplog.records:
        assert secret not in str(record.__dict__)
