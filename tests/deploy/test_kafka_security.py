"""Kafka secure by default, against a real secured broker of this module's own: SASL_SSL with SCRAM-SHA-512,
TLS from the deployment's CA (edgebridge.deploy.pki), the StandardAuthorizer with no ACL meaning no,
the users created at format time, every file made by edgebridge.deploy.kafka_auth. Each component's
client settings come from the env file written for it, read through edgebridge.config like a container's.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from bridge.config import BridgeConfig
from edgebridge import deadletters
from edgebridge.config import load_config
from edgebridge.deploy.kafka_auth import USERS, KafkaSecurity, acl_grants, write_kafka_security
from edgebridge.deploy.pki import make_ca
from edgebridge.devbrokers import KafkaOptions
from edgebridge.devbrokers._process import free_port
from edgebridge.devbrokers.kafka import Kafka, new_cluster_id
from edgebridge.envelope import encode, new_reading
from edgebridge.settings import KafkaSettings
from edgebridge.topics import KafkaTopics
from tests.conftest import BrokerAddresses, running

ROOT = Path(__file__).resolve().parents[2]
TOPICS = KafkaTopics()


@dataclass(frozen=True)
class Secured:
    kafka: Kafka
    security: KafkaSecurity
    folder: Path

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    def env(self, user: str) -> dict[str, str]:
        """The variables of ``<user>.env``, as a compose env_file hands them to a container."""
        text = (self.folder / f"{user}.env").read_text()
        return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))

    def settings(self, user: str) -> KafkaSettings:
        """The user's [kafka] settings, read from its env file by the components' own loader."""
        return load_config(BridgeConfig, None, env=self.env(user)).kafka

    def client(self, user: str, **ours: Any) -> dict[str, Any]:
        return self.settings(user).client_config(ours)

    def log_lines(self) -> list[str]:
        return self.kafka.log_path.read_text(errors="replace").splitlines()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    folder = tmp_path_factory.mktemp("kafka-secured")
    port = free_port()
    security = write_kafka_security(make_ca("edgebridge test CA"), ["127.0.0.1", "localhost"],
                                    folder / "secrets", bootstrap=f"127.0.0.1:{port}")
    with running(Kafka(folder / "kafka", KafkaOptions(port=port, security=security))) as kafka:
        assert kafka.port == port, "the env files name another port than the broker's"
        yield Secured(kafka, security, folder / "secrets")


def _cli(*args: str, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
    return subprocess.run([sys.executable, "-m", "edgebridge", *args], capture_output=True, text=True,
                          env={**clean, **(env or {})}, cwd=ROOT, timeout=timeout)


def _admin(secured: Secured) -> Any:
    return AdminClient(secured.client("admin"))


def _delivery(producer_config: dict[str, Any], topic: str, timeout: float = 30) -> KafkaError | None:
    """Produce one record and return its delivery report's error (None: Kafka has it)."""
    reports: list[KafkaError | None] = []
    producer = Producer(producer_config)
    producer.produce(topic, b"x", b"dev-1", on_delivery=lambda err, _msg: reports.append(err))
    deadline = time.monotonic() + timeout
    while not reports and time.monotonic() < deadline:
        try:
            producer.poll(0.2)
        except KafkaException as exc:  # a fatal error of the producer itself (idempotence refused)
            return typing.cast(KafkaError, exc.args[0])
    assert reports, f"no delivery report for {topic} within {timeout}s"
    return reports[0]


def _contract(secured: Secured) -> None:
    """The contract's topics and the components' ACLs, made through the CLI as the operator would."""
    admin_toml = str(secured.folder / "admin.toml")
    for action in ("create", "acls"):
        result = _cli("topics", action, "--config", admin_toml)
        assert result.returncode == 0, result.stderr


# --- the files -----------------------------------------------------------------------------------------


