"""The pair of local brokers behind `edgebridge brokers` and the test session fixture.

State lives in one folder (default ``.edgebridge/brokers`` under the current directory, or
``EDGEBRIDGE_BROKERS_DIR``): each broker's config, data and log in a subfolder (``kafka`` for a
single Kafka node, ``kafka-1`` ... for the nodes of a cluster), plus ``state.json`` with pids and
ports so that a later `status`, `env` or `down` finds the running brokers, and how many Kafka nodes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgebridge.devbrokers.kafka import Kafka, KafkaOptions
from edgebridge.devbrokers.kafka_cluster import KafkaCluster
from edgebridge.devbrokers.mosquitto import Mosquitto, MosquittoOptions
from edgebridge.errors import BrokerStartError

__all__ = ["BROKER_NAMES", "LocalBrokers", "default_state_dir"]

BROKER_NAMES = ("mosquitto", "kafka")


def default_state_dir() -> Path:
    return Path(os.environ.get("EDGEBRIDGE_BROKERS_DIR") or Path.cwd() / ".edgebridge" / "brokers")


class LocalBrokers:
    """Mosquitto and Kafka under one state folder, started and stopped together."""

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        mosquitto: MosquittoOptions | None = None,
        kafka: KafkaOptions | None = None,
        only: Iterable[str] = BROKER_NAMES,
        kafka_nodes: int | None = None,
    ) -> None:
        self.state_dir = Path(state_dir or default_state_dir()).resolve()
        self._mosquitto_options = mosquitto
        self._kafka_options = kafka
        self.only = tuple(only)
        # None: as many as state.json says (a later `status` or `down` acts on what `up` started), or 1
        self._kafka_nodes = kafka_nodes
        self._brokers: dict[str, Mosquitto | KafkaCluster] = {}

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def mosquitto(self) -> Mosquitto:
        broker = self._broker("mosquitto")
        assert isinstance(broker, Mosquitto)
        return broker

    @property
    def kafka_cluster(self) -> KafkaCluster:
        broker = self._broker("kafka")
        assert isinstance(broker, KafkaCluster)
        return broker

    @property
    def kafka(self) -> Kafka:
        """The single Kafka node (fault tests signal it); a cluster's nodes are ``kafka_cluster.nodes``."""
        cluster = self.kafka_cluster
        if cluster.size != 1:
            raise ValueError(f"this Kafka has {cluster.size} nodes: use kafka_cluster")
        return cluster.nodes[0]

    @property
    def kafka_bootstrap(self) -> str:
        """Every node's address, comma-separated (one address for a single node)."""
        return self.kafka_cluster.bootstrap

    def _saved_kafka_nodes(self) -> int:
        saved = self._saved().get("kafka", {})
        return len(saved["nodes"]) if isinstance(saved, dict) and "nodes" in saved else 1

    def _broker(self, name: str) -> Mosquitto | KafkaCluster:
        if name not in self._brokers:
            saved = self._saved().get(name, {})
            if name == "mosquitto":
                opts = self._mosquitto_options or MosquittoOptions(port=saved.get("port", 0))
                mosquitto = Mosquitto(self.state_dir / name, opts)
                mosquitto.pid = saved.get("pid")
                mosquitto.ready_seconds = saved.get("ready_seconds")
                self._brokers[name] = mosquitto
            else:
                nodes = self._kafka_nodes or self._saved_kafka_nodes()
                same = nodes == self._saved_kafka_nodes()
                self._brokers[name] = KafkaCluster(self.state_dir, nodes, self._kafka_options,
                                                   saved if same else None)
        return self._brokers[name]

    def _refuse_other_kafka(self) -> None:
        """`up --kafka-nodes N` while a Kafka of another size runs from this folder: one line, no start."""
        saved = self._saved_kafka_nodes()
        if self._kafka_nodes is None or self._kafka_nodes == saved:
            return
        running = KafkaCluster(self.state_dir, saved, None, self._saved().get("kafka", {}))
        if any(n.is_running() for n in running.nodes):
            raise BrokerStartError("kafka", f"a Kafka of {saved} node(s) runs from {self.state_dir}, "
                                   f"{self._kafka_nodes} asked: `edgebridge brokers down` first")

    def _saved(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = self._saved()
        for name, broker in self._brokers.items():
            state[name] = broker.describe()
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_file)

    def up(self, timeout: float = 120.0) -> dict[str, Any]:
        """Start whichever brokers are not running; return their descriptions.

        A Kafka of several nodes also gets its internal topics and the contract's topics, replicated
        on every node (up to 3) with min ISR one less, before this returns.
        """
        if "kafka" in self.only:
            self._refuse_other_kafka()
        for name in self.only:
            self._broker(name).start(timeout=timeout)
            self._save()
            if name == "kafka" and self.kafka_cluster.size > 1:
                self.kafka_cluster.warm_up(timeout)
                self.kafka_cluster.create_contract_topics()
        return self.status()

    def detach(self) -> None:
        """Leave the started brokers running after this process exits (see ManagedBroker.detach)."""
        for broker in self._brokers.values():
            broker.detach()

    def down(self) -> None:
        for name in reversed(self.only):
            self._broker(name).stop()
        self._save()

    def status(self) -> dict[str, Any]:
        out = {}
        for name in self.only:
            broker = self._broker(name)
            info = broker.describe()
            info["running"] = broker.is_running()
            out[name] = info
        return out

    def env(self) -> dict[str, str]:
        """The environment variables that point edgebridge components and tests at these brokers."""
        out = {}
        if "mosquitto" in self.only:
            out["EDGEBRIDGE_MQTT_URL"] = self.mosquitto.url
        if "kafka" in self.only:
            out["EDGEBRIDGE_KAFKA_BOOTSTRAP"] = self.kafka_bootstrap
        return out
