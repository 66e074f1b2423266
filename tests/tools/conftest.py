"""The operator's tools run as an operator runs them: ``python -m edgebridge ...`` in a child process,
with a ``--config`` file of their own ([kafka] and [topics]) against the session's real Kafka."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgebridge.kafka_admin import ensure_topics
from edgebridge.topics import KafkaTopics
from simulators.processes import to_toml
from tests.conftest import BrokerAddresses

pytestmark = pytest.mark.brokers


@dataclass
class Tools:
    """A test's own topics and a config file naming them, and a runner of ``edgebridge`` commands."""

    topics: KafkaTopics
    config: Path
    bootstrap: str
    marker_topic: str

    def run(self, *args: str, timeout: float = 120.0,
            config: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
        cmd = [sys.executable, "-m", "edgebridge", *args]
        if config:  # after the (sub)command: the tools take --config where the components do
            cmd += ["--config", str(self.config)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)

    def register(self, device: str, site: str) -> None:
        """``edgebridge devices put``, configured by the environment (as an operator's shell would)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
        env.update(EDGEBRIDGE_KAFKA_BOOTSTRAP=self.bootstrap, EDGEBRIDGE_TOPICS_DEVICES=self.topics.devices)
        cmd = [sys.executable, "-m", "edgebridge", "devices", "put", device, "--site", site]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode == 0, result.stderr

    def popen(self, *args: str) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
        return subprocess.Popen([sys.executable, "-m", "edgebridge", *args, "--config", str(self.config)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture
def tools(brokers: BrokerAddresses, tmp_path: Path) -> Tools:
    suffix = uuid.uuid4().hex[:8]
    fields = KafkaTopics.__dataclass_fields__
    topics = KafkaTopics(**{f: f"{getattr(KafkaTopics(), f)}.{suffix}" for f in fields})
    marker = f"iot.events.deadletter.redriven.{suffix}"
    ensure_topics(brokers.kafka_bootstrap, topics, partitions=2, marker_topic=marker)
    path = tmp_path / "ops.toml"
    path.write_text(to_toml({
        "kafka": {"bootstrap": brokers.kafka_bootstrap},
        "topics": {f: getattr(topics, f) for f in KafkaTopics.__dataclass_fields__},
        "redrive": {"marker_topic": marker, "transactional_id": f"redrive-{suffix}"},
    }))
    return Tools(topics, path, brokers.kafka_bootstrap, marker)


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
            partition: int | None = None) -> None:
    """``(key, value, headers)`` records, acknowledged by Kafka before this returns."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value, headers in records:
        if partition is None:
            producer.produce(topic, value, key, headers=headers)
        else:
            producer.produce(topic, value, key, headers=headers, partition=partition)
    assert producer.flush(30) == 0


Run = Callable[..., subprocess.CompletedProcess[str]]
