"""What replication costs on one machine: `acks=all` produce rates on the three-node local cluster (RF 3,
min ISR 2), with one node killed, against one node at RF 1 in the same run; and the cluster's own times
(start, SIGKILL of a leader until it is out of every ISR, restart until nothing is under-replicated,
stop).

All nodes share the machine's cores with the producer: the ratio is the cost of replication per record
here, not the throughput of a cluster of real machines. The records are one repeated byte (lz4 makes them
almost nothing on the wire): the broker's per-record work, not bytes.

    .venv/bin/python -m bench.kafka_replication [--records 100000] [--size 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from edgebridge.devbrokers import KafkaCluster, LocalBrokers
from edgebridge.devbrokers._process import wait_until

PRODUCER = {"enable.idempotence": True, "acks": "all", "linger.ms": 5, "compression.type": "lz4"}


def topic(bootstrap: str, replicas: int) -> str:
    name = f"repl-{uuid.uuid4().hex[:6]}"
    config = {"min.insync.replicas": str(replicas - 1)} if replicas > 1 else {}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, 3, replicas, config=config)])[name].result(30)
    assert wait_until(lambda: name in admin.list_topics(timeout=10).topics, 30)
    return name


def produce(bootstrap: str, name: str, records: int, size: int) -> float:
    """Records/s of one idempotent acks=all producer, from the first produce to the last confirmation."""
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER})
    failures: list[Any] = []
    value = b"x" * size
    began = time.monotonic()
    for i in range(records):
        while True:
            try:
                producer.produce(name, value, f"dev-{i % 1000}",
                                 on_delivery=lambda err, _m: err and failures.append(err))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(300) == 0 and not failures, failures[:3]
    return records / (time.monotonic() - began)


def rates(bootstrap: str, replicas: int, args: argparse.Namespace) -> list[float]:
    return [produce(bootstrap, topic(bootstrap, replicas), args.records, args.size)
            for _ in range(args.repeats)]


def show(label: str, values: list[float]) -> float:
    median = statistics.median(values)
    print(f"{label:44} {median:>10,.0f} rec/s  ({', '.join(f'{v:,.0f}' for v in values)})", flush=True)
    return median


def timed(fn: Any) -> float:
    began = time.monotonic()
    fn()
    return time.monotonic() - began


def under_replicated(cluster: KafkaCluster, name: str | None = None) -> list[dict[str, Any]]:
    parts = cluster.describe().get("partitions", [])
    return [p for p in parts if (name is None or p["topic"] == name) and len(p["isr"]) < len(p["replicas"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=500, help="bytes per record value")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"producer: {PRODUCER}, {args.records} records of {args.size} B, 3 partitions, "
          f"{args.repeats} repeats", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-repl-") as tmp:
        single = LocalBrokers(Path(tmp) / "single", only=("kafka",))
        try:
            single.up()
            baseline = show("one node, RF 1 (baseline)", rates(single.kafka_bootstrap, 1, args))
        finally:
            single.down()
        local = LocalBrokers(Path(tmp) / "three", only=("kafka",), kafka_nodes=3)
        try:
            print(f"up, three nodes, topics created: {timed(local.up):.1f} s", flush=True)
            cluster = local.kafka_cluster
            print("node RSS MB after up: " + ", ".join(str(n.rss_mb()) for n in cluster.nodes), flush=True)
            ours = show("three nodes, RF 3, min ISR 2", rates(cluster.bootstrap, 3, args))
            victim_topic = topic(cluster.bootstrap, 3)
            parts = cluster.describe()["partitions"]
            victim = next(p["leader"] for p in parts if p["topic"] == victim_topic and p["partition"] == 0)
            killed = time.monotonic()
            cluster.node(victim).kill()
            assert wait_until(lambda: len(under_replicated(cluster, victim_topic)) == 3, 120, 0.5)
            print(f"SIGKILL of node {victim} (a leader) until out of every ISR: "
                  f"{time.monotonic() - killed:.1f} s", flush=True)
            degraded = show("three nodes, one killed (ISR 2)", rates(cluster.bootstrap, 3, args))
            restarted = time.monotonic()
            cluster.start()
            assert wait_until(lambda: not under_replicated(cluster), 180, 0.5)
            print(f"restart until nothing under-replicated: {time.monotonic() - restarted:.1f} s", flush=True)
        finally:
            print(f"down, three nodes: {timed(local.down):.1f} s", flush=True)
        print(f"ratio RF 3 / RF 1: {ours / baseline:.2f}; one node down / RF 1: {degraded / baseline:.2f}")


if __name__ == "__main__":
    main()
