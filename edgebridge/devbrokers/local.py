"""The pair of local brokers behind `edgebridge brokers` and the test session fixture.

State lives in one folder (default ``.edgebridge/brokers`` under the current directory, or
``EDGEBRIDGE_BROKERS_DIR``): each broker's config, data and log in a subfolder, plus ``state.json`` with
pids and ports so that a later `status`, `env` or `down` finds the running brokers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgebridge.devbrokers.base import ManagedBroker
from edgebridge.devbrokers.kafka import Kafka, KafkaOptions
from edgebridge.devbrokers.mosquitto import Mosquitto, MosquittoOptions

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
    ) -> None:
        self.state_dir = Path(state_dir or default_state_dir()).resolve()
        self._mosquitto_options = mosquitto
        self._kafka_options = kafka
        self.only = tuple(only)
        self._brokers: dict[str, ManagedBroker] = {}

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def mosquitto(self) -> Mosquitto:
        broker = self._broker("mosquitto")
        assert isinstance(broker, Mosquitto)
        return broker

    @property
    def kafka(self) -> Kafka:
        broker = self._broker("kafka")
        assert isinstance(broker, Kafka)
        return broker

    def _broker(self, name: str) -> ManagedBroker:
        if name not in self._brokers:
            saved = self._saved().get(name, {})
            folder = self.state_dir / name
            broker: ManagedBroker
            if name == "mosquitto":
                opts = self._mosquitto_options or MosquittoOptions(port=saved.get("port", 0))
                broker = Mosquitto(folder, opts)
            else:
                opts_k = self._kafka_options or KafkaOptions(
                    port=saved.get("port", 0), controller_port=saved.get("controller_port", 0)
                )
                broker = Kafka(folder, opts_k)
            broker.pid = saved.get("pid")
            broker.ready_seconds = saved.get("ready_seconds")
            self._brokers[name] = broker
        return self._brokers[name]

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
        """Start whichever brokers are not running; return their descriptions."""
        for name in self.only:
            self._broker(name).start(timeout=timeout)
            self._save()
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
            out["EDGEBRIDGE_KAFKA_BOOTSTRAP"] = self.kafka.bootstrap
        return out
