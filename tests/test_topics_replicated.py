"""`edgebridge topics create --replication-factor` on a real three-broker Kafka: one KRaft controller and
broker, two more brokers, every topic on three brokers with min.insync.replicas 2."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from edgebridge.devbrokers import KafkaOptions
from edgebridge.devbrokers._process import free_port
from edgebridge.devbrokers.kafka import Kafka, new_cluster_id
from edgebridge.errors import EdgeBridgeError
from edgebridge.topics import KafkaTopics
from tests.conftest import _unavailable

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def three_brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("kafka-three")
    cluster = new_cluster_id()
    controller = free_port()
    voters = f"1@127.0.0.1:{controller}"
    nodes = [Kafka(folder / "node-1", KafkaOptions(controller_port=controller, cluster_id=cluster,
                                                    heap="384m"))]
    for node in (2, 3):
        port = free_port()
        # a broker only: the controller is node 1's
        only_broker = {"process.roles": "broker", "node.id": str(node), "controller.quorum.voters": voters,
                       "listeners": f"PLAINTEXT://127.0.0.1:{port}"}
        options = KafkaOptions(port=port, cluster_id=cluster, heap="384m", extra=only_broker)
        nodes.append(Kafka(folder / f"node-{node}", options))
    try:
        for node in nodes:
            node.start(timeout=120)
    except EdgeBridgeError as exc:
        for node in nodes:
            node.stop()
        _unavailable(str(exc))
    try:
        yield ",".join(n.bootstrap for n in nodes)
    finally:
        for node in reversed(nodes):
            node.stop()


def _cli(*args: str, bootstrap: str, names: KafkaTopics) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
    fields = KafkaTopics.__dataclass_fields__
    env.update({f"EDGEBRIDGE_TOPICS_{f.upper()}": getattr(names, f) for f in fields})
    env["EDGEBRIDGE_KAFKA_BOOTSTRAP"] = bootstrap
    return subprocess.run([sys.executable, "-m", "edgebridge", "topics", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)


def _min_isr(admin: Any, names: list[str]) -> dict[str, str]:
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names])
    return {r.name: f.result(30)["min.insync.replicas"].value for r, f in futures.items()}


def test_replication_factor_three_sets_min_insync_replicas_two(three_brokers: str) -> None:
    admin = AdminClient({"bootstrap.servers": three_brokers})
    assert len(admin.list_topics(timeout=30).brokers) == 3
    names = KafkaTopics(**{f: f"rf3-{f}" for f in KafkaTopics.__dataclass_fields__})
    result = _cli("create", "--replication-factor", "3", "--partitions", "2", bootstrap=three_brokers,
                  names=names)
    assert result.returncode == 0, result.stderr
    assert f"created {names.raw}: 2 partitions, replication factor 3, min.insync.replicas=2" in result.stdout
    cluster = admin.list_topics(timeout=30)
    for name in names.names():
        assert all(len(p.replicas) == 3 for p in cluster.topics[name].partitions.values()), name
    assert set(_min_isr(admin, list(names.names())).values()) == {"2"}
    # asked again for two replicas: the replication factor is only reported, and min ISR stays the one
    # of the factor the topics have
    dry = _cli("create", "--replication-factor", "2", "--partitions", "2", "--dry-run",
               bootstrap=three_brokers, names=names)
    assert dry.returncode == 0, dry.stderr
    assert "min.insync.replicas=1" not in dry.stdout
    assert f"note {names.raw}: has replication factor 3, 2 asked: not changed" in dry.stdout
    assert set(_min_isr(admin, list(names.names())).values()) == {"2"}  # the dry run changed nothing
    refused = _cli("create", "--replication-factor", "4", bootstrap=three_brokers, names=names)
    assert refused.returncode == 1
    assert "replication factor 4 needs at least 4 brokers, the cluster has 3" in refused.stderr
