"""`edgebridge brokers up --kafka-nodes 3`: a real three-node KRaft cluster (every node broker and
controller), driven through the CLI as an operator would; the contract's topics replicated 3 times
with min ISR 2, the internal topics likewise, the components' producer settings working on it, one
node killed without losing an acknowledged record, `topics create --replication-factor` on it, and
`down` leaving no process behind.

The cluster is the session's shared one (``kafka_cluster`` in tests/conftest.py, which hands it out
healthy to each test; tests/e2e/test_scaleout.py runs on it too), so what a test writes goes to topics
of its own. The test of `down` is marked to run last among the tests on the cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from edgebridge.devbrokers._process import pid_matches, wait_until
from edgebridge.envelope import new_reading
from edgebridge.kafka_admin import ensure_topics
from edgebridge.ops.config import RedriveSettings
from edgebridge.settings import KafkaSettings
from edgebridge.topics import KafkaTopics
from enricher.config import EnricherConfig
from enricher.processor import producer_config
from tests.conftest import BrokerAddresses
from tests.enricher.conftest import InProcess, enricher_config, produce, read_all, values
from tests.kafka_cluster import NODES, Cluster, partitions

pytestmark = pytest.mark.brokers

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cluster(kafka_cluster: Cluster) -> Cluster:
    return kafka_cluster


def _replicated_topic(bootstrap: str, partitions: int = 3) -> str:
    name = f"cluster-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, NODES, config={"min.insync.replicas": "2"})])
    futures[name].result(30)
    return name


def test_data_of_a_cluster_of_another_size_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """Three nodes' formatted storage, two nodes asked: one line, exit 1, no process (no JVM is needed
    to show it: the refusal comes before any start)."""
    state = tmp_path / "brokers"
    for node in (1, 2, 3):
        (state / f"kafka-{node}").mkdir(parents=True)
        (state / f"kafka-{node}" / "cluster.id").write_text("MkU3OEVBNTcwNTJENDM2Qk\n")
    result = Cluster(state).cli("up", "--kafka-nodes", "2")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"edgebridge brokers: kafka: {state.resolve()} holds the data of a 3-node Kafka, 2 nodes asked: "
        "start it with --kafka-nodes 3, or remove its kafka-1 ... kafka-3 folders to start afresh"]
    assert not any((state / f"kafka-{node}" / "kafka.log").exists() for node in (1, 2, 3))


def test_status_shows_each_node_the_leaders_and_the_isr(cluster: Cluster) -> None:
    code, info = cluster.status()
    assert code == 0
    nodes = info["nodes"]
    assert [n["node_id"] for n in nodes] == [1, 2, 3]
    assert all(n["running"] and n["registered"] for n in nodes), nodes
    assert all(pid_matches(n["pid"], f"-Dedgebridge.state={cluster.state}/kafka-{n['node_id']}\0")
               for n in nodes)
    assert len({n["port"] for n in nodes} | {n["controller_port"] for n in nodes}) == 2 * NODES
    internal = {"__consumer_offsets", "__transaction_state"}
    wanted = set(KafkaTopics().names()) | internal
    parts = partitions(info, wanted)
    assert {p["topic"] for p in parts} == wanted  # `up` created them all, the internal ones included
    for p in parts:
        assert sorted(p["replicas"]) == [1, 2, 3] and sorted(p["isr"]) == [1, 2, 3], p
        assert p["leader"] in p["replicas"], p
    assert info["under_replicated"] == 0
    text = cluster.cli("status")
    assert text.returncode == 0, text.stderr
    assert "kafka      running  3 nodes" in text.stdout
    for n in nodes:
        assert f"node {n['node_id']}   running  127.0.0.1:{n['port']}  pid={n['pid']}" in text.stdout
    raw = next(p for p in parts if p["topic"] == "iot.events.raw" and p["partition"] == 0)
    row = f"iot.events.raw{'':18} {0:>4}  {raw['leader']:>6}  {','.join(map(str, raw['replicas'])):10} "
    assert row in text.stdout
    assert f"under-replicated partitions: 0 of {len(info['partitions'])}" in text.stdout


def test_contract_topics_rf3_min_isr_2_and_internal_topics_follow(cluster: Cluster) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    markers = RedriveSettings().marker_topic  # the redrive's, part of the topic plan
    names = [*KafkaTopics().names(), markers]
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names])
    min_isr = {r.name: f.result(30)["min.insync.replicas"].value for r, f in futures.items()}
    assert min_isr == dict.fromkeys(names, "2")
    metadata = admin.list_topics(timeout=30)
    for name in names:
        assert {len(p.replicas) for p in metadata.topics[name].partitions.values()} == {3}, name
    compacted = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n)
                                        for n in (KafkaTopics().enricher_state, markers)])
    assert all(f.result(30)["cleanup.policy"].value == "compact" for f in compacted.values())
    broker = admin.describe_configs([ConfigResource(ResourceType.BROKER, "1")])
    config = next(iter(broker.values())).result(30)
    assert {k: config[k].value for k in ("offsets.topic.replication.factor",
                                         "transaction.state.log.replication.factor",
                                         "transaction.state.log.min.isr", "default.replication.factor",
                                         "min.insync.replicas")} == {
        "offsets.topic.replication.factor": "3", "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2", "default.replication.factor": "3", "min.insync.replicas": "2"}


def test_env_prints_a_bootstrap_listing_every_node(cluster: Cluster) -> None:
    env = cluster.cli("env")
    assert env.returncode == 0, env.stderr
    _code, info = cluster.status()
    listed = env.stdout.strip()
    assert listed == "EDGEBRIDGE_KAFKA_BOOTSTRAP=" + ",".join(f"127.0.0.1:{n['port']}" for n in info["nodes"])
    # each address alone is a way in: a client that knows only node 3 finds the whole cluster
    last = listed.rsplit(",", 1)[1]
    assert len(AdminClient({"bootstrap.servers": last}).list_topics(timeout=30).brokers) == NODES


def test_idempotent_and_transactional_producers_work(cluster: Cluster) -> None:
    bootstrap = cluster.bootstrap
    topic = _replicated_topic(bootstrap)
    idempotent = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    failures: list[Any] = []
    for i in range(300):
        idempotent.produce(topic, f"idem-{i}".encode(), f"dev-{i % 7}",
                           on_delivery=lambda err, _m: failures.append(err) if err else None)
    assert idempotent.flush(60) == 0 and failures == []
    config = EnricherConfig(instance_id=uuid.uuid4().hex[:8], kafka=KafkaSettings(bootstrap))
    settings = producer_config(config)
    assert settings["acks"] == "all" and settings["transactional.id"] == config.transactional_id
    txn = Producer(settings)
    txn.init_transactions(60)
    txn.begin_transaction()
    for i in range(100):
        txn.produce(topic, f"aborted-{i}".encode(), f"dev-{i % 7}")
    txn.flush(60)  # on the brokers before the abort
    txn.abort_transaction(60)
    txn.begin_transaction()
    for i in range(100):
        txn.produce(topic, f"committed-{i}".encode(), f"dev-{i % 7}")
    txn.commit_transaction(60)
    values = [m.value() for m in read_all(bootstrap, topic, 400)]
    assert sorted(values) == sorted([f"idem-{i}".encode() for i in range(300)]
                                    + [f"committed-{i}".encode() for i in range(100)])


def test_the_enricher_runs_exactly_once_on_the_replicated_contract_topics(cluster: Cluster) -> None:
    """The real enricher (transactions, its compacted state topic, offsets in the transaction, the
    start-up sweep) on the contract's topics created as `up` creates them, RF 3 and min ISR 2, under
    names of this test's own (the cluster is shared: the demo of the scale-out tests writes the default
    names): duplicates in, each once out."""
    bootstrap = cluster.bootstrap
    suffix = uuid.uuid4().hex[:8]
    topics = KafkaTopics(**{f: f"{getattr(KafkaTopics(), f)}.{suffix}"
                            for f in KafkaTopics.__dataclass_fields__})
    assert sorted(ensure_topics(bootstrap, topics, replication_factor=NODES)) == sorted(topics.names())
    events = [(f"dev-{d}", new_reading(f"dev-{d}", s, {"temperature": {"v": 20.0 + s, "u": "Cel"}}))
              for d in range(5) for s in range(1, 41)]
    produce(bootstrap, topics.raw, [*events, *events[::4]])  # 200 events and 50 resends
    config = enricher_config(BrokerAddresses("mqtt://unused", bootstrap), topics, "cluster-enricher")
    with InProcess(config) as run:
        read_all(bootstrap, topics.processed, 200, timeout=90)
    assert run.error is None
    got = values(read_all(bootstrap, topics.processed))
    assert sorted((e["deviceid"], e["seq"]) for e in got) == sorted((d, e.seq) for d, e in events)
    assert run.processor.metrics.duplicates._value.get() == 50
    state = read_all(bootstrap, topics.enricher_state)
    assert state, "the dedup state was written to the replicated state topic"


def test_topics_create_replication_factor_three(cluster: Cluster) -> None:
    """`edgebridge topics create --replication-factor` on the cluster: RF 3 sets min ISR 2; asking for
    2 later changes nothing; 4 is refused in one line (from the former test_topics_replicated.py)."""
    bootstrap = cluster.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = KafkaTopics(**{f: f"rf3-{f}" for f in KafkaTopics.__dataclass_fields__})

    def topics(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
        env.update({f"EDGEBRIDGE_TOPICS_{f.upper()}": getattr(names, f)
                    for f in KafkaTopics.__dataclass_fields__})
        env["EDGEBRIDGE_KAFKA_BOOTSTRAP"] = bootstrap
        return subprocess.run([sys.executable, "-m", "edgebridge", "topics", *args], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=120)

    def min_isr() -> set[str]:
        futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names.names()])
        return {f.result(30)["min.insync.replicas"].value for f in futures.values()}

    result = topics("create", "--replication-factor", "3", "--partitions", "2")
    assert result.returncode == 0, result.stderr
    assert f"created {names.raw}: 2 partitions, replication factor 3, min.insync.replicas=2" in result.stdout
    metadata = admin.list_topics(timeout=30)
    for name in names.names():
        assert all(len(p.replicas) == 3 for p in metadata.topics[name].partitions.values()), name
    assert min_isr() == {"2"}
    # asked again for two replicas: the replication factor is only reported, and min ISR stays the one
    # of the factor the topics have
    dry = topics("create", "--replication-factor", "2", "--partitions", "2", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "min.insync.replicas=1" not in dry.stdout
    assert f"note {names.raw}: has replication factor 3, 2 asked: not changed" in dry.stdout
    assert min_isr() == {"2"}  # the dry run changed nothing
    refused = topics("create", "--replication-factor", "4")
    assert refused.returncode == 1
    assert "replication factor 4 needs at least 4 brokers, the cluster has 3" in refused.stderr


def test_a_killed_node_loses_nothing_acknowledged_and_rejoins_the_isr(cluster: Cluster) -> None:
    bootstrap = cluster.bootstrap
    topic = _replicated_topic(bootstrap)
    assert wait_until(lambda: len(partitions(cluster.status()[1], {topic})) == 3, 30)
    _code, info = cluster.status()
    # the leader of partition 0: its death forces a leader election as well as a smaller ISR
    victim_id = next(p["leader"] for p in partitions(info, {topic}) if p["partition"] == 0)
    victim = cluster.kafka.node(victim_id)
    pid = victim.pid
    assert pid is not None and victim.is_running()
    victim.kill()  # SIGKILL; raises unless the process is gone
    assert not pid_matches(pid, victim.marker) and not victim.is_running()

    def isr_without_victim() -> bool:
        parts = partitions(cluster.status()[1], {topic})
        return len(parts) == 3 and all(victim_id not in p["isr"] and p["leader"] not in (-1, victim_id)
                                       for p in parts)

    # the cluster itself saw the node go (fenced, out of every ISR), before we judge anything
    assert wait_until(isr_without_victim, 90, interval=1.0), cluster.status()[1]
    code, degraded = cluster.status()
    assert code == 3 and not next(n for n in degraded["nodes"] if n["node_id"] == victim_id)["running"]
    assert degraded["under_replicated"] > 0
    assert "kafka      degraded 3 nodes" in cluster.cli("status").stdout

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    delivered: list[bytes] = []
    failures: list[Any] = []

    def report(err: Any, msg: Any) -> None:
        if err:
            failures.append(err)
        else:
            delivered.append(msg.value())

    n = 3000
    for i in range(n):
        producer.produce(topic, f"v{i}".encode(), f"dev-{i % 11}", on_delivery=report)
        producer.poll(0)
    assert producer.flush(120) == 0
    assert failures == [] and len(delivered) == n
    values = [m.value() for m in read_all(bootstrap, topic, n)]
    assert len(values) == n and set(values) == {f"v{i}".encode() for i in range(n)}  # 0 lost, 0 twice

    up = cluster.cli("up")  # starts the nodes that do not run: the dead one, same ports and data
    assert up.returncode == 0, up.stderr
    restarted = cluster.kafka.node(victim_id)
    assert restarted.pid not in (None, pid) and restarted.is_running()

    def isr_back() -> bool:
        code, info = cluster.status()
        parts = partitions(info, {topic})
        return code == 0 and info["under_replicated"] == 0 and all(len(p["isr"]) == 3 for p in parts)

    assert wait_until(isr_back, 120, interval=1.0), cluster.status()[1]


def test_up_with_another_node_count_is_refused_while_the_cluster_runs(cluster: Cluster) -> None:
    pids_before = [n["pid"] for n in cluster.status()[1]["nodes"]]
    result = cluster.cli("up", "--kafka-nodes", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("edgebridge brokers: kafka: a Kafka of 3 node(s) runs from "
                                     f"{cluster.state}, 1 asked: `edgebridge brokers down` first")
    code, info = cluster.status()
    assert code == 0 and [n["pid"] for n in info["nodes"]] == pids_before
    assert not (cluster.state / "kafka").exists()  # no single node was formatted beside the cluster


@pytest.mark.stops_kafka_cluster
def test_down_stops_every_node(cluster: Cluster) -> None:
    """Last of the tests on the shared cluster (its marker): it stops the cluster; ``kafka_cluster``
    would start it again for a test after it."""
    _code, info = cluster.status()
    pids = {n["node_id"]: n["pid"] for n in info["nodes"]}
    assert all(pid_matches(pid, f"-Dedgebridge.state={cluster.state}/kafka-{i}\0") for i, pid in pids.items())
    down = cluster.cli("down")
    assert down.returncode == 0, down.stderr
    for node_id, pid in pids.items():
        marker = f"-Dedgebridge.state={cluster.state}/kafka-{node_id}\0"
        assert wait_until(lambda p=pid, m=marker: not pid_matches(p, m), 10), f"node {node_id} pid {pid} runs"
    code, info = cluster.status()
    assert code == 3 and not any(n["running"] for n in info["nodes"])
    assert "kafka      stopped  3 nodes" in cluster.cli("status").stdout