def test_secrets_are_private_and_the_env_files_configure_librdkafka(secured: Secured) -> None:
    folder = secured.folder
    for name in ["server.pem", "server.properties", "scram-users",
                 *(f"{u}.{ext}" for u in USERS for ext in ("env", "toml", "password"))]:
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((folder / "ca.pem").stat().st_mode) == 0o644
    kafka = secured.settings("enricher")
    assert kafka.bootstrap == secured.bootstrap
    assert kafka.librdkafka == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "enricher",
        "sasl.password": secured.security.passwords["enricher"],
        "ssl.ca.location": str(secured.security.truststore)}
    assert secured.security.passwords["enricher"] not in repr(kafka)  # masked wherever it is logged
    passwords = set(secured.security.passwords.values())
    assert len(passwords) == len(USERS)  # one each, random
    props = (folder / "server.properties").read_text()
    assert "allow.everyone.if.no.acl.found=false" in props
    assert "super.users=User:admin;User:controller" in props


# --- who gets in ---------------------------------------------------------------------------------------


def _refused(secured: Secured, config: dict[str, Any], broker_says: str) -> str:
    """Connect with ``config``: the metadata request must fail, the client must report an error of its
    own, and the broker's log must show this connection refused (``broker_says``). Returns the client's
    errors, for the caller to judge."""
    errors: list[str] = []
    before = sum(broker_says in line for line in secured.log_lines())
    client = AdminClient({"bootstrap.servers": secured.bootstrap, "logger": _Lines(errors),
                          "error_cb": lambda err: errors.append(err.str()), **config})
    with pytest.raises(KafkaException):
        client.list_topics(timeout=6)
    client.poll(0.5)
    deadline = time.monotonic() + 10
    while sum(broker_says in line for line in secured.log_lines()) <= before:
        assert time.monotonic() < deadline, f"the broker never logged {broker_says!r}: no attempt reached it"
        time.sleep(0.2)
    assert errors, "the client reported no error"
    return " | ".join(errors)


