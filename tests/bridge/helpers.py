"""Test helpers for the bridge: an independent paho publisher, a Kafka reader, bridges to run (in a
thread, or as a child process by :class:`simulators.processes.ComponentProcess`)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer, KafkaError, TopicPartition

from bridge.config import BridgeConfig
from bridge.service import Bridge
from edgebridge.config import load_config
from edgebridge.envelope import encode, encode_batch, new_reading
from simulators.processes import ComponentProcess

__all__ = [
    "BridgeThread",
    "KafkaRecord",
    "Publisher",
    "bridge_config",
    "high_watermarks",
    "read_topic",
    "readings",
    "start_bridge",
    "wait_until",
]


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def readings(deviceid: str, first: int, count: int) -> list[Any]:
    return [new_reading(deviceid, seq, {"temperature": {"v": 20 + seq % 10, "u": "Cel"}})
            for seq in range(first, first + count)]


class Publisher:
    """An independent MQTT 5 client publishing at QoS 1 and counting the broker's PUBACKs."""

    def __init__(self, host: str, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(100)
        self.client.connect(host, port)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, properties: Any = None) -> None:
        self.infos.append(self.client.publish(topic, payload, qos=1, retain=retain, properties=properties))

    def events(self, prefix: str, events: Iterable[Any]) -> None:
        for event in events:
            self.publish(f"{prefix}/{event.deviceid}/events", encode(event))

    def batch(self, prefix: str, events: list[Any]) -> None:
        self.publish(f"{prefix}/{events[0].deviceid}/events", encode_batch(events))

    def wait_all(self, timeout: float = 30.0) -> None:
        for info in self.infos:
            info.wait_for_publish(timeout)
        assert all(i.is_published() for i in self.infos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass(frozen=True)
class KafkaRecord:
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    partition: int
    offset: int


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 60.0,
               settle: float = 0.0) -> list[KafkaRecord]:
    """Read ``topic`` from the start until ``expect`` records (then ``settle`` s more for extras)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[KafkaRecord] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(out) >= expect:
                deadline = min(deadline, time.monotonic() + settle)
                if settle == 0:
                    break
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    continue
                raise AssertionError(msg.error())
            headers = {k: v for k, v in (msg.headers() or [])}
            out.append(KafkaRecord(msg.key(), msg.value(), headers, msg.partition(), msg.offset()))
    finally:
        consumer.close()
    return out


def high_watermarks(bootstrap: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """Each partition's high watermark (the records Kafka has confirmed), asked over the network by
    a consumer of its own, so the count does not come from the component under test."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"hw-{uuid.uuid4().hex[:8]}"})
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
                for p in partitions}
    finally:
        consumer.close()


def bridge_config(mqtt_url: str, bootstrap: str, prefix: str, **overrides: Any) -> BridgeConfig:
    base: dict[str, Any] = {
        "mqtt.url": mqtt_url,
        "mqtt.topic_prefix": prefix,
        "kafka.bootstrap": bootstrap,
        "uplink.client_id": f"bridge-{prefix}"[:60],
        "downlink.enabled": False,
        "metrics.enabled": False,
    }
    base.update(overrides)
    return load_config(BridgeConfig, None, env={}, overrides=base)


class BridgeThread:
    """A bridge run in this process (for tests that need no signals and no kill)."""

    def __init__(self, config: BridgeConfig) -> None:
        self.bridge = Bridge(config)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="bridge-under-test")

    def _run(self) -> None:
        try:
            self.bridge.run(self.stop)
        except BaseException as exc:  # surfaced by close()
            self.error = exc

    def start(self, timeout: float = 30.0) -> BridgeThread:
        self.thread.start()
        assert wait_until(lambda: self.bridge.health()[0] or self.error is not None, timeout), "not ready"
        assert self.error is None, self.error
        return self

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.bridge.metrics.registry.get_sample_value(name, labels or {})
        return value or 0.0

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


def start_bridge(tmp_path: Path, settings: Mapping[str, Any], timeout: float = 30.0) -> ComponentProcess:
    """`edgebridge bridge run` as a child process, returned once healthy; ``settings`` are dotted keys
    (``"mqtt.url"``). Each call has a config and a log (``.log_path``) of its own in ``tmp_path``."""
    config: dict[str, dict[str, Any]] = {}
    for dotted, value in settings.items():
        if "." not in dotted:  # a top-level key
            config[dotted] = value  # type: ignore[assignment]
            continue
        section, key = dotted.split(".", 1)
        config.setdefault(section, {})[key] = value
    bridge = ComponentProcess("bridge", f"bridge-{uuid.uuid4().hex[:6]}", config, tmp_path).start()
    if not bridge.wait_healthy(timeout):
        bridge.kill()
        raise AssertionError(f"bridge not healthy: {bridge.log_path.read_text()}")
    return bridge
