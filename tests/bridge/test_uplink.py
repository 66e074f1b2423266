"""The uplink against the real Mosquitto and Kafka: every event once, keyed, in order; bad input aside."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import orjson
import pytest

from edgebridge.envelope import CONTENT_TYPE, encode, new_reading, to_dict
from tests.bridge.helpers import BridgeThread, Publisher, bridge_config, read_topic, readings, wait_until
from tests.conftest import BrokerAddresses

pytestmark = pytest.mark.brokers


def test_events_arrive_once_keyed_in_device_order(
    brokers: BrokerAddresses, mqtt_prefix: str, kafka_topic: Callable[..., str]
) -> None:
    raw, status = kafka_topic("raw", partitions=3), kafka_topic("status")
    config = bridge_config(brokers.mqtt_url, brokers.kafka_bootstrap, mqtt_prefix,
                           **{"topics.raw": raw, "topics.status": status})
    bridge = BridgeThread(config).start()
    pub = Publisher(brokers.mqtt_host, brokers.mqtt_port)
    devices = [f"dev-{i}" for i in range(4)]
    expected: dict[str, list[int]] = defaultdict(list)
    messages = 0
    try:
        # per device: 100 single events, then 10 batches of 20, interleaved across devices
        for round_ in range(100):
            for d in devices:
                pub.events(mqtt_prefix, readings(d, round_ + 1, 1))
                expected[d].append(round_ + 1)
                messages += 1
        for b in range(10):
            for d in devices:
                first = 101 + b * 20
                pub.batch(mqtt_prefix, readings(d, first, 20))
                expected[d].extend(range(first, first + 20))
                messages += 1
        for d in devices[:2]:
            pub.publish(f"{mqtt_prefix}/{d}/status", b"online", retain=True)
            messages += 1
        pub.wait_all()
        total = sum(len(v) for v in expected.values())
        assert total == 4 * 300
        records = read_topic(brokers.kafka_bootstrap, raw, total, settle=2.0)
        assert len(records) == total  # each once: no more, no less
        seen: dict[str, list[int]] = defaultdict(list)
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            event = orjson.loads(r.value)
            assert r.key == event["deviceid"].encode()
            assert r.headers["content-type"] == CONTENT_TYPE.encode()
            assert r.headers["ce_id"] == event["id"].encode()
            assert r.headers["ce_seq"] == str(event["seq"]).encode()
            assert r.headers["mqtt_topic"] == f"{mqtt_prefix}/{event['deviceid']}/events".encode()
            seen[event["deviceid"]].append(event["seq"])
        assert seen == expected  # per device, in seq order (one partition per key)
        statuses = read_topic(brokers.kafka_bootstrap, status, 2)
        assert sorted((r.key, r.value) for r in statuses) == [(b"dev-0", b"online"), (b"dev-1", b"online")]
        # every message acknowledged, and only after its records were confirmed
        assert wait_until(lambda: bridge.metric("edgebridge_bridge_acked_messages_total") == messages, 20)
        assert bridge.metric("edgebridge_bridge_events_total") == total
        assert bridge.metric("edgebridge_bridge_in_flight_messages") == 0
        assert bridge.metric("edgebridge_bridge_stale_acks_dropped_total") == 0
    finally:
        pub.close()
        bridge.close()


def test_bad_messages_go_to_deadletter_with_reason_while_valid_traffic_continues(
    brokers: BrokerAddresses, mqtt_prefix: str, kafka_topic: Callable[..., str]
) -> None:
    raw, dlq = kafka_topic("raw"), kafka_topic("dlq")
    config = bridge_config(brokers.mqtt_url, brokers.kafka_bootstrap, mqtt_prefix, **{
        "topics.raw": raw, "topics.deadletter": dlq, "uplink.max_message_bytes": 4096})
    bridge = BridgeThread(config).start()
    pub = Publisher(brokers.mqtt_host, brokers.mqtt_port)
    good = readings("dev-ok", 1, 60)
    wrong_schema = to_dict(new_reading("dev-bad", 1, {"t": {"v": 1}}))
    wrong_schema["type"] = "com.example.other.v9"
    spoof = encode(new_reading("dev-victim", 1, {"t": {"v": 1}}))
    half_batch = [to_dict(e) for e in readings("dev-mixed", 1, 3)]
    half_batch[1]["seq"] = -5
    bad: list[tuple[str, bytes, str]] = [  # (device of the topic, payload, expected reason)
        ("dev-bad", b"{not json", "not_json"),
        ("dev-bad", b"[" + b" " * 5000 + b"]", "oversized"),
        ("dev-bad", orjson.dumps(wrong_schema), "unknown_type"),
        ("dev-bad", orjson.dumps({"specversion": "1.0"}), "missing_attribute"),
        ("dev-thief", spoof, "device_mismatch"),
    ]
    try:
        for i, event in enumerate(good):  # one bad message after every 12th good one
            pub.events(mqtt_prefix, [event])
            if i % 12 == 0:
                device, payload, _ = bad[i // 12]
                pub.publish(f"{mqtt_prefix}/{device}/events", payload)
        pub.publish(f"{mqtt_prefix}/dev-mixed/events", orjson.dumps(half_batch))
        pub.wait_all()
        raws = read_topic(brokers.kafka_bootstrap, raw, 62, settle=2.0)
        assert sorted((r.key, orjson.loads(r.value)["seq"]) for r in raws) == sorted(
            [(b"dev-ok", s) for s in range(1, 61)] + [(b"dev-mixed", 1), (b"dev-mixed", 3)])
        dead = read_topic(brokers.kafka_bootstrap, dlq, 6, settle=2.0)
        assert len(dead) == 6
        by_reason = {r.headers["dlq_reason"].decode(): r for r in dead}
        assert sorted(by_reason) == sorted(["not_json", "oversized", "unknown_type", "missing_attribute",
                                            "device_mismatch", "bad_seq"])
        for device, payload, reason in bad:
            r = by_reason[reason]
            assert r.value == payload
            assert r.key == device.encode()
            assert r.headers["dlq_mqtt_topic"] == f"{mqtt_prefix}/{device}/events".encode()
            assert r.headers["dlq_time"].endswith(b"Z")
            assert r.headers["dlq_component"] == b"bridge"
            assert r.headers["dlq_error_class"] == b"EnvelopeError"
            assert r.headers["dlq_error"]
        partial = by_reason["bad_seq"]
        assert partial.headers["dlq_index"] == b"1"
        assert orjson.loads(partial.value)["seq"] == -5
        assert wait_until(lambda: bridge.metric("edgebridge_bridge_acked_messages_total") == 60 + 5 + 1, 20)
        assert bridge.metric("edgebridge_bridge_deadletters_total", {"reason": "device_mismatch"}) == 1
    finally:
        pub.close()
        bridge.close()