class _Lines:
    """A librdkafka logger that keeps its lines (what the client saw of the refused connection)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def log(self, level: int, fmt: str, *args: Any) -> None:
        self.lines.append(fmt % args if args else fmt)


def test_the_admin_user_gets_in(secured: Secured) -> None:
    # the control for the refusals below: the same broker, the right password
    cluster = _admin(secured).list_topics(timeout=10)
    assert len(cluster.brokers) == 1 and cluster.cluster_id == secured.kafka.cluster_id()


def test_a_wrong_password_is_refused(secured: Secured) -> None:
    config = {**secured.settings("bridge").librdkafka, "sasl.password": "not-the-password"}
    errors = _refused(secured, config, "Failed authentication with /127.0.0.1")
    assert "Authentication failed" in errors and "invalid credentials" in errors


def test_a_client_without_credentials_is_refused(secured: Secured) -> None:
    # TLS with the right CA, but no SASL at all: the broker wants a SASL handshake first
    config = {"security.protocol": "SSL", "ssl.ca.location": str(secured.security.truststore)}
    errors = _refused(secured, config, "during SASL handshake")
    assert "Disconnected" in errors, errors


def test_plaintext_to_the_tls_port_is_refused(secured: Secured) -> None:
    # the right user and password, but no TLS: the broker's TLS handshake gets a Kafka request instead
    config = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
              "sasl.username": "admin", "sasl.password": secured.security.passwords["admin"]}
    errors = _refused(secured, config, "SSL handshake failed")
    assert "Disconnected" in errors, errors


def test_a_server_certificate_from_another_ca_is_refused(secured: Secured, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(make_ca("someone else").cert_pem)
    config = {**secured.settings("admin").librdkafka, "ssl.ca.location": str(other)}
    errors = _refused(secured, config, "SSL handshake failed")
    assert "certificate verify failed" in errors


# --- the CLI over SASL_SSL -----------------------------------------------------------------------------


def test_topics_dry_run_changes_nothing_and_says_what_it_would_do(secured: Secured) -> None:
    admin = _admin(secured)
    names = KafkaTopics(**{f: f"dry-{f}" for f in KafkaTopics.__dataclass_fields__})
    # one topic exists with fewer partitions than asked, one compacted one exists with the wrong policy
    from confluent_kafka.admin import ConfigResource, NewTopic

    for future in admin.create_topics([NewTopic(names.raw, 1, 1),
                                       NewTopic(names.devices, 1, 1, config={"cleanup.policy": "delete"})
                                       ]).values():
        future.result(30)
    env = {**secured.env("admin"), **{f"EDGEBRIDGE_TOPICS_{f.upper()}": getattr(names, f)
                                      for f in KafkaTopics.__dataclass_fields__}}
    before = sorted(admin.list_topics(timeout=10).topics)
    result = _cli("topics", "create", "--dry-run", "--partitions", "4", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"would create {names.processed}: 4 partitions, replication factor 1" in out
    # the raw topic keeps its 1 partition, so the state topic must have 1 too, whatever was asked
    state = f"would create {names.enricher_state}: 1 partition, replication factor 1, cleanup.policy=compact"
    assert state in out and f"note {names.enricher_state}: 1 partitions, as {names.raw} has" in out
    assert f"would set {names.devices}: cleanup.policy=compact (was delete)" in out
    assert f"note {names.raw}: has 1 partitions, 4 asked" in out
    assert "dry run: nothing was changed" in out
    assert sorted(admin.list_topics(timeout=10).topics) == before
    configs = admin.describe_configs([ConfigResource(ResourceType.TOPIC, names.devices)])
    entries = next(iter(configs.values())).result(30)
    assert entries["cleanup.policy"].value == "delete"

    acl_filter = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    acls_before = sorted(map(str, admin.describe_acls(acl_filter).result(30)))
    result = _cli("topics", "acls", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert f"User:bridge WRITE topic {names.raw}" in result.stdout
    assert sorted(map(str, admin.describe_acls(acl_filter).result(30))) == acls_before


def test_the_acls_listed_for_a_deployment_are_those_the_command_applies(secured: Secured) -> None:
    _contract(secured)
    listed = acl_grants()
    assert set(listed) == {"bridge", "enricher", "sink"}  # admin is a super user: no ACL
    applied = _cli("topics", "acls", "--dry-run", env=secured.env("admin")).stdout
    assert sorted(line.removeprefix("exists ") for line in applied.splitlines()
                  if line.startswith("exists ")) == sorted(g for lines in listed.values() for g in lines)


def test_topics_create_and_acls_work_over_sasl_ssl_and_are_idempotent(secured: Secured) -> None:
    admin_toml = str(secured.folder / "admin.toml")
    _contract(secured)
    cluster = _admin(secured).list_topics(timeout=10)
    assert set(TOPICS.names()) <= set(cluster.topics)
    assert len(cluster.topics[TOPICS.enricher_state].partitions) == len(cluster.topics[TOPICS.raw].partitions)
    again = _cli("topics", "create", "--config", admin_toml)
    assert again.returncode == 0, again.stderr
    assert "nothing to create or change" in again.stdout
    acls = _cli("topics", "acls", "--config", admin_toml)
    assert acls.returncode == 0, acls.stderr
    assert "created" not in acls.stdout and "would" not in acls.stdout
    assert f"exists User:enricher WRITE transactional_id {'edgebridge-enricher-'}*" in acls.stdout


def test_a_component_user_cannot_create_topics(secured: Secured) -> None:
    result = _cli("topics", "create", env={**secured.env("bridge"), "EDGEBRIDGE_TOPICS_RAW": "bridge-made"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "authoriz" in result.stderr.lower(), result.stderr
    assert "bridge-made" not in _admin(secured).list_topics(timeout=10).topics


@pytest.mark.parametrize("case", ["wrong password", "another CA"])
def test_topics_refused_by_the_broker_is_one_line_at_once(secured: Secured, case: str,
                                                          tmp_path: Path) -> None:
    env = secured.env("admin")
    if case == "wrong password":
        env["EDGEBRIDGE_KAFKA_LIBRDKAFKA__SASL_PASSWORD"] = "not-the-password"
        reason = "Authentication failed during authentication due to invalid credentials"
    else:
        other = tmp_path / "other-ca.pem"
        other.write_bytes(make_ca("someone else").cert_pem)
        env["EDGEBRIDGE_KAFKA_LIBRDKAFKA__SSL_CA_LOCATION"] = str(other)
        reason = "certificate verify failed"
    began = time.monotonic()
    result = _cli("topics", "create", "--dry-run", env=env)
    took = time.monotonic() - began
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgebridge topics create: cannot read the cluster's "
                                                   "metadata"), result.stderr
    assert reason in lines[0]
    assert took < 20, f"{took:.1f}s: the refusal should end the wait, not the 30 s timeout"


def test_replication_factor_above_the_brokers_is_refused(secured: Secured) -> None:
    result = _cli("topics", "create", "--replication-factor", "3", env=secured.env("admin"))
    assert result.returncode == 1
    assert "replication factor 3 needs at least 3 brokers, the cluster has 1" in result.stderr
    assert "Traceback" not in result.stderr


# --- what each component may do ------------------------------------------------------------------------


def test_the_bridge_user_writes_raw_but_not_processed(secured: Secured) -> None:
    _contract(secured)
    bridge = secured.client("bridge", **{"enable.idempotence": True, "acks": "all"})
    assert _delivery(bridge, TOPICS.raw) is None
    refused = _delivery(bridge, TOPICS.processed)
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_the_bridge_user_reads_commands_in_its_group(secured: Secured) -> None:
    _contract(secured)
    admin = Producer(secured.client("admin"))
    admin.produce(TOPICS.commands, b'{"op": "ping"}', b"dev-1")
    assert admin.flush(30) == 0
    consumer = Consumer(secured.client("bridge", **{"group.id": "edgebridge-bridge-downlink",
                                                    "enable.auto.commit": False,
                                                    "auto.offset.reset": "earliest"}))
    try:
        consumer.subscribe([TOPICS.commands])
        got = None
        deadline = time.monotonic() + 60
        while got is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                got = msg
        assert got is not None and got.value() == b'{"op": "ping"}'
        consumer.commit(got, asynchronous=False)
    finally:
        consumer.close()


def test_the_sink_user_can_write_nothing(secured: Secured) -> None:
    _contract(secured)
    plain = secured.client("sink", **{"enable.idempotence": False, "acks": "all"})
    for topic in (TOPICS.processed, TOPICS.raw, TOPICS.deadletter, TOPICS.alerts, TOPICS.enricher_state):
        refused = _delivery(plain, topic)
        assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, topic
    # an idempotent producer is refused its producer id: it may WRITE no topic at all (KIP-679)
    idempotent = secured.client("sink", **{"enable.idempotence": True, "acks": "all"})
    refused = _delivery(idempotent, TOPICS.processed)
    assert refused is not None and refused.code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED


def _read_committed(config: dict[str, Any], topic: str, expect: int, key: str,
                    timeout: float = 90) -> list[Any]:
    """The committed records of ``topic`` with ``key``, from the start, once there are ``expect``."""
    consumer = Consumer({**config, "enable.auto.commit": False, "isolation.level": "read_committed",
                         "auto.offset.reset": "earliest"})
    try:
        parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, -2) for p in parts])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.5):
                assert msg.error() is None, msg.error()
                if msg.key() == key.encode():
                    out.append(msg)
        return out
    finally:
        consumer.close()


def _windows_of(config: dict[str, Any], topic: str, device: str, readings: int,
                timeout: float = 90) -> dict[str, dict[str, Any]]:
    """The latest aggregates record of each window key of ``device``, once their counts reach
    ``readings``."""
    consumer = Consumer({**config, "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, -2) for p in parts])
        latest: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while sum(w["count"] for w in latest.values()) < readings and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.5):
                assert msg.error() is None, msg.error()
                if (msg.key() or b"").startswith(f"{device}/temperature/".encode()):
                    latest[msg.key().decode()] = orjson.loads(msg.value())
        return latest
    finally:
        consumer.close()


def test_the_enricher_user_moves_raw_to_processed_under_the_acls(secured: Secured, tmp_path: Path) -> None:
    """... and aggregates them (the aggregator runs as the enricher's user), and the sink user stores
    both."""
    _contract(secured)
    device = f"sec-{os.getpid()}"
    events = [new_reading(device, seq, {"temperature": {"v": 20.0 + seq, "u": "Cel"}}) for seq in (1, 2, 3)]
    # the registry, written by the operator (admin): the enricher must be allowed to read it
    put = _cli("devices", "put", device, "--site", "plant-sec", env=secured.env("admin"))
    assert put.returncode == 0, put.stderr
    bridge = Producer(secured.client("bridge", **{"enable.idempotence": True, "acks": "all"}))
    for event in events:
        bridge.produce(TOPICS.raw, encode(event), device.encode())
    assert bridge.flush(30) == 0
    env = {**secured.env("enricher"), "EDGEBRIDGE_METRICS_ENABLED": "false",
           "EDGEBRIDGE_INSTANCE_ID": "sec-0"}
    log = tmp_path / "enricher.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "edgebridge", "enricher", "run"], cwd=ROOT,
                                env={**clean, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        admin = {**secured.client("admin"), "group.id": "test-reader"}
        processed = _read_committed(admin, TOPICS.processed, 3, device)
        assert proc.poll() is None, log.read_text()
    finally:
        proc.terminate()
        proc.wait(60)
    text = log.read_text()
    assert [orjson.loads(m.value())["seq"] for m in processed] == [1, 2, 3], text[-3000:]
    assert {orjson.loads(m.value())["data"]["device"].get("site") for m in processed} == {"plant-sec"}
    # no grant missing, not even one the enricher would survive (the readers' group coordinator lookups)
    assert not re.search(r"AUTHORIZATION_FAILED|not authorized", text), text[-3000:]
    # the aggregator, from the enricher's configuration and so as its user, aggregates them
    agg_log = tmp_path / "aggregator.log"
    with agg_log.open("wb") as out:
        agg = subprocess.Popen([sys.executable, "-m", "edgebridge", "aggregator", "run"], cwd=ROOT,
                               env={**clean, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        windows = _windows_of(admin, TOPICS.aggregates, device, 3)
        assert agg.poll() is None, agg_log.read_text()
    finally:
        agg.terminate()
        agg.wait(60)
    agg_text = agg_log.read_text()
    assert sum(w["count"] for w in windows.values()) == 3, agg_text[-3000:]
    assert not re.search(r"AUTHORIZATION_FAILED|not authorized", agg_text), agg_text[-3000:]
    # and the real SQLite sink, as the sink user (its group under the sinks' prefix), stores them
    db = tmp_path / "readings.db"
    sink_log = tmp_path / "sink.log"
    sink_env = {**clean, **secured.env("sink"), "EDGEBRIDGE_METRICS_ENABLED": "false",
                "EDGEBRIDGE_AGGREGATES": "true"}
    with sink_log.open("wb") as out:
        sink = subprocess.Popen([sys.executable, "-m", "edgebridge", "sink", "sqlite", "--db", str(db)],
                                cwd=ROOT, env=sink_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        rows: list[tuple[int, str]] = []
        deadline = time.monotonic() + 60
        while len(rows) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
            if db.exists():
                # the table may not be made yet
                with contextlib.closing(sqlite3.connect(db)) as conn, \
                        contextlib.suppress(sqlite3.OperationalError):
                    rows = conn.execute("SELECT seq, site FROM readings WHERE device_id = ? ORDER BY seq",
                                        (device,)).fetchall()
        assert sink.poll() is None, sink_log.read_text()
    finally:
        sink.terminate()
        sink.wait(60)
    sink_text = sink_log.read_text()
    assert rows == [(1, "plant-sec"), (2, "plant-sec"), (3, "plant-sec")], sink_text[-3000:]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        stored = dict(conn.execute("SELECT key, count FROM aggregates WHERE device_id = ?", (device,)))
    assert stored == {key: w["count"] for key, w in windows.items()}, sink_text[-3000:]
    assert not re.search(r"AUTHORIZATION_FAILED|not authorized", sink_text), sink_text[-3000:]


def test_the_real_bridge_runs_under_its_acls(secured: Secured, brokers: BrokerAddresses,
                                             mqtt_prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    """MQTT events to raw, a malformed message to the dead letters, a status to the status topic, with
    the bridge user's settings (uplink and downlink both running), and no authorization error."""
    from tests.bridge.helpers import BridgeThread, Publisher

    _contract(secured)
    config = load_config(BridgeConfig, None, env=secured.env("bridge"), overrides={
        "mqtt.url": brokers.mqtt_url, "mqtt.topic_prefix": mqtt_prefix, "metrics.enabled": False,
        "uplink.client_id": f"bridge-{mqtt_prefix}"[:60], "downlink.client_id": f"down-{mqtt_prefix}"[:60],
    })
    assert config.kafka.librdkafka["sasl.username"] == "bridge" and config.downlink.enabled
    device = f"br-{os.getpid()}"
    admin = {**secured.client("admin"), "group.id": "test-reader"}
    caplog.set_level("INFO")
    bridge = BridgeThread(config).start(timeout=60)
    try:
        publisher = Publisher(brokers.mqtt_host, brokers.mqtt_port)
        events = [new_reading(device, seq, {"temperature": {"v": 21.0, "u": "Cel"}}) for seq in (1, 2, 3)]
        publisher.events(mqtt_prefix, events)
        publisher.publish(f"{mqtt_prefix}/{device}/events", b"not an event")
        publisher.publish(f"{mqtt_prefix}/{device}/status", b"online", retain=True)
        publisher.wait_all()
        raw = _read_committed(admin, TOPICS.raw, 3, device)
        dead = _read_committed(admin, TOPICS.deadletter, 1, device)
        status = _read_committed(admin, TOPICS.status, 1, device)
        publisher.client.publish(f"{mqtt_prefix}/{device}/status", b"", qos=1, retain=True)  # unretain
        publisher.close()
        assert bridge.bridge.health()[0], bridge.bridge.health()
    finally:
        bridge.close()
    assert [orjson.loads(m.value())["seq"] for m in raw] == [1, 2, 3]
    assert [m.value() for m in dead] == [b"not an event"]
    assert [m.value() for m in status] == [b"online"]
    refused = [vars(r) for r in caplog.records if "AUTHORIZATION" in str(vars(r)).upper()]
    assert not refused, refused[:3]


# --- the stack's broker: the shipped server.properties, then the deployment's ------------------------------


class StackKafka(Kafka):
    """Kafka configured as deploy/kafka/kafka-entrypoint.sh configures it in the compose stack: the shipped
    deploy/kafka/server.properties (its ports, data folder and listener address made this test's), then
    the deployment's server.properties from write_kafka_security, and the storage formatted with one
    ``--add-scram`` per line of its scram-users."""

    def prepare(self) -> None:
        assert self.options.security is not None
        shipped = (ROOT / "deploy" / "kafka" / "server.properties").read_text()
        shipped = (shipped.replace("SASL_SSL://:9092", f"SASL_SSL://127.0.0.1:{self.port}")
                   .replace(":9092", f":{self.port}").replace(":9093", f":{self.controller_port}")
                   .replace("/var/lib/kafka/data", str(self.data_dir)))
        ours = (self.options.security.folder / "server.properties").read_text()
        self.conf_path.write_text(shipped + "\n" + ours)
        if (self.data_dir / "meta.properties").exists():
            return
        users = (self.options.security.folder / "scram-users").read_text().split()
        cluster = new_cluster_id()
        cmd = self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster}", "-c",
                         str(self.conf_path), *(a for u in users for a in ("--add-scram", u)), heap="256m")
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        (self.state_dir / "cluster.id").write_text(cluster + "\n")


