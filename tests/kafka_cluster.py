"""A three-node KRaft cluster driven through `edgebridge brokers` as an operator would, for the tests
that need replication (the ``kafka_cluster`` fixture of tests/conftest.py: one cluster for the session,
shared by every test on it, for three JVMs cost the two cores a lot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebridge.devbrokers import KafkaCluster, LocalBrokers
from tests.waiting import wait_for

__all__ = ["NODES", "Cluster", "partitions"]

ROOT = Path(__file__).resolve().parents[1]
NODES = 3


@dataclass
class Cluster:
    state: Path

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
        return subprocess.run([sys.executable, "-m", "edgebridge", "brokers", "--state-dir", str(self.state),
                               "--only", "kafka", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=timeout)

    def status(self) -> tuple[int, dict[str, Any]]:
        result = self.cli("status", "--json")
        return result.returncode, json.loads(result.stdout)["kafka"]

    @property
    def kafka(self) -> KafkaCluster:
        """The cluster as state.json describes it now (pids change when a node is restarted)."""
        return LocalBrokers(self.state, only=("kafka",)).kafka_cluster

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    def healthy(self) -> bool:
        """Every node running and registered, and no partition under-replicated (the cluster's own view)."""
        kafka = self.kafka
        if not kafka.is_running():
            return False
        info = kafka.describe()
        return ("partitions" in info and info["under_replicated"] == 0
                and all(n.get("registered") for n in info["nodes"]))

    def restore(self, timeout: float = 180) -> None:
        """Make the cluster healthy again after a test that killed or stopped nodes: `up` starts the
        nodes that do not run (their own ports and data), then wait until every partition is fully
        replicated. Nothing is done to a healthy cluster."""
        if self.healthy():
            return
        if not self.kafka.is_running():
            up = self.cli("up")
            assert up.returncode == 0, f"the shared cluster could not be restored: {up.stderr}"
        wait_for(self.healthy, timeout, "the shared cluster: every node up, nothing under-replicated",
                 every=0.5)


def partitions(info: dict[str, Any], topics: set[str]) -> list[dict[str, Any]]:
    """The partitions of ``topics`` in ``status --json``'s Kafka part (leader, replicas, isr each)."""
    return [p for p in info["partitions"] if p["topic"] in topics]
