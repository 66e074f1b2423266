"""An Apache Kafka 4.x node in KRaft mode (broker and controller in one JVM), for dev and tests: a
single-node Kafka, or one node of a local cluster (:mod:`edgebridge.devbrokers.kafka_cluster`).

Settings that matter on one small machine, and why:

* the internal topics' (offsets, transactions, share coordinator) replication factor and min ISR
  follow the cluster (``KafkaOptions.replication_factor``): 1 and 1 for a single node (with the
  defaults of 3, group commits and transactions would never become available), 3 and 2 for three;
* few partitions for ``__consumer_offsets`` and ``__transaction_state``: creating 50 of each on first
  use costs seconds on a two-core machine, for nothing;
* ``group.initial.rebalance.delay.ms=0``: a test's consumer joins at once instead of after 3 s;
* a small heap (``EDGEBRIDGE_KAFKA_HEAP``, default 512m).

With ``KafkaOptions(security=...)`` (files from :func:`edgebridge.deploy.kafka_auth.write_kafka_security`)
it is the deployment's Kafka in small: clients reach one SASL_SSL listener (SCRAM-SHA-512, TLS from the
deployment's CA), the StandardAuthorizer refuses what no ACL allows, the SCRAM users are created when
the storage is formatted, and the controller listener stays on 127.0.0.1 with a user of its own. The
readiness probe then speaks through librdkafka as admin (SASL over TLS is no small protocol to hand-roll).

Its identity is the cluster id written when the storage is formatted (``state_dir/cluster.id``): a
start is accepted only when the broker answering on our port reports that id.
"""

from __future__ import annotations

import base64
import os
import re
import struct
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgebridge.devbrokers._process import free_port, port_is_free
from edgebridge.devbrokers.base import ManagedBroker
from edgebridge.devbrokers.kafka_dist import KafkaDist, resolve_kafka
from edgebridge.devbrokers.probes import kafka_metadata
from edgebridge.errors import BrokerStartError

if TYPE_CHECKING:
    from edgebridge.deploy.kafka_auth import KafkaSecurity

__all__ = ["Kafka", "KafkaOptions", "new_cluster_id", "segment_end_offset"]