def test_the_stacks_shipped_server_properties_with_the_deployments_lines(tmp_path: Path) -> None:
    port, controller = free_port(), free_port()
    secrets = tmp_path / "secrets"
    security = write_kafka_security(make_ca("stack CA"), ["localhost", "127.0.0.1"], secrets / "kafka",
                                    clients_dir=secrets / "env", bootstrap=f"localhost:{port}")
    stack_kafka = StackKafka(tmp_path / "kafka", KafkaOptions(port=port, controller_port=controller,
                                                              security=security))
    with running(stack_kafka) as kafka:
        assert (kafka.port, kafka.controller_port) == (port, controller)
        env = {f"{u}": dict(line.split("=", 1) for line in (secrets / "env" / f"{u}.env").read_text().split())
               for u in USERS}
        assert not (secrets / "kafka" / "bridge.env").exists()  # the clients' files stay out of its mount
        for action in ("create", "acls"):
            result = _cli("topics", action, env=env["admin"])
            assert result.returncode == 0, result.stderr
        bridge = load_config(BridgeConfig, None, env=env["bridge"]).kafka.client_config(
            {"enable.idempotence": True, "acks": "all"})
        assert _delivery(bridge, TOPICS.raw) is None
        refused = _delivery(bridge, TOPICS.processed)
        assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


