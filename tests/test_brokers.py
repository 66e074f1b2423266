"""The real brokers the whole suite stands on: MQTT QoS 1, idempotent Kafka, transactions, CLI; and
the proof that the faults tests inject into them happen (pause reaches every thread, signals never
go astray, kills leave no zombie, a start never mistakes another broker for its own)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from edgebridge.devbrokers import Kafka, KafkaOptions, LocalBrokers, ManagedBroker, MosquittoOptions
from edgebridge.devbrokers import kafka as kafka_module
from edgebridge.devbrokers._process import pid_matches, thread_states, wait_until
from edgebridge.devbrokers.probes import kafka_metadata, mqtt_connack
from edgebridge.errors import BrokerFaultError, BrokerStartError
from tests.conftest import IN_CI, BrokerAddresses

pytestmark = pytest.mark.brokers


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)


def _consume(bootstrap: str, topic: str, group: str, expect: int, timeout: float = 30.0) -> list[bytes]:
    """Read ``topic`` from the start with read_committed until ``expect`` records or ``timeout``."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    values: list[bytes] = []
    try:
        import time

        deadline = time.monotonic() + timeout
        while len(values) < expect and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(msg.error())
            values.append(msg.value())
    finally:
        consumer.close()
    return values


def test_mqtt_qos1_round_trip(brokers: BrokerAddresses, mqtt_prefix: str) -> None:
    topic = f"{mqtt_prefix}/dev-1/events"
    received: list[bytes] = []
    got_all = threading.Event()
    subscribed = threading.Event()
    n = 200

    sub = _client(f"sub-{uuid.uuid4().hex[:6]}")

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        assert msg.qos == 1
        received.append(msg.payload)
        if len(received) == n:
            got_all.set()

    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.connect(brokers.mqtt_host, brokers.mqtt_port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    pub = _client(f"pub-{uuid.uuid4().hex[:6]}")
    try:
        assert subscribed.wait(10)
        pub.connect(brokers.mqtt_host, brokers.mqtt_port)
        pub.loop_start()
        infos = [pub.publish(topic, f"m{i}".encode(), qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(10)  # returns once the broker's PUBACK arrived
        assert all(info.is_published() for info in infos)
        assert got_all.wait(10), f"received {len(received)} of {n}"
        assert received == [f"m{i}".encode() for i in range(n)]
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.disconnect()
        sub.loop_stop()


def test_kafka_idempotent_produce_read_committed_consume(
    brokers: BrokerAddresses, kafka_topic: Callable[..., str], consumer_group: Callable[[], str]
) -> None:
    topic = kafka_topic("idem", partitions=3)
    producer = Producer({"bootstrap.servers": brokers.kafka_bootstrap, "enable.idempotence": True})
    delivered: list[str] = []

    def on_delivery(err: KafkaError | None, msg: object) -> None:
        assert err is None, err
        delivered.append("ok")

    n = 1000
    for i in range(n):
        producer.produce(topic, key=f"dev-{i % 7}", value=f"v{i}".encode(), on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert len(delivered) == n
    values = _consume(brokers.kafka_bootstrap, topic, consumer_group(), n)
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(n))


def test_kafka_committed_transaction_visible_aborted_invisible(
    brokers: BrokerAddresses, kafka_topic: Callable[..., str], consumer_group: Callable[[], str],
    unique_name: Callable[[str], str],
) -> None:
    topic = kafka_topic("txn")
    producer = Producer({"bootstrap.servers": brokers.kafka_bootstrap, "transactional.id": unique_name("tx")})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, value=f"aborted-{i}".encode())
    producer.flush(30)  # the aborted records really reach the log before the abort
    producer.abort_transaction(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, value=f"committed-{i}".encode())
    producer.commit_transaction(30)
    values = _consume(brokers.kafka_bootstrap, topic, consumer_group(), 10)
    # Wait a little longer for anything that should not be there.
    values += _consume(brokers.kafka_bootstrap, topic, consumer_group(), 11, timeout=3)[10:]
    assert values[:10] == [f"committed-{i}".encode() for i in range(10)]
    assert len(values) == 10


def test_cli_brokers_up_reached_by_independent_clients(tmp_path: Path) -> None:
    """`edgebridge brokers up`, then mosquitto_pub/sub and kcat -L reach the brokers it printed."""
    state = tmp_path / "state"
    cli = [sys.executable, "-m", "edgebridge", "brokers", "--state-dir", str(state)]
    up = subprocess.run([*cli, "up"], capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr
        assert "max_inflight_messages=1000" in up.stdout
        env = dict(line.split("=", 1) for line in subprocess.run(
            [*cli, "env"], capture_output=True, text=True, check=True).stdout.split())
        port = env["EDGEBRIDGE_MQTT_URL"].rsplit(":", 1)[1]
        sub = subprocess.Popen(["mosquitto_sub", "-p", port, "-t", "cli/test", "-C", "1", "-W", "20",
                                "-q", "1"], stdout=subprocess.PIPE, text=True)
        # mosquitto_sub subscribes asynchronously: publish until it has seen one message.
        out = ""
        for _ in range(40):
            subprocess.run(["mosquitto_pub", "-p", port, "-t", "cli/test", "-m", "hello", "-q", "1"],
                           check=True)
            try:
                out, _ = sub.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                continue
        assert out.strip() == "hello"
        kcat = shutil.which("kcat") or shutil.which("kafkacat")
        if kcat is None:
            if IN_CI:
                pytest.fail("kcat is not installed (make setup installs it)")
            pytest.skip("kcat not installed")
        listing = subprocess.run([kcat, "-L", "-b", env["EDGEBRIDGE_KAFKA_BOOTSTRAP"]],
                                 capture_output=True, text=True, timeout=30)
        assert listing.returncode == 0, listing.stderr
        assert "1 brokers:" in listing.stdout
        status = subprocess.run([*cli, "status"], capture_output=True, text=True)
        assert status.returncode == 0
    finally:
        down = subprocess.run([*cli, "down"], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0
    assert subprocess.run([*cli, "status"], capture_output=True).returncode == 3


def test_mosquitto_password_mode_rejects_wrong_credentials(
    private_brokers: Callable[..., LocalBrokers],
) -> None:
    local = private_brokers("mosquitto", mosquitto=MosquittoOptions(users={"dev-1": "s3cret"}))
    port = local.mosquitto.port
    assert mqtt_connack("127.0.0.1", port, username="dev-1", password="s3cret") == 0
    assert mqtt_connack("127.0.0.1", port, username="dev-1", password="wrong") == 5  # not authorised
    assert mqtt_connack("127.0.0.1", port) == 5  # anonymous


def test_mosquitto_tls_mode_with_client_certificates(
    private_brokers: Callable[..., LocalBrokers],
) -> None:
    from edgebridge.devbrokers.tls import ensure_client_cert

    local = private_brokers("mosquitto", mosquitto=MosquittoOptions(tls=True, require_certificate=True))
    m = local.mosquitto
    assert m.url.startswith("mqtts://")
    ctx = ssl.create_default_context(cafile=str(m.ca_file))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        mqtt_connack("127.0.0.1", m.port, tls=ctx)  # no client certificate: refused
    client = ensure_client_cert(m.state_dir / "tls", "dev-7")
    ctx.load_cert_chain(str(client.cert), str(client.key))
    assert mqtt_connack("127.0.0.1", m.port, tls=ctx) == 0


def test_restart_keeps_port_and_persistent_session(private_brokers: Callable[..., LocalBrokers]) -> None:
    """Fault-injection tests rely on a restarted broker coming back at the same address with its data."""
    local = private_brokers("mosquitto")
    m = local.mosquitto
    port = m.port
    sub = _client("persistent-sub")
    sub.connect("127.0.0.1", port, clean_start=False,
                properties=_session_expiry(3600))
    sub.subscribe("p/t", qos=1)
    sub.loop_start()
    sub.disconnect()
    sub.loop_stop()
    pub = _client("pub-x")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    pub.publish("p/t", b"kept", qos=1).wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()
    m.stop()
    assert not m.is_running()
    m.start()
    assert m.port == port
    got = threading.Event()
    payloads: list[bytes] = []
    sub2 = _client("persistent-sub")
    sub2.on_message = lambda _c, _u, msg: (payloads.append(msg.payload), got.set())
    sub2.connect("127.0.0.1", port, clean_start=False, properties=_session_expiry(3600))
    sub2.loop_start()
    try:
        assert got.wait(10)
        assert payloads == [b"kept"]
    finally:
        sub2.disconnect()
        sub2.loop_stop()


def _session_expiry(seconds: int) -> object:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = seconds
    return props


def test_metadata_probe_speaks_kafka(brokers: BrokerAddresses) -> None:
    host, port = brokers.kafka_bootstrap.rsplit(":", 1)
    meta = kafka_metadata(host, int(port))
    assert len(meta.brokers) == 1 and meta.brokers[0][2] == int(port)
    assert meta.cluster_id and len(meta.cluster_id) == 22  # 16 bytes, URL-safe base64, no padding
    assert meta.controller_id == meta.brokers[0][0]  # one node, broker and controller


# -- faults are proven injected ------------------------------------------------------------------


def _zombie_children() -> list[int]:
    """Pids of this process's children that exited and were never reaped."""
    zombies = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            zombies.append(int(entry.name))
    return zombies


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not a broker of ours."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def test_pause_stops_every_thread_and_resume_restarts_them(
    private_brokers: Callable[..., LocalBrokers], unique_name: Callable[[str], str]
) -> None:
    """Kafka's JVM runs a hundred threads: pause() returns only once all of them are stopped."""
    kafka = private_brokers("kafka").kafka
    assert kafka.pid is not None
    topic = unique_name("frozen")
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(50):
        producer.produce(topic, value=f"v{i}".encode())
    assert producer.flush(30) == 0

    kafka.pause()
    try:
        states = thread_states(kafka.pid)
        assert len(states) > 20 and set(states) == {"T"}, states
        assert kafka.is_paused()
        with pytest.raises(OSError):  # the port still accepts connections, the broker answers nothing
            kafka_metadata("127.0.0.1", kafka.port, timeout=1.0)
        # Its storage can still be read, from disk: what the fault tests count while Kafka is frozen.
        assert kafka.log_end_offsets(topic) == {0: 50}
    finally:
        kafka.resume()
    assert "T" not in thread_states(kafka.pid)
    assert not kafka.is_paused()
    assert kafka_metadata("127.0.0.1", kafka.port).cluster_id == kafka.cluster_id()


def test_signals_never_go_astray(
    private_brokers: Callable[..., LocalBrokers], bystander: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """pause/resume/kill of a broker that is not running, or whose pid is not ours, raise."""
    from edgebridge.devbrokers import Mosquitto

    never_started = Mosquitto(tmp_path / "never")
    with pytest.raises(BrokerFaultError, match="not started"):
        never_started.pause()

    # A pid saved by an earlier run and since recycled by an unrelated process: left alone.
    stale = Mosquitto(tmp_path / "stale")
    stale.pid = bystander.pid
    for fault in (stale.pause, stale.resume, stale.kill):
        with pytest.raises(BrokerFaultError, match="not ours") as caught:
            fault()
        assert caught.value.pid == bystander.pid
    assert bystander.poll() is None and "T" not in thread_states(bystander.pid)  # not killed, not stopped
    stale.stop()  # stop() stays a no-op on what is not ours: teardown calls it whatever happened

    # Our broker, dead behind our back: the next fault says so instead of signalling nobody.
    m = private_brokers("mosquitto").mosquitto
    assert m.pid is not None
    os.kill(m.pid, 9)
    assert wait_until(lambda: not pid_matches(m.pid or 0, m.marker), 10)
    with pytest.raises(BrokerFaultError, match="not running"):
        m.pause()
    assert not m.is_running()


def test_kill_leaves_no_zombie(private_brokers: Callable[..., LocalBrokers]) -> None:
    zombies_before = set(_zombie_children())  # whatever other tests of this session left behind
    local = private_brokers("mosquitto")
    m = local.mosquitto
    assert m.pid is not None
    m.kill()
    assert not m.is_running()
    assert not Path(f"/proc/{m.pid}").exists()  # reaped, not a zombie
    with pytest.raises(BrokerFaultError):
        m.kill()  # a second kill has nothing to kill: an error, not a silent success
    m.start()  # and a restart after a crash is the usual next step
    assert m.pid is not None
    os.kill(m.pid, 9)  # a death we did not cause is reaped too, by the next look at the process
    assert wait_until(lambda: not m.is_running(), 10)
    m.start()
    m.stop()
    assert set(_zombie_children()) <= zombies_before


def test_start_refuses_a_port_served_by_another_kafka_cluster(
    private_brokers: Callable[..., LocalBrokers], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the CI failure needed: a second Kafka whose port is taken by the first must not take the
    first's answers for its own. prepare() moves off a port it finds taken; the port is forced here
    as it happens in a race (free when chosen, taken by another broker before ours binds it)."""
    zombies_before = set(_zombie_children())
    first = private_brokers("kafka").kafka
    assert kafka_metadata("127.0.0.1", first.port).cluster_id == first.cluster_id()
    monkeypatch.setattr(kafka_module, "port_is_free", lambda *_a, **_k: True)
    second = Kafka(tmp_path / "second", KafkaOptions(port=first.port))
    with pytest.raises(BrokerStartError, match=f"served by Kafka cluster '{first.cluster_id()}'"):
        second.start()
    assert second.cluster_id() not in (None, first.cluster_id())
    assert not second.is_running()  # its own JVM, still booting when refused, was killed and reaped
    assert set(_zombie_children()) <= zombies_before
    assert first.is_running()
    assert kafka_metadata("127.0.0.1", first.port).cluster_id == first.cluster_id()


class _Sleeper(ManagedBroker):
    """A stand-in broker: a process that never listens, probed on a port somebody else serves."""

    name = "sleeper"

    def __init__(self, state_dir: Path, port: int, *, exits: bool) -> None:
        super().__init__(state_dir)
        self.port, self.exits = port, exits

    def prepare(self) -> None:
        pass

    def command(self) -> list[str]:
        code = "pass" if self.exits else "import time; time.sleep(300)"
        return [sys.executable, "-c", code, self.marker]

    def probe(self) -> bool:
        if self.exits:  # answer only once our process has exited (a zombie): the race, made deterministic
            wait_until(lambda: thread_states(self.pid or 0) == ["Z"], 10)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2):
            return True

    def describe(self) -> dict[str, Any]:
        return {}


@pytest.mark.parametrize(("exits", "reason"), [
    (True, "our process .* is not running"),
    (False, "listening socket is not our process's"),
])
def test_start_refuses_an_answer_from_another_process(tmp_path: Path, exits: bool, reason: str) -> None:
    zombies_before = set(_zombie_children())
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        broker = _Sleeper(tmp_path / "sleeper", other.getsockname()[1], exits=exits)
        with pytest.raises(BrokerStartError, match=reason):
            broker.start(timeout=20)
    assert not broker.is_running()
    assert set(_zombie_children()) <= zombies_before


def test_missing_tool_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgebridge.devbrokers import _process, cli

    monkeypatch.setattr(_process.shutil, "which", lambda *_a, **_k: None)
    rc = cli.main(["--state-dir", str(tmp_path), "--only", "mosquitto", "up"])
    assert rc == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "install the 'mosquitto' package" in lines[0], lines