def new_cluster_id() -> str:
    """22 characters of URL-safe base64 without padding: the 16 bytes of a random UUID."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


@dataclass(frozen=True)
class KafkaOptions:
    port: int = 0
    controller_port: int = 0
    version: str | None = None
    heap: str = ""  # default: EDGEBRIDGE_KAFKA_HEAP or 512m
    num_partitions: int = 1
    internal_topic_partitions: int = 5
    # server.properties on top of ours, e.g. tests of a broker that refuses (no auto-creation, an
    # authorizer with ACLs): {"auto.create.topics.enable": "false"}
    extra: Mapping[str, str] = field(default_factory=dict)
    # a SASL_SSL broker with SCRAM users and ACLs instead of PLAINTEXT (off: nothing else changes)
    security: KafkaSecurity | None = None
    # the cluster id the storage is formatted with (default: a new one): nodes of one cluster share it
    cluster_id: str | None = None
    # One node of a replicated cluster (see kafka_cluster.py): its id, the controller quorum
    # (``controller.quorum.voters``; empty: this node alone) and the cluster's replication factor for
    # the internal topics and for topics created without one (min ISR is one less, at least 1).
    node_id: int = 1
    quorum: str = ""
    replication_factor: int = 1


class Kafka(ManagedBroker):
    name = "kafka"

    def __init__(self, state_dir: Path, options: KafkaOptions | None = None) -> None:
        super().__init__(state_dir)
        self.options = options or KafkaOptions()
        self.port = self.options.port
        self.controller_port = self.options.controller_port
        self.dist: KafkaDist = resolve_kafka(self.options.version)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def conf_path(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    def _java(self, main_class: str, *args: str, heap: str) -> list[str]:
        cmd = ["java", f"-Xms{min_heap(heap)}", f"-Xmx{heap}", "-XX:+UseG1GC",
               "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
               # Marks the command line with our state folder (see ManagedBroker.marker).
               f"-Dedgebridge.state={self.state_dir}"]
        if self.dist.log4j_config:
            cmd.append(f"-Dlog4j2.configurationFile={self.dist.log4j_config}")
        else:
            cmd += ["-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
                    "-Dorg.slf4j.simpleLogger.showDateTime=true",
                    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.coordinator=warn",
                    "-Dorg.slf4j.simpleLogger.log.state.change.logger=warn",
                    "-Dorg.slf4j.simpleLogger.log.kafka.log=warn",
                    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.storage=warn"]
        return [*cmd, "-cp", self.dist.classpath, main_class, *args]

    @property
    def heap(self) -> str:
        return self.options.heap or os.environ.get("EDGEBRIDGE_KAFKA_HEAP", "512m")

    @property
    def marker(self) -> str:
        # The whole argument, up to its NUL terminator in /proc/PID/cmdline: a bare folder name would
        # also match a node whose folder merely starts with it (".../kafka" in ".../kafka-2").
        return f"-Dedgebridge.state={self.state_dir}\0"

    def _choose_ports(self) -> None:
        if self.options.quorum:
            # A node of a cluster: the other nodes know its controller port from the quorum, so no
            # port may move here; one taken since the cluster chose it fails the start ("in use").
            if not self.port or not self.controller_port:
                raise ValueError("a cluster node needs its client and controller ports")
            return
        if not self.port or not port_is_free(self.port):
            self.port = free_port()
        # Two free_port() calls can return the same number (the first socket is closed by then).
        while (not self.controller_port or self.controller_port == self.port
               or not port_is_free(self.controller_port)):
            self.controller_port = free_port()

    def prepare(self) -> None:
        self._choose_ports()
        o = self.options
        n = o.internal_topic_partitions
        rf = str(o.replication_factor)
        min_isr = str(max(1, o.replication_factor - 1))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(o.node_id),
            "controller.quorum.voters": o.quorum or f"{o.node_id}@127.0.0.1:{self.controller_port}",
            **self._listeners(),
            "log.dirs": str(self.data_dir),
            "num.partitions": str(o.num_partitions),
            # the internal topics follow the node count: with one node, RF and min ISR 1 or group
            # commits and transactions never become available; with three, RF 3 and min ISR 2, so
            # an acknowledged offset commit or transaction marker is on two brokers
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": str(n),
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": str(n),
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.cleaner.backoff.ms": "1000",
            # A single node has nowhere to move its leaders: a controlled shutdown sets them to "none",
            # and a transaction ending at that moment loses its markers ("Couldn't find leader endpoint
            # ... can be skipped"), leaving a hanging transaction that pins the last stable offset and
            # the group's offsets for good (seen in the outage soak). Without it the leaders stay put and
            # the coordinator completes the transaction when the broker is back. In a cluster the
            # leaders move to the other nodes first, which is what a controlled shutdown is for.
            "controlled.shutdown.enable": "true" if o.quorum else "false",
            **o.extra,
        }
        self.conf_path.write_text(
            "# generated by `edgebridge brokers`; edits are overwritten at the next start\n"
            + "".join(f"{k}={v}\n" for k, v in props.items())
        )
        if not (self.data_dir / "meta.properties").exists():
            self._format()

    def _listeners(self) -> dict[str, str]:
        client, controller = self.port, self.controller_port
        security = self.options.security
        if security is None:
            return {
                "listeners": f"PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{client}",
                "controller.listener.names": "CONTROLLER",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            }
        from edgebridge.deploy.kafka_auth import server_properties

        return {
            "listeners": f"SASL_SSL://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{client}",
            **server_properties(security),
        }

    def _format(self) -> None:
        cluster_id = self.options.cluster_id or new_cluster_id()
        users: list[str] = []
        if self.options.security is not None:
            from edgebridge.deploy.kafka_auth import scram_format_args

            users = scram_format_args(self.options.security.passwords)
        # "--cluster-id=" form: an id that starts with "-" (1 in 64) would be read as an option
        cmd = self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                         "-c", str(self.conf_path), *users, heap="256m")
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            self.log_path.write_text(result.stdout + result.stderr)
            raise BrokerStartError("kafka", "formatting the storage failed", str(self.log_path))
        (self.state_dir / "cluster.id").write_text(cluster_id + "\n")

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.conf_path), heap=self.heap)

    def admin_settings(self) -> dict[str, str]:
        """librdkafka settings of a client of this broker: as admin when it is secured."""
        security = self.options.security
        if security is None:
            return {"bootstrap.servers": self.bootstrap}
        settings = security.client_settings("admin", self.bootstrap)
        return {"bootstrap.servers": settings.pop("bootstrap"), **settings}

    def _metadata(self) -> tuple[int, str | None]:
        """(brokers, cluster id) as the broker on our port reports them."""
        if self.options.security is None:
            meta = kafka_metadata("127.0.0.1", self.port)
            return len(meta.brokers), meta.cluster_id
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        try:
            # a quiet client: refused connections while the broker starts are expected, not news
            cluster = AdminClient({**self.admin_settings(), "log_level": 0}).list_topics(timeout=2)
        except KafkaException as exc:
            raise ConnectionError(str(exc.args[0])) from None
        return len(cluster.brokers), cluster.cluster_id

    def probe(self) -> bool:
        return self._metadata()[0] > 0

    def cluster_id(self) -> str | None:
        """The id our storage was formatted with (None before the first format)."""
        try:
            return (self.state_dir / "cluster.id").read_text().strip()
        except FileNotFoundError:
            pass
        # Formatted before cluster.id was kept beside it: Kafka's own record of the same id.
        try:
            meta = (self.data_dir / "meta.properties").read_text()
        except FileNotFoundError:
            return None
        found = re.search(r"^cluster\.id=(\S+)$", meta, re.MULTILINE)
        return found.group(1) if found else None

    def check_identity(self) -> None:
        """Refuse a Kafka on our port that reports another cluster id than the one we formatted."""
        ours = self.cluster_id()
        try:
            theirs = self._metadata()[1]
        except OSError as exc:
            raise BrokerStartError("kafka", f"could not read the cluster id on port {self.port}: {exc}",
                                   str(self.log_path)) from exc
        if ours is None or theirs != ours:
            raise BrokerStartError(
                "kafka", f"127.0.0.1:{self.port} is served by Kafka cluster {theirs!r}, ours is {ours!r}: "
                "another broker holds the port", str(self.log_path))

    def log_end_offsets(self, topic: str) -> dict[int, int]:
        """Each partition's log end offset for ``topic``, read from this broker's segment files on disk.

        No request goes to the broker, so this works while it is frozen, and a count read here is
        this process's storage, whoever answers on the port. Partitions not on disk are absent.
        """
        pattern = re.compile(re.escape(topic) + r"-(\d+)")
        out = {}
        # A topic name is made of [a-zA-Z0-9._-] only: nothing in it means anything to glob.
        for folder in self.data_dir.glob(f"{topic}-*"):
            matched = pattern.fullmatch(folder.name)
            if matched is None or not folder.is_dir():
                continue
            segments = sorted(folder.glob("*.log"), key=lambda p: int(p.stem))
            if segments:
                out[int(matched.group(1))] = segment_end_offset(segments[-1])
        return out

    def rss_mb(self) -> float | None:
        """The broker JVM's resident memory in MiB, read from /proc (None when not running)."""
        if not self.is_running():
            return None
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "bootstrap": self.bootstrap,
            "port": self.port,
            "controller_port": self.controller_port,
            "pid": self.pid,
            "version": self.dist.version,
            "origin": self.dist.origin,
            "heap": self.heap,
            "log": str(self.log_path),
            "config": str(self.conf_path),
            "ready_seconds": self.ready_seconds,
            "rss_mb": self.rss_mb(),
            "security": "SASL_SSL" if self.options.security is not None else "PLAINTEXT",
            "node_id": self.options.node_id,
        }


def segment_end_offset(path: Path) -> int:
    """The offset after the last complete record batch of a Kafka log segment file.

    Walks the v2 record batch headers (base offset INT64, batch length INT32, leader epoch INT32,
    magic INT8, CRC INT32, attributes INT16, last offset delta INT32) without reading the records. An
    empty segment ends where it starts: at the base offset in its file name. A batch cut short (being
    written) is not counted.
    """
    end = int(path.stem)
    size = path.stat().st_size
    with open(path, "rb") as f:
        pos = 0
        while pos + 27 <= size:
            f.seek(pos)
            header = f.read(27)
            if len(header) < 27:
                break
            base, length = struct.unpack_from(">qi", header, 0)
            (last_delta,) = struct.unpack_from(">i", header, 23)
            if length <= 0 or pos + 12 + length > size:
                break
            end = base + last_delta + 1
            pos += 12 + length
    return end


def min_heap(heap: str) -> str:
    """Start the heap small: the broker's steady state on a dev machine needs far less than its cap."""
    return "128m" if heap.lower().endswith(("m", "g")) else heap
