"""The whole path under faults: real agents, bridge and enricher processes, real Mosquitto and Kafka.

:class:`Pipeline` gives a test its own Kafka topics (on the session's Kafka, or on a private one it may
freeze), its own MQTT prefix, and the components as child processes it may kill. Whatever a test
claims is counted by :func:`processed_counts`: a separate ``read_committed`` consumer of
``iot.events.processed``, never a component's own counters.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge_agent.outbox import read_status
from edgebridge.kafka_admin import ensure_topics
from edgebridge.topics import KafkaTopics
from simulators.audit import read_topic
from simulators.processes import ComponentProcess
from tests.conftest import BrokerAddresses
from tests.waiting import wait_for

Key = tuple[str, str, int]  # (device, epoch, seq)


def counts(values: list[bytes], devices: set[str] | None = None) -> Counter[Key]:
    """How many times each (device, epoch, seq) occurs among event payloads (gap events included)."""
    out: Counter[Key] = Counter()
    for value in values:
        event = orjson.loads(value)
        if devices is None or event["deviceid"] in devices:
            out[(event["deviceid"], event.get("epoch") or "", event["seq"])] += 1
    return out


class Pipeline:
    """One test's pipeline: topics, bridges, enrichers, agents (all child processes). The topics have
    ``partitions`` and ``replication_factor`` (min ISR one less, as `topics create` sets it)."""

    def __init__(self, workdir: Path, mqtt_url: str, bootstrap: str, name: str, *, partitions: int = 2,
                 replication_factor: int = 1) -> None:
        self.workdir = workdir
        self.mqtt_url = mqtt_url
        self.bootstrap = bootstrap
        self.prefix = f"e2e-{name}"
        suffix = f"{name}-{uuid.uuid4().hex[:6]}"
        self.topics = KafkaTopics(**{f: f"{getattr(KafkaTopics(), f)}.{suffix}"
                                     for f in KafkaTopics.__dataclass_fields__})
        ensure_topics(bootstrap, partitions=partitions, topics=self.topics,
                      replication_factor=replication_factor)
        self.agents: dict[str, ComponentProcess] = {}
        self.bridges: list[ComponentProcess] = []
        self.enrichers: list[ComponentProcess] = []  # replicas of one consumer group
        self.restarts: list[str] = []  # what supervise() had to restart, for the test to report

    # -- components ------------------------------------------------------------------------------

    def bridge(self, name: str = "bridge", mqtt: dict[str, Any] | None = None,
               librdkafka: dict[str, str] | None = None, **uplink: Any) -> ComponentProcess:
        t = self.topics
        config = {
            "mqtt": {"url": self.mqtt_url, "topic_prefix": self.prefix, **(mqtt or {})},
            "kafka": {"bootstrap": self.bootstrap, "librdkafka": librdkafka or {}},
            "log": {"level": "INFO"},
            "uplink": {"client_id": f"{self.prefix}-{name}", "receipt_interval": 0.2, **uplink},
            "topics": {"raw": t.raw, "status": t.status, "command_responses": t.command_responses,
                       "deadletter": t.deadletter},
            "downlink": {"enabled": False},
        }
        proc = ComponentProcess("bridge", name, config, self.workdir)
        self.bridges.append(proc)
        return proc

    @property
    def enricher(self) -> ComponentProcess | None:
        """The first enricher, for tests that run one."""
        return self.enrichers[0] if self.enrichers else None

    def start_enricher(self, name: str = "enricher", pipeline: dict[str, Any] | None = None,
                       **commit: Any) -> ComponentProcess:
        """An enricher replica: ``name`` makes its instance (and transactional) id, the group is shared;
        ``pipeline`` its ``[pipeline]`` settings, ``commit`` settings on top of a short transaction
        timeout."""
        t = self.topics
        config = {
            "instance_id": f"{self.prefix}-{name}", "group_id": f"{self.prefix}-enricher",
            "transactional_id_prefix": f"{self.prefix}-enricher",
            "kafka": {"bootstrap": self.bootstrap,
                      "librdkafka": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}},
            "commit": {"transaction_timeout_ms": 10000, **commit},
            "log": {"level": "INFO"},
            "topics": {f: getattr(t, f) for f in KafkaTopics.__dataclass_fields__},
            "pipeline": pipeline or {},
        }
        enricher = ComponentProcess("enricher", name, config, self.workdir).start()
        self.enrichers.append(enricher)
        assert enricher.wait_healthy(60), f"{name} not healthy; see {enricher.log_path}"
        return enricher

    def agent(self, device: str, *, events: int, rate: float | None = 200.0,
              mqtt: dict[str, Any] | None = None, **forwarder: Any) -> ComponentProcess:
        """An agent with a simulated source of ``events`` readings at ``rate`` per second (``None``: as
        fast as it commits), ``forwarder`` settings on top of short receipt timeouts."""
        config = {
            "device_id": device, "state_dir": str(self.workdir / device),
            "mqtt": {"url": self.mqtt_url, "topic_prefix": self.prefix, **(mqtt or {})},
            "log": {"level": "INFO"},
            "simulated": {"enabled": True, "interval": 1.0 / rate if rate else 0.0, "limit": events,
                          "seed": 7},
            "systemd": {"notify": False},
            "forwarder": {"reconnect_initial": 0.1, "reconnect_max": 1.0, "receipt_timeout": 3.0,
                          "receipt_timeout_max": 10.0, **forwarder},
        }
        proc = ComponentProcess("agent", device, config, self.workdir)
        self.agents[device] = proc
        return proc

    def status(self, device: str) -> dict[str, Any]:
        try:
            return read_status(self.workdir / device / "outbox.db")
        except Exception:  # not created yet
            return {}

    def committed(self, device: str) -> int:
        seqs: Mapping[str, int] = self.status(device).get("last_seq", {})
        return seqs.get(device, 0)

    # -- reading back, independently -------------------------------------------------------------

    def processed(self) -> Counter[Key]:
        return counts(read_topic(self.bootstrap, self.topics.processed, idle=1.0), set(self.agents))

    def raw(self) -> Counter[Key]:
        return counts(read_topic(self.bootstrap, self.topics.raw, idle=1.0), set(self.agents))

    def wait_processed(self, expected: set[Key], timeout: float = 120.0) -> Counter[Key]:
        """Until ``expected`` are all in processed (read_committed); returns the final counts."""
        last: Counter[Key] = Counter()

        def done() -> bool:
            nonlocal last
            self.supervise()
            last = self.processed()
            return expected <= set(last)

        try:
            wait_for(done, timeout, "every committed event in iot.events.processed", every=1.0)
        except AssertionError:
            missing = sorted(expected - set(last))
            raise AssertionError(f"{len(missing)} of {len(expected)} events missing from processed, "
                                 f"first {missing[:10]}; logs in {self.workdir}") from None
        return last

    def supervise(self) -> None:
        """Restart a bridge or enricher that exited, as systemd (``Restart=on-failure``) or compose
        would: a fenced or fatally failed component exits non-zero by design."""
        for proc in [*self.bridges, *self.enrichers]:
            if proc.proc is not None and not proc.running:
                self.restarts.append(f"{proc.name} exited {proc.proc.returncode}")
                proc.start()

    def expected(self, device: str) -> set[Key]:
        """Every (device, epoch, seq) the device's outbox committed, from its own status."""
        status = self.status(device)
        epoch = status.get("epoch", "")
        return {(device, epoch, seq) for seq in range(1, self.committed(device) + 1)}

    def stop(self) -> None:
        for proc in [*self.agents.values(), *self.bridges, *self.enrichers]:
            proc.kill()


@pytest.fixture
def pipeline(tmp_path: Path, request: pytest.FixtureRequest, unique_name: Callable[[str], str]) -> Iterator[
        Callable[..., Pipeline]]:
    """``pipeline(mqtt_url=..., bootstrap=..., partitions=..., replication_factor=...)``: a
    :class:`Pipeline` on the given brokers (default: the session's); its processes are killed at the
    end."""
    made: list[Pipeline] = []

    def make(mqtt_url: str | None = None, bootstrap: str | None = None, **topics: int) -> Pipeline:
        name = unique_name("p").split("-", 1)[1][-24:].strip("-").lower()
        if mqtt_url is None or bootstrap is None:  # the session's brokers only when asked for: a test on
            brokers: BrokerAddresses = request.getfixturevalue("brokers")  # a cluster starts no other Kafka
            mqtt_url, bootstrap = mqtt_url or brokers.mqtt_url, bootstrap or brokers.kafka_bootstrap
        p = Pipeline(tmp_path / f"pipeline-{len(made)}", mqtt_url, bootstrap, name, **topics)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()
