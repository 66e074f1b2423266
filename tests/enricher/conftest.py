"""Fixtures of the enricher tests: a topic set per test, raw producers, read_committed readers, runners."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from edgebridge.config import load_config
from edgebridge.envelope import Event, encode
from edgebridge.topics import KafkaTopics
from enricher.config import EnricherConfig
from tests.conftest import BrokerAddresses

ROOT = Path(__file__).resolve().parents[2]
COMPACT = {"cleanup.policy": "compact"}


@dataclass(frozen=True)
class Topics:
    kafka: KafkaTopics
    partitions: int


@pytest.fixture
def make_topics(kafka_topic: Callable[..., str]) -> Callable[[int], KafkaTopics]:
    def make(partitions: int = 1) -> KafkaTopics:
        return KafkaTopics(
            raw=kafka_topic("raw", partitions),
            processed=kafka_topic("processed", 2),
            deadletter=kafka_topic("dlq"),
            alerts=kafka_topic("alerts"),
            devices=kafka_topic("devices", 1, COMPACT),
            enricher_state=kafka_topic("state", partitions, COMPACT),
        )

    return make


def enricher_config(brokers: BrokerAddresses, topics: KafkaTopics, group: str, instance: str = "i0",
                    **over: Any) -> EnricherConfig:
    base: dict[str, Any] = {
        "instance_id": instance, "group_id": group, "transactional_id_prefix": group,
        "kafka.bootstrap": brokers.kafka_bootstrap, "metrics.enabled": False,
        "kafka.librdkafka": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"},
        "commit.transaction_timeout_ms": 10000,
        **{f"topics.{k}": v for k, v in vars_of(topics).items()},
    }
    base.update(over)
    return load_config(EnricherConfig, None, env={}, overrides=base)


def vars_of(topics: KafkaTopics) -> dict[str, str]:
    return {f: getattr(topics, f) for f in KafkaTopics.__dataclass_fields__}


def write_toml(path: Path, config: EnricherConfig) -> Path:
    from edgebridge.config import dump_config

    path.write_text(dump_config(config))
    return path


def produce(bootstrap: str, topic: str, records: list[tuple[str | None, bytes | Event]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for key, value in records:
        payload = encode(value) if isinstance(value, Event) else value
        while True:
            try:
                producer.produce(topic, payload, key.encode() if key is not None else None)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(30) == 0


def read_all(bootstrap: str, topic: str, expect: int | None = None, timeout: float = 60.0,
             isolation: str = "read_committed") -> list[Any]:
    """Every committed record of ``topic`` (read_committed, from the start): waits until at least
    ``expect`` are there and every partition is read to its end, or ``timeout``. With
    ``isolation="read_uncommitted"`` the records of aborted transactions are included."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False,
                         "isolation.level": isolation, "enable.partition.eof": True})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = sorted(meta.partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while True:
            consumer.assign([TopicPartition(topic, p, -2) for p in parts])
            records, eof = [], set()
            while len(eof) < len(parts) and time.monotonic() < deadline:
                for msg in consumer.consume(1000, 0.2):
                    if msg.error():
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            eof.add(msg.partition())
                        continue
                    records.append(msg)
            if expect is None or len(records) >= expect or time.monotonic() >= deadline:
                return records
            consumer.unassign()
            time.sleep(0.2)
    finally:
        consumer.close()


def values(msgs: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(m.value()) for m in msgs]


class InProcess:
    """A Processor on a thread of the test process (tests that do not kill it)."""

    def __init__(self, config: EnricherConfig) -> None:
        from enricher.processor import Processor

        self.processor = Processor(config)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.processor.run(self.stop)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> InProcess:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()
        if self.error is not None and exc[0] is None:
            raise self.error


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A throwaway PostgreSQL for the session (the sink tests). Under CI=true a failure fails."""
    import shutil
    import tempfile

    from edgebridge.devbrokers.postgres import Postgres
    from edgebridge.errors import EdgeBridgeError
    from tests.conftest import _unavailable

    # outside pytest's 0700 tmp: the server runs as the postgres user when we are root
    state = Path(tempfile.mkdtemp(prefix="edgebridge-pg-"))
    state.chmod(0o755)
    server = None
    try:
        server = Postgres(state)
        server.start()
    except EdgeBridgeError as exc:
        if server is not None:
            server.stop()
        shutil.rmtree(state, ignore_errors=True)
        _unavailable(f"postgres: {exc}")
    try:
        yield server
    finally:
        assert server is not None
        server.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def spawn_cli(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``edgebridge ARGS...`` as a subprocess (``env``: variables added to ours), logging to
    ``tmp_path/NAME.log``; killed at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"{name}.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "edgebridge", *args], stdout=log,
                                    stderr=subprocess.STDOUT,
                                    env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, cwd=ROOT)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


@pytest.fixture
def spawn_enricher(
    spawn_cli: Callable[..., subprocess.Popen[bytes]],
) -> Callable[[Path, str], subprocess.Popen[bytes]]:
    """``spawn_enricher(config, name)``: ``edgebridge enricher run --config FILE`` by :func:`spawn_cli`,
    logging to ``tmp_path/NAME-N.log`` where N counts the enrichers this test started (from 0)."""
    started = itertools.count()

    def start(config: Path, name: str = "enricher") -> subprocess.Popen[bytes]:
        return spawn_cli(f"{name}-{next(started)}", "enricher", "run", "--config", str(config))

    return start
