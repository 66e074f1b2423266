"""Several replicas on one $share subscription, and a graceful SIGTERM."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from tests.bridge.helpers import (
    BridgeThread,
    Publisher,
    bridge_config,
    read_topic,
    readings,
    start_bridge,
    wait_until,
)
from tests.conftest import BrokerAddresses

pytestmark = pytest.mark.brokers

ACKED = "edgebridge_bridge_acked_messages_total"


def test_two_replicas_on_a_shared_subscription_together_deliver_every_event(
    brokers: BrokerAddresses, mqtt_prefix: str, kafka_topic: Callable[..., str]
) -> None:
    raw = kafka_topic("raw", partitions=2)
    replicas = [
        BridgeThread(bridge_config(brokers.mqtt_url, brokers.kafka_bootstrap, mqtt_prefix, **{
            "topics.raw": raw, "uplink.share_group": "bridges",
            "uplink.client_id": f"r{i}-{mqtt_prefix}"[:60]})).start()
        for i in range(2)
    ]
    pub = Publisher(brokers.mqtt_host, brokers.mqtt_port)
    devices = [f"dev-{i}" for i in range(4)]
    try:
        for seq in range(1, 401):
            for d in devices:
                pub.events(mqtt_prefix, readings(d, seq, 1))
        pub.wait_all()
        total = 400 * len(devices)
        assert wait_until(lambda: sum(r.metric(ACKED) for r in replicas) == total, 60)
        shares = [r.metric("edgebridge_bridge_received_messages_total") for r in replicas]
        assert all(s > 0 for s in shares) and sum(shares) == total  # round-robin: both took part
        records = read_topic(brokers.kafka_bootstrap, raw, total, settle=2.0)
        assert len(records) == total
        assert {(r.key, orjson.loads(r.value)["seq"]) for r in records} == {
            (d.encode(), s) for d in devices for s in range(1, 401)}
    finally:
        pub.close()
        for r in replicas:
            r.close()


def test_sigterm_finishes_deliveries_acks_them_and_exits_0(
    brokers: BrokerAddresses, mqtt_prefix: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    raw = kafka_topic("raw")
    settings = {"mqtt.url": brokers.mqtt_url, "mqtt.topic_prefix": mqtt_prefix,
                "kafka.bootstrap": brokers.kafka_bootstrap, "uplink.client_id": f"b-{mqtt_prefix}"[:60],
                "topics.raw": raw, "uplink.receive_maximum": 500, "downlink.enabled": False}
    bridge = start_bridge(tmp_path, settings)
    pub = Publisher(brokers.mqtt_host, brokers.mqtt_port)
    devices = ["dev-a", "dev-b"]
    try:
        for seq in range(1, 1501):
            for d in devices:
                pub.events(mqtt_prefix, readings(d, seq, 1))
        assert wait_until(lambda: bridge.metric(ACKED) >= 300, 30)
        assert bridge.terminate(60) == 0  # mid-stream
        log = bridge.log_path.read_text()
        assert "uplink drained" in log and "unacknowledged=0" in log
        pub.wait_all()
        bridge = start_bridge(tmp_path, settings)
        expected = {(d.encode(), s) for d in devices for s in range(1, 1501)}
        records = read_topic(brokers.kafka_bootstrap, raw, len(expected), settle=2.0)
        assert {(r.key, orjson.loads(r.value)["seq"]) for r in records} == expected
        # everything produced before the stop was acknowledged before the disconnect: no redelivery
        assert len(records) == len(expected)
        assert bridge.terminate(60) == 0
    finally:
        pub.close()
        bridge.kill()