# --- the operator's tools (docs/operations.md) -----------------------------------------------------------


def test_the_operator_tools_work_over_sasl_ssl_as_admin_and_are_refused_to_a_component_user(
    secured: Secured,
) -> None:
    """tail, deadletters list and redrive with the deployment's admin.toml (SASL_SSL, the CA), and with
    the admin's env file as a container would; a component user without the ACLs gets one line."""
    _contract(secured)
    admin_toml = str(secured.folder / "admin.toml")
    device = "dev-ops-sec"
    producer = Producer(secured.client("admin", **{"enable.idempotence": True}))
    headers = deadletters.headers(reason="step_failed", error=ZeroDivisionError("division by zero"),
                                  component="enricher", original=(TOPICS.raw, 0, 7), step="ratio")
    producer.produce(TOPICS.deadletter, encode(new_reading(device, 1, {"t": {"v": 1, "u": "Cel"}})),
                     device.encode(), headers=headers)
    assert producer.flush(30) == 0

    tail = _cli("tail", "deadletter", "--device", device, "--config", admin_toml)
    assert tail.returncode == 0, tail.stderr
    assert (f"step_failed: ZeroDivisionError: division by zero  (from enricher {TOPICS.raw}/0/7)"
            in tail.stdout)
    listed = _cli("deadletters", "list", "--json", "--device", device, "--config", admin_toml)
    assert listed.returncode == 0, listed.stderr
    assert [orjson.loads(line)["count"] for line in listed.stdout.splitlines()] == [1]
    moved = _cli("deadletters", "redrive", "--device", device, "--config", admin_toml)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.splitlines()[-1].startswith("redriven 1, already redriven 0")
    raw = _cli("tail", "raw", "--device", device, "--json", env=secured.env("admin"))
    assert raw.returncode == 0, raw.stderr
    [record] = [orjson.loads(line) for line in raw.stdout.splitlines()]
    assert record["headers"]["redriven_from"].startswith(f"{TOPICS.deadletter}/")

    refused = _cli("tail", "deadletter", env=secured.env("sink"))
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert "authoriz" in refused.stderr.lower(), refused.stderr
