"""Only a real confirmation completes a message: Kafka refusing a record never turns into an MQTT ack or
a receipt without the event (or its dead letter, payload included) in Kafka.

A private Kafka with automatic topic creation off and an authorizer, so it can refuse for real: a record
larger than the topic's ``max.message.bytes``, a producer denied by an ACL, a topic deleted.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from edgebridge.devbrokers import KafkaOptions, LocalBrokers
from edgebridge.envelope import encode, new_reading
from tests.e2e.conftest import Pipeline
from tests.waiting import wait_for

REFUSING = KafkaOptions(extra={
    "auto.create.topics.enable": "false",
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "allow.everyone.if.no.acl.found": "true",  # everything is allowed until the test denies something
})


def _high(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"hw-{uuid.uuid4().hex[:6]}"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        consumer.close()


def _deny_write(topic: str) -> AclBinding:
    return AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:ANONYMOUS", "*",
                      AclOperation.WRITE, AclPermissionType.DENY)


class Counts:
    """The bridge's acks and the agent's receipted rows, read from outside the bridge."""

    def __init__(self, p: Pipeline, device: str) -> None:
        self.p, self.device = p, device

    def snapshot(self) -> tuple[float, int]:
        bridge = self.p.bridges[0]
        status = self.p.status(self.device)
        receipted = self.p.committed(self.device) - status.get("backlog_rows", 0)
        return bridge.metric("edgebridge_bridge_acked_messages_total"), receipted


@pytest.mark.timeout(600)
def test_kafka_refusing_never_acks_or_receipts_without_kafka(
    pipeline: Callable[..., Pipeline], private_brokers: Callable[..., LocalBrokers]
) -> None:
    local = private_brokers("mosquitto", "kafka", kafka=REFUSING)
    p = pipeline(mqtt_url=local.mosquitto.url, bootstrap=local.kafka.bootstrap)
    raw = p.topics.raw
    admin = AdminClient({"bootstrap.servers": local.kafka.bootstrap})
    # batches of at most 8 KiB: under load the producer packs many small events into one batch, and a
    # batch above the topic's limit below would be refused whole (librdkafka never splits it), which is
    # not the refusal this test is about (seen in CI: 10 ordinary events dead-lettered with the big one)
    bridge = p.bridge(retry_backoff_max=1.0, librdkafka={"batch.size": "8192"}).start()
    assert bridge.wait_healthy(30)
    device = "refused-1"
    p.agent(device, events=100_000, rate=100).start()
    counts = Counts(p, device)
    wait_for(lambda: counts.snapshot()[1] >= 200, 30, "the agent's first events receipted")

    # 1. a record too large for the raw topic: its dead letter, payload included, and a receipt
    limit = ConfigEntry("max.message.bytes", "16384", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, raw, incremental_configs=[limit])
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)
    time.sleep(2)  # let the broker apply it
    # random hex: the bridge compresses (lz4) and the broker judges the compressed batch
    big = new_reading("refused-big", 1, {"blob": {"v": secrets.token_hex(20_000)}}, epoch="0b0b0b0b0b0b0b0b")
    receipts: list[bytes] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"rc-{uuid.uuid4().hex[:6]}",
                      protocol=mqtt.MQTTv5)
    sub.on_message = lambda _c, _u, msg: receipts.append(bytes(msg.payload))
    sub.connect("127.0.0.1", local.mosquitto.port)
    sub.loop_start()
    try:
        sub.subscribe(f"{p.prefix}/refused-big/receipts", qos=1)
        time.sleep(0.5)
        sub.publish(f"{p.prefix}/refused-big/events", encode(big), qos=1).wait_for_publish(10)
        wait_for(lambda: receipts, 30, "the receipt of the refused event")
    finally:
        sub.disconnect()
        sub.loop_stop()
    receipt = orjson.loads(receipts[0])
    assert receipt["epoch"] == big.epoch and receipt["ranges"] == [[1, 1]]
    dead = _dead_letters(local.kafka.bootstrap, p.topics.deadletter)
    refused = [d for d in dead if d["headers"].get("dlq_reason") == "kafka_rejected"]
    assert len(refused) == 1 and refused[0]["value"] == encode(big)  # the whole payload, not cut

    # 2. the producer denied by an ACL: nothing acked, nothing receipted while it lasts
    admin.create_acls([_deny_write(raw)])[_deny_write(raw)].result(timeout=30)
    _judge_refusal(p, counts, raw, seconds=8)
    admin.delete_acls([AclBindingFilter(ResourceType.TOPIC, raw, ResourcePatternType.LITERAL, None, None,
                                        AclOperation.WRITE, AclPermissionType.DENY)])
    # 3. the raw topic deleted (no automatic creation): the same, until it exists again
    admin.delete_topics([raw])[raw].result(timeout=30)
    wait_for(lambda: raw not in admin.list_topics(timeout=10).topics, 30, "the raw topic gone")
    deleted_at = _judge_refusal(p, counts, raw, seconds=8, exists=False)
    admin.create_topics([NewTopic(raw, num_partitions=2, replication_factor=1)])[raw].result(timeout=30)

    # Kafka takes records again: whatever the agent committed after the deletion arrives, in order
    wait_for(lambda: p.status(device)["backlog_rows"] < 100, 120, "the backlog drained into the new topic")
    seqs = [orjson.loads(v)["seq"] for v in _values(local.kafka.bootstrap, raw)
            if orjson.loads(v)["deviceid"] == device]
    after = sorted(set(seqs))
    assert after and after[0] <= deleted_at + 1, f"the first seq after the deletion is {after[0]}"
    assert after == list(range(after[0], after[-1] + 1)), "a hole in what arrived after the deletion"
    # guarantee 3: what waited for a retry did not fall behind what came after it (one partition per
    # device: the topic's order is the device's order)
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == sorted(first_seen), "a retried record overtaken by a newer one"


def _judge_refusal(p: Pipeline, counts: Counts, raw: str, seconds: float, exists: bool = True) -> int:
    """Over ``seconds`` of refusal: no ack, no receipt, nothing new in the topic; returns the events
    receipted before it began."""
    bridge = p.bridges[0]
    time.sleep(3)  # records in flight when the refusal began may still land; judge after that
    acked, receipted = counts.snapshot()
    errors = bridge.metric("edgebridge_bridge_delivery_errors_total")
    high = _high(p.bootstrap, raw) if exists else None
    time.sleep(seconds)
    acked_after, receipted_after = counts.snapshot()
    assert bridge.running
    # the agent publishes 100 events/s meanwhile: Kafka refuses them, again and again
    assert bridge.metric("edgebridge_bridge_delivery_errors_total") > errors, "the fault was not injected"
    assert acked_after == acked, f"{acked_after - acked} messages acked while Kafka refused"
    assert receipted_after == receipted, f"{receipted_after - receipted} events receipted while Kafka refused"
    if high is not None:
        assert _high(p.bootstrap, raw) == high
    return receipted


def _values(bootstrap: str, topic: str) -> list[bytes]:
    from simulators.audit import read_topic

    return read_topic(bootstrap, topic, idle=2.0)


def _dead_letters(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dl-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    out = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                if out:
                    break
                continue
            if msg.error():
                continue
            headers = {k: (v or b"").decode() for k, v in msg.headers() or []}
            out.append({"headers": headers, "value": msg.value()})
    finally:
        consumer.close()
    return out
