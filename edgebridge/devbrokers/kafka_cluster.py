"""A local Kafka of one or several KRaft nodes: `edgebridge brokers up --kafka-nodes 3`.

One node is the single-node :class:`Kafka` as before, in ``<brokers>/kafka``. Several nodes are
several :class:`Kafka` processes of one cluster (one cluster id), each in ``<brokers>/kafka-N``, and
each both broker and controller ("combined" mode): the controller quorum has as many voters as
there are nodes, so a three-node cluster keeps its quorum, and serves, with any one node down. (One
controller and two plain brokers would be cheaper by a few threads, and would lose everything with
the controller's node.)

What follows the node count (see :class:`KafkaOptions`): the replication factor of the internal
topics (``__consumer_offsets``, ``__transaction_state``, the share coordinator's) and of topics
created without one is ``min(3, nodes)``, their ``min.insync.replicas`` one less (at least 1). The
internal topics are created while every node is up (:meth:`KafkaCluster.warm_up`): created lazily
later, with a node down, they could not get their three replicas and groups or transactions would
not start.

The nodes start together: a combined node answers clients only once the quorum has elected a
leader, which needs a majority of the nodes running, so waiting for node 1 before starting node 2
would wait forever. Ports are chosen once for the whole cluster (each node's controller port is in
every node's ``controller.quorum.voters``) and kept across restarts; a node restarted alone keeps
its own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edgebridge.devbrokers._process import free_port, port_is_free, wait_until
from edgebridge.devbrokers.kafka import Kafka, KafkaOptions, new_cluster_id
from edgebridge.devbrokers.probes import KafkaMetadata, PartitionState, kafka_metadata
from edgebridge.errors import BrokerStartError

__all__ = ["MAX_NODES", "KafkaCluster", "cluster_heap"]

MAX_NODES = 9
CLUSTER_HEAP = "384m"  # per node: three JVMs on 2 cores and a few GB; EDGEBRIDGE_KAFKA_HEAP overrides


def cluster_heap() -> str:
    return os.environ.get("EDGEBRIDGE_KAFKA_HEAP") or CLUSTER_HEAP


class KafkaCluster:
    """``nodes`` Kafka nodes under ``state_dir``; ``saved`` is what :meth:`describe` wrote last time."""

    name = "kafka"

    def __init__(self, state_dir: Path, nodes: int = 1, options: KafkaOptions | None = None,
                 saved: Mapping[str, Any] | None = None) -> None:
        if not 1 <= nodes <= MAX_NODES:
            raise ValueError(f"a local Kafka has 1 to {MAX_NODES} nodes, not {nodes}")
        self.state_dir = Path(state_dir).resolve()
        self.size = nodes
        saved = saved or {}
        if nodes == 1:
            base = options or KafkaOptions(port=saved.get("port", 0),
                                           controller_port=saved.get("controller_port", 0))
            node = Kafka(self.state_dir / "kafka", base)
            node.pid, node.ready_seconds = saved.get("pid"), saved.get("ready_seconds")
            self.nodes = [node]
            return
        if options is not None and options.security is not None:
            raise ValueError("a secured local Kafka is single-node only")
        self._base = options or KafkaOptions(heap=cluster_heap())
        saved_nodes = list(saved.get("nodes", []))
        self._cluster_id = saved.get("cluster_id") or self._formatted_id() or new_cluster_id()
        ports = [(int(s.get("port", 0)), int(s.get("controller_port", 0))) for s in saved_nodes]
        self.nodes = self._make_nodes(ports if len(ports) == nodes else [(0, 0)] * nodes)
        for node, info in zip(self.nodes, saved_nodes, strict=False):
            node.pid, node.ready_seconds = info.get("pid"), info.get("ready_seconds")

    # -- layout ------------------------------------------------------------------------------
    def _folder(self, node_id: int) -> Path:
        return self.state_dir / f"kafka-{node_id}"

    def _formatted_id(self) -> str | None:
        """The cluster id node 1's storage was formatted with, when it was."""
        try:
            return (self._folder(1) / "cluster.id").read_text().strip() or None
        except OSError:
            return None

    def _make_nodes(self, ports: Sequence[tuple[int, int]]) -> list[Kafka]:
        quorum = ",".join(f"{i}@127.0.0.1:{c}" for i, (_p, c) in enumerate(ports, start=1))
        rf = min(3, self.size)
        nodes = []
        for node_id, (port, controller) in enumerate(ports, start=1):
            options = KafkaOptions(
                port=port, controller_port=controller, version=self._base.version, heap=self._base.heap,
                num_partitions=self._base.num_partitions,
                internal_topic_partitions=self._base.internal_topic_partitions, extra=self._base.extra,
                cluster_id=self._cluster_id, node_id=node_id, quorum=quorum, replication_factor=rf)
            nodes.append(Kafka(self._folder(node_id), options))
        return nodes

    def _choose_ports(self) -> None:
        """Keep the saved ports when every one is free, else choose all anew (no node runs now)."""
        wanted = [p for n in self.nodes for p in (n.port, n.controller_port)]
        if all(wanted) and len(set(wanted)) == len(wanted) and all(port_is_free(p) for p in wanted):
            return
        chosen: list[int] = []
        while len(chosen) < 2 * self.size:
            port = free_port()  # two calls may return the same number: the socket is closed by then
            if port not in chosen:
                chosen.append(port)
        self.nodes = self._make_nodes([(chosen[2 * i], chosen[2 * i + 1]) for i in range(self.size)])

    # -- what clients use --------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def replication_factor(self) -> int:
        return min(3, self.size)

    def node(self, node_id: int) -> Kafka:
        return self.nodes[node_id - 1]

    # -- lifecycle -----------------------------------------------------------------------------
    def is_running(self) -> bool:
        """True when every node runs."""
        return all(n.is_running() for n in self.nodes)

    def start(self, timeout: float = 180.0) -> None:
        """Start the nodes that do not run (together) and wait until the cluster serves with all of
        them; BrokerStartError naming the node otherwise (the nodes this call started are stopped)."""
        down = [n for n in self.nodes if not n.is_running()]
        if not down:
            return
        if self.size == 1:
            self.nodes[0].start(timeout=timeout)
            return
        if len(down) == self.size:
            self._refuse_another_size()
            self._choose_ports()
            down = list(self.nodes)
        with ThreadPoolExecutor(len(down)) as pool:
            futures = [pool.submit(n.start, timeout) for n in down]
            errors = [f.exception() for f in futures]
        failed = next((e for e in errors if e is not None), None)
        if failed is None and not wait_until(self._all_registered, timeout, interval=0.5):
            failed = BrokerStartError("kafka", f"the nodes run, but they did not all register with the "
                                      f"controller quorum within {timeout:.0f}s", str(down[0].log_path))
        if failed is not None:
            for node in down:
                node.stop()
            raise failed

    def formatted_nodes(self) -> int:
        """How many nodes' storage is formatted in this folder (kafka-1, kafka-2, ... in a row)."""
        count = 0
        while (self._folder(count + 1) / "cluster.id").exists():
            count += 1
        return count

    def _refuse_another_size(self) -> None:
        """Data formatted for a cluster of another size holds its partitions' replicas and its controller
        quorum for that size: starting N nodes on it would leave replicas on nodes that never come, or
        a quorum that never forms. Refused in one line instead."""
        formatted = self.formatted_nodes()
        if formatted and formatted != self.size:
            raise BrokerStartError("kafka", f"{self.state_dir} holds the data of a {formatted}-node Kafka, "
                                   f"{self.size} nodes asked: start it with --kafka-nodes {formatted}, or "
                                   f"remove its kafka-1 ... kafka-{formatted} folders to start afresh")

    def _all_registered(self) -> bool:
        try:
            return len(self.metadata().brokers) == self.size
        except OSError:
            return False

    def warm_up(self, timeout: float = 60.0) -> None:
        """Have Kafka create ``__consumer_offsets`` and ``__transaction_state`` now, while every node
        is up, so that they get their full replication factor (a coordinator lookup creates each).

        Right after the nodes register, the first lookups may meet a coordinator still being elected
        (``NOT_COORDINATOR``, ``COORDINATOR_NOT_AVAILABLE``): each step is retried until ``timeout``.
        """
        from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

        quiet = {"bootstrap.servers": self.bootstrap, "log_level": 0}
        deadline = time.monotonic() + timeout

        def transactions() -> None:
            # a new producer each attempt: one whose init_transactions failed may not be reusable
            producer = Producer({**quiet, "transactional.id": "edgebridge-brokers-warm-up"})
            producer.init_transactions(max(1.0, min(10.0, deadline - time.monotonic())))

        def groups() -> None:
            consumer = Consumer({**quiet, "group.id": "edgebridge-brokers-warm-up"})
            try:
                consumer.committed([TopicPartition("__edgebridge_warm_up", 0)],
                                   timeout=max(1.0, min(10.0, deadline - time.monotonic())))
            finally:
                consumer.close()

        for what, step in (("transactions", transactions), ("consumer groups", groups)):
            while True:
                try:
                    step()
                    break
                except KafkaException as exc:
                    if time.monotonic() >= deadline:
                        raise BrokerStartError("kafka", f"{what} do not start within {timeout:.0f}s: "
                                               f"{exc.args[0]}", str(self.nodes[0].log_path)) from None
                    time.sleep(0.5)

    def create_contract_topics(self, partitions: int = 3) -> list[str]:
        """The wire contract's topics (default names) with the cluster's replication factor and
        min ISR one less; the names created (existing ones keep theirs, see `topics create`)."""
        from edgebridge.kafka_admin import ensure_topics

        return ensure_topics(self.bootstrap, partitions=partitions,
                             replication_factor=self.replication_factor)

    def detach(self) -> None:
        for node in self.nodes:
            node.detach()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node (together: one by one, the last ones would wait on a lost quorum)."""
        with ThreadPoolExecutor(self.size) as pool:
            for future in [pool.submit(n.stop, timeout) for n in self.nodes]:
                future.result()

    # -- what `status` shows ---------------------------------------------------------------------
    def metadata(self) -> KafkaMetadata:
        """The cluster's metadata, every topic included, from the first node that answers."""
        last: OSError = ConnectionError("no node runs")
        for node in self.nodes:
            if not node.is_running():
                continue
            try:
                return kafka_metadata("127.0.0.1", node.port, topics=True)
            except OSError as exc:
                last = exc
        raise last

    def describe(self) -> dict[str, Any]:
        """What `status` shows and state.json keeps: the one node's description as before, or the
        nodes' and the partitions' with their leaders and in-sync replicas."""
        if self.size == 1:
            return self.nodes[0].describe()
        out: dict[str, Any] = {"nodes": [{**n.describe(), "running": n.is_running()} for n in self.nodes],
                               "bootstrap": self.bootstrap,
                               "cluster_id": self._cluster_id, "replication_factor": self.replication_factor}
        try:
            meta = self.metadata()
        except OSError as exc:
            out["metadata_error"] = str(exc)
            return out
        registered = {b[0] for b in meta.brokers}
        for info in out["nodes"]:
            info["registered"] = info["node_id"] in registered
        out["partitions"] = [_partition(p) for p in sorted(meta.partitions,
                                                           key=lambda p: (p.topic, p.partition))]
        out["under_replicated"] = sum(1 for p in meta.partitions if len(p.isr) < len(p.replicas))
        return out


def _partition(p: PartitionState) -> dict[str, Any]:
    return {"topic": p.topic, "partition": p.partition, "leader": p.leader, "replicas": list(p.replicas),
            "isr": list(p.isr), "internal": p.internal, "error": p.error}
