"""Session fixtures: one real Mosquitto and one real Kafka per test session, and factories on top.

The brokers are the ones named by ``EDGEBRIDGE_MQTT_URL`` / ``EDGEBRIDGE_KAFKA_BOOTSTRAP`` when both are
set, otherwise started here with the same code as `edgebridge brokers up`. Under ``CI=true`` a broker
that cannot start fails the run; elsewhere the tests that need it are skipped with the reason.

Isolation between tests comes from names, not from fresh brokers: every test gets its own MQTT topic
prefix, Kafka topics and consumer group from the factory fixtures. Tests that stop, kill or freeze a
broker ask ``private_brokers`` for their own instance instead, so they never disturb the others.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import pytest
from hypothesis import HealthCheck, settings

from edgebridge.devbrokers import KafkaOptions, LocalBrokers, MosquittoOptions
from edgebridge.devbrokers.base import ManagedBroker
from edgebridge.errors import EdgeBridgeError
from tests.kafka_cluster import NODES, Cluster

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Property tests judge correctness, not speed: a loaded two-core CI machine must not turn a slow
# example into a failure. In CI the examples are derandomized so that a run is reproducible.
settings.register_profile(
    "edgebridge", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=IN_CI
)
settings.load_profile("edgebridge")


@dataclass(frozen=True)
class BrokerAddresses:
    mqtt_url: str
    kafka_bootstrap: str

    @property
    def mqtt_host(self) -> str:
        return urlparse(self.mqtt_url).hostname or "127.0.0.1"

    @property
    def mqtt_port(self) -> int:
        return urlparse(self.mqtt_url).port or 1883


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"broker unavailable in CI: {message}", pytrace=False)
    pytest.skip(f"broker unavailable: {message}")


B = TypeVar("B", bound=ManagedBroker)


@contextlib.contextmanager
def running(broker: B, timeout: float = 120) -> Iterator[B]:
    """A broker of edgebridge.devbrokers started for a block and stopped after it; one that cannot
    start fails the test in CI and skips it elsewhere, as the session's brokers do."""
    try:
        broker.start(timeout=timeout)
    except EdgeBridgeError as exc:
        broker.stop()
        _unavailable(str(exc))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerAddresses]:
    """The session's real Mosquitto and Kafka."""
    url = os.environ.get("EDGEBRIDGE_MQTT_URL")
    bootstrap = os.environ.get("EDGEBRIDGE_KAFKA_BOOTSTRAP")
    if url and bootstrap:
        yield BrokerAddresses(url, bootstrap)
        return
    local = LocalBrokers(tmp_path_factory.mktemp("brokers"))
    try:
        local.up()
    except EdgeBridgeError as exc:
        local.down()
        _unavailable(str(exc))
    try:
        yield BrokerAddresses(local.mosquitto.url, local.kafka.bootstrap)
    finally:
        local.down()


@pytest.fixture(scope="session")
def shared_kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A three-node KRaft cluster (`brokers up --kafka-nodes 3`: contract topics RF 3, min ISR 2) for the
    session; stopped with `down` at its end, whatever happened. Tests take it through ``kafka_cluster``."""
    cluster = Cluster(tmp_path_factory.mktemp("kafka-cluster") / "brokers")
    up = cluster.cli("up", "--kafka-nodes", str(NODES))
    if up.returncode != 0:
        cluster.cli("down")
        _unavailable(up.stderr.strip() or up.stdout)
    try:
        yield cluster
    finally:
        cluster.cli("down")


@pytest.fixture
def kafka_cluster(shared_kafka_cluster: Cluster) -> Cluster:
    """The session's three-node cluster, healthy when the test starts: every node running, nothing
    under-replicated. One cluster serves every test on it (three JVMs cost the two cores a lot, and
    starting one takes 10-30 s), so isolation comes from names, as on the session's single Kafka: each
    test uses topics and groups of its own. A test that kills nodes restarts them itself; if it could
    not (it failed first, or it tested `down`), the nodes are started again here, before the next test
    (restoring before rather than after lets the last test stop the cluster without a restart)."""
    shared_kafka_cluster.restore()
    return shared_kafka_cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests on the shared cluster run one after the other, where the first of them was collected,
    so that its three JVMs do not idle through the rest of the suite; among them, file order is kept,
    except that a test marked ``stops_kafka_cluster`` goes last (nothing after it pays a restart)."""
    on_cluster = [item for item in items if "kafka_cluster" in getattr(item, "fixturenames", ())]
    if not on_cluster:
        return
    first = items.index(on_cluster[0])
    chosen = set(on_cluster)
    rest = [item for item in items if item not in chosen]
    on_cluster.sort(key=lambda item: item.get_closest_marker("stops_kafka_cluster") is not None)
    items[:] = rest[:first] + on_cluster + rest[first:]


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Names no other test uses: ``unique_name("raw")`` -> ``raw-test_x-1a2b3c4d``."""
    test = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:40]

    def make(prefix: str) -> str:
        return f"{prefix}-{test}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def mqtt_prefix(unique_name: Callable[[str], str]) -> str:
    """A topic prefix of this test's own, used where components take ``devices`` by default."""
    return unique_name("devices")


@pytest.fixture(scope="session")
def kafka_admin(brokers: BrokerAddresses) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": brokers.kafka_bootstrap})


@pytest.fixture
def kafka_topic(
    kafka_admin: Any, unique_name: Callable[[str], str]
) -> Callable[..., str]:
    """Create a topic of this test's own: ``kafka_topic("raw", partitions=3, config={...})``."""
    from confluent_kafka.admin import NewTopic

    def make(prefix: str = "topic", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = unique_name(prefix)
        futures = kafka_admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
        )
        futures[name].result(timeout=30)
        return name

    return make


@pytest.fixture
def consumer_group(unique_name: Callable[[str], str]) -> Callable[[], str]:
    return lambda: unique_name("group")


@pytest.fixture
def private_brokers(tmp_path: Path) -> Iterator[Callable[..., LocalBrokers]]:
    """Brokers of this test alone, for tests that stop, kill or freeze them.

    ``private_brokers("mosquitto", mosquitto=MosquittoOptions(...))`` starts and returns a
    :class:`LocalBrokers`; everything started is stopped when the test ends.
    """
    started: list[LocalBrokers] = []

    def start(
        *only: str, mosquitto: MosquittoOptions | None = None, kafka: KafkaOptions | None = None
    ) -> LocalBrokers:
        local = LocalBrokers(tmp_path / f"brokers-{len(started)}", mosquitto=mosquitto, kafka=kafka,
                             only=only or ("mosquitto", "kafka"))
        started.append(local)
        try:
            local.up()
        except EdgeBridgeError as exc:
            _unavailable(str(exc))
        return local

    yield start
    for local in started:
        local.down()
