"""Commands: iot.commands → MQTT device → reply → iot.commands.responses, offsets after PUBACK."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.bridge.helpers import BridgeThread, bridge_config, read_topic, wait_until
from tests.conftest import BrokerAddresses

pytestmark = pytest.mark.brokers


class Device:
    """A paho client playing the device: answers every command on its response topic."""

    def __init__(self, host: str, port: int, prefix: str, deviceid: str) -> None:
        self.commands: list[bytes] = []
        self.expiry: dict[bytes, int | None] = {}  # payload -> its MQTT 5 Message Expiry Interval
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"{deviceid}-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_message = self._on_command
        self.client.connect(host, port)
        self.client.subscribe(f"{prefix}/{deviceid}/commands", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_command(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.commands.append(msg.payload)
        self.expiry[msg.payload] = getattr(msg.properties, "MessageExpiryInterval", None)
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = msg.properties.CorrelationData
        client.publish(msg.properties.ResponseTopic, b"done:" + msg.payload, qos=1, properties=props)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_commands_reach_the_device_and_replies_come_back_with_correlation_data(
    brokers: BrokerAddresses, mqtt_prefix: str, kafka_topic: Callable[..., str],
    consumer_group: Callable[[], str],
) -> None:
    commands, responses = kafka_topic("cmd", partitions=2), kafka_topic("resp")
    group = consumer_group()
    config = bridge_config(brokers.mqtt_url, brokers.kafka_bootstrap, mqtt_prefix, **{
        "downlink.enabled": True, "topics.commands": commands, "downlink.group_id": group,
        "downlink.client_id": f"down-{mqtt_prefix}"[:60], "topics.command_responses": responses})
    devices = [Device(brokers.mqtt_host, brokers.mqtt_port, mqtt_prefix, d) for d in ("dev-1", "dev-2")]
    bridge = BridgeThread(config).start()
    n = 30
    try:
        producer = Producer({"bootstrap.servers": brokers.kafka_bootstrap})
        for i in range(n):
            headers = [("correlation_id", f"corr-{i}".encode())] if i % 2 == 0 else []
            producer.produce(commands, f"cmd-{i}".encode(), f"dev-{1 + i % 2}".encode(), headers=headers)
        producer.produce(commands, b"nobody", b"bad key/with/slashes")  # unroutable: counted, skipped
        assert producer.flush(30) == 0
        assert wait_until(lambda: sum(len(d.commands) for d in devices) == n, 30)
        assert sorted(devices[0].commands) == sorted(f"cmd-{i}".encode() for i in range(0, n, 2))
        replies = read_topic(brokers.kafka_bootstrap, responses, n, settle=1.0)
        assert len(replies) == n
        by_payload = {r.value: r for r in replies}
        for i in range(n):
            r = by_payload[f"done:cmd-{i}".encode()]
            assert r.key == f"dev-{1 + i % 2}".encode()
            if i % 2 == 0:
                assert r.headers["correlation_data"] == f"corr-{i}".encode()
            else:  # no correlation id given: topic/partition/offset of the command
                assert r.headers["correlation_data"].startswith(f"{commands}/".encode())
        # every offset committed once PUBACKed: the group's committed offsets cover all n + 1 records
        assert wait_until(lambda: _committed(brokers.kafka_bootstrap, group, commands) == n + 1, 20)
        assert bridge.metric("edgebridge_bridge_commands_invalid_total", {"reason": "bad_key"}) == 1
        assert bridge.metric("edgebridge_bridge_commands_published_total") == n
    finally:
        bridge.close()
        for d in devices:
            d.close()


def test_a_commands_expires_ms_becomes_its_message_expiry_and_an_expired_one_is_not_sent(
    brokers: BrokerAddresses, mqtt_prefix: str, kafka_topic: Callable[..., str],
    consumer_group: Callable[[], str],
) -> None:
    import time

    commands, responses = kafka_topic("cmd"), kafka_topic("resp")
    config = bridge_config(brokers.mqtt_url, brokers.kafka_bootstrap, mqtt_prefix, **{
        "downlink.enabled": True, "topics.commands": commands, "downlink.group_id": consumer_group(),
        "downlink.client_id": f"down-{mqtt_prefix}"[:60], "topics.command_responses": responses})
    device = Device(brokers.mqtt_host, brokers.mqtt_port, mqtt_prefix, "dev-1")
    bridge = BridgeThread(config).start()
    try:
        producer = Producer({"bootstrap.servers": brokers.kafka_bootstrap})
        now_ms = int(time.time() * 1000)
        for value, expires in ((b"old", now_ms - 1000), (b"soon", now_ms + 120_000), (b"never", None),
                               (b"garbled", "tomorrow")):
            headers = [("expires_ms", str(expires).encode())] if expires is not None else []
            producer.produce(commands, value, b"dev-1", headers=headers)
        assert producer.flush(30) == 0
        assert wait_until(lambda: len(device.commands) == 3, 30)
        assert bridge.metric("edgebridge_bridge_commands_invalid_total", {"reason": "expired"}) == 1
        assert sorted(device.commands) == [b"garbled", b"never", b"soon"]  # "old" was never sent
        assert 110 <= (device.expiry[b"soon"] or 0) <= 120
        assert device.expiry[b"never"] is None and device.expiry[b"garbled"] is None  # unreadable: kept
    finally:
        bridge.close()
        device.close()


def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)
        return sum(max(p.offset, 0) for p in parts)
    finally:
        consumer.close()


def test_a_command_larger_than_the_message_limit_is_skipped_and_committed_past(
    brokers: BrokerAddresses, mqtt_prefix: str, kafka_topic: Callable[..., str],
    consumer_group: Callable[[], str],
) -> None:
    """A broker with a max_packet_size (the shipped Mosquitto's) would disconnect the downlink for it,
    again after each reconnect: it is counted and skipped, and the commands after it go through."""
    commands = kafka_topic("cmd", partitions=2)
    group = consumer_group()
    config = bridge_config(brokers.mqtt_url, brokers.kafka_bootstrap, mqtt_prefix, **{
        "downlink.enabled": True, "topics.commands": commands, "downlink.group_id": group,
        "downlink.client_id": f"down-{mqtt_prefix}"[:60], "topics.command_responses": kafka_topic("resp"),
        "uplink.max_message_bytes": 1024})
    device = Device(brokers.mqtt_host, brokers.mqtt_port, mqtt_prefix, "dev-1")
    bridge = BridgeThread(config).start()
    try:
        producer = Producer({"bootstrap.servers": brokers.kafka_bootstrap})
        producer.produce(commands, b"x" * 1000, b"dev-1", partition=0)  # with its correlation data: > 1024
        producer.produce(commands, b"small", b"dev-1", partition=0)
        assert producer.flush(30) == 0
        assert wait_until(lambda: device.commands == [b"small"], 30)
        assert wait_until(lambda: _committed(brokers.kafka_bootstrap, group, commands) == 2, 20)
        assert bridge.metric("edgebridge_bridge_commands_invalid_total", {"reason": "oversized"}) == 1
        assert bridge.metric("edgebridge_bridge_commands_published_total") == 1
    finally:
        bridge.close()
        device.close()
