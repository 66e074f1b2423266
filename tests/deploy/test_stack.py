"""The cloud stack as an operator runs it, end to end, on a real Docker engine.

Images built from a debootstrap base (no registry), `edgebridge deploy init` for a fleet, the shipped
deploy/compose.yaml and deploy/mosquitto/mosquitto.conf up, a fleet of simulated devices outside the
stack sending through TLS with a password each, then, read back independently: every event once in
iot.events.processed and every reading once in the SQLite sink's database. The same shipped broker
refuses a client without credentials and a device publishing as another. Then the stack goes down.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edgebridge.envelope import encode, new_reading
from simulators.audit import read_topic
from simulators.fleet import device_ids
from tests.deploy.docker_stack import DEPLOY, ROOT, ComposeProject, ensure_base_image, ensure_engine, run
from tests.waiting import wait_for

pytestmark = pytest.mark.docker

DEVICES = device_ids("stack-", 8)  # the names `simulate fleet --id-prefix stack-` gives
SERVICES = ["kafka", "mosquitto", "bridge", "enricher", "sink"]
SINK_UID = 10001  # the edgebridge image's user (deploy/Dockerfile)


@dataclass
class Stack:
    project: ComposeProject
    secrets: Path
    sink_dir: Path
    work: Path

    def password(self, device: str) -> str:
        return (self.secrets / "devices" / device / "mqtt-password").read_text().strip()

    @property
    def admin_config(self) -> Path:
        """The admin's [kafka] settings for a client on this machine (deploy init's kafka-clients/)."""
        return self.secrets / "kafka-clients" / "admin.toml"

    def kafka_settings(self) -> tuple[str, dict[str, str]]:
        """(bootstrap, librdkafka settings) of the admin, for a consumer in this process."""
        from edgebridge.config import load_config
        from edgebridge.ops.config import OpsConfig

        kafka = load_config(OpsConfig, self.admin_config, env={}).kafka
        return kafka.bootstrap, dict(kafka.librdkafka)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("stack")
    ensure_engine(work)
    base = ensure_base_image(work)
    run([str(DEPLOY / "build-images.sh"), "--base", base], cwd=ROOT, env={"PYTHON": sys.executable},
        timeout=1800)
    secrets = work / "secrets"
    run([sys.executable, "-m", "edgebridge", "deploy", "init", "--out", str(secrets),
         "--devices", ",".join(DEVICES)])
    sink_dir = work / "sink"
    sink_dir.mkdir()
    os.chown(sink_dir, SINK_UID, SINK_UID)
    project = ComposeProject(f"ebstack{uuid.uuid4().hex[:6]}",
                             {"EDGEBRIDGE_SECRETS": str(secrets), "EDGEBRIDGE_SINK_DATA": str(sink_dir)})
    try:
        project("up", "-d", timeout=900)
        project.wait_healthy(SERVICES)
        yield Stack(project, secrets, sink_dir, work)
    finally:
        (work / "compose.log").write_text(project.logs(tail=1000))
        project("down", "-v", "--timeout", "30", check=False)


def test_a_fleet_over_tls_arrives_once_in_kafka_and_in_the_sink(stack: Stack) -> None:
    passwords = stack.work / "passwords"
    passwords.write_text("".join(f"{d}:{stack.password(d)}\n" for d in DEVICES))
    passwords.chmod(0o600)
    expect = stack.work / "fleet.json"
    fleet = run([sys.executable, "-m", "edgebridge", "simulate", "fleet", "--url", "mqtts://localhost:8883",
                 "--ca-file", str(stack.secrets / "ca.crt"), "--username", "{device}",
                 "--passwords", str(passwords), "--devices", str(len(DEVICES)), "--id-prefix", "stack-",
                 "--rate", "10", "--duration", "15", "--expect", str(expect)], timeout=300)
    # every device logged in with its password and had every reading receipted (from Kafka)
    summary = fleet.stdout + fleet.stderr
    assert "0 failed" in summary and " 0 left in the outboxes" in summary, summary
    audit_cmd = [sys.executable, "-m", "edgebridge", "simulate", "audit", "--expect", str(expect),
                 "--config", str(stack.admin_config), "--sqlite", str(stack.sink_dir / "readings.db")]

    def audited() -> bool:
        # the sink may still be writing the last batch: the audit is repeated until it passes
        return run(audit_cmd, check=False, timeout=300).returncode == 0

    try:
        wait_for(audited, timeout=120, what="the audit of Kafka and the sink", every=5)
    except AssertionError:
        result = run(audit_cmd, check=False)
        pytest.fail(f"audit failed:\n{result.stdout}\n{result.stderr[-2000:]}\n{stack.project.logs()}")
    report = run(audit_cmd).stdout
    # the readings were really there: the fleet ran 15 s at 10 readings/s for each device
    committed = sum(int(line.split("committed ")[1].split(",")[0]) for line in report.splitlines()
                    if line.startswith("total:"))
    assert committed >= 2 * len(DEVICES) * 100, report


def _client(stack: Stack, client_id: str, username: str | None,
            password: str | None) -> tuple[mqtt.Client, list[ReasonCode]]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(stack.secrets / "ca.crt"))
    if username is not None:
        client.username_pw_set(username, password)
    connacks: list[ReasonCode] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: connacks.append(rc)
    client.connect("localhost", 8883)
    client.loop_start()
    wait_for(lambda: connacks, timeout=20, what="a CONNACK")
    return client, connacks


def test_a_client_without_credentials_is_refused(stack: Stack) -> None:
    client, connacks = _client(stack, "anonymous-probe", None, None)
    client.loop_stop()
    client.disconnect()
    assert connacks[0].is_failure and connacks[0].getName() == "Not authorized", connacks


def test_a_wrong_password_is_refused(stack: Stack) -> None:
    client, connacks = _client(stack, DEVICES[0], DEVICES[0], stack.password(DEVICES[1]))
    client.loop_stop()
    client.disconnect()
    assert connacks[0].is_failure and connacks[0].getName() in ("Bad user name or password", "Not authorized")


def test_a_device_cannot_publish_as_another(stack: Stack) -> None:
    """stack-1 publishes one event on its own topic and one on stack-2's: Mosquitto refuses the
    second (PUBACK "Not authorized"), and Kafka holds the first and never the second."""
    client, connacks = _client(stack, "stack-1", "stack-1", stack.password("stack-1"))
    assert not connacks[0].is_failure, connacks
    pubacks: dict[int, ReasonCode] = {}
    client.on_publish = lambda _c, _u, mid, rc, _p: pubacks.__setitem__(mid, rc)
    # the event ids mark the two events wherever they may end up in Kafka
    own_event = new_reading("stack-1", 10_000_001, {"temperature": {"v": 1.0, "u": "C"}})
    other_event = new_reading("stack-2", 10_000_001, {"temperature": {"v": 2.0, "u": "C"}})
    own = client.publish("devices/stack-1/events", encode(own_event), qos=1)
    other = client.publish("devices/stack-2/events", encode(other_event), qos=1)
    wait_for(lambda: own.mid in pubacks and other.mid in pubacks, timeout=30, what="both PUBACKs")
    client.loop_stop()
    client.disconnect()
    assert not pubacks[own.mid].is_failure, pubacks
    assert pubacks[other.mid].getName() == "Not authorized", pubacks
    bootstrap, settings = stack.kafka_settings()

    def marked(topic: str) -> list[bytes]:
        ids = (own_event.id.encode(), other_event.id.encode())
        return [v for v in read_topic(bootstrap, topic, settings=settings) if any(i in v for i in ids)]

    found = wait_for(lambda: marked("iot.events.raw"), timeout=60, what="the device's own event in raw",
                     every=2)
    assert len(found) == 1 and own_event.id.encode() in found[0], found
    assert marked("iot.events.deadletter") == []


def test_the_stack_goes_down_cleanly(stack: Stack) -> None:
    assert set(stack.project.health()) >= set(SERVICES)
    stack.project("stop", "--timeout", "30")
    states = {service: c["State"] for service, c in stack.project.containers().items()}
    # ours and Mosquitto end on SIGTERM with status 0 (commit, flush, close), none was killed after
    # the grace period (137) or by the memory limit
    for service in ("bridge", "enricher", "sink", "mosquitto"):
        state = states[service]
        assert isinstance(state, dict) and state["ExitCode"] == 0 and not state["OOMKilled"], (service, state)
    assert stack.project("down", "-v", "--timeout", "30").returncode == 0
    assert stack.project.containers() == {}
