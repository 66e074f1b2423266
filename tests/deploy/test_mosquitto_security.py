"""The shipped mosquitto.conf with the files `edgebridge deploy init` wrote, against the real Mosquitto:
TLS only, nobody without a password, every device confined to its own topics, client ids that cannot
be taken over, packets bounded; the bridge's users read and write what the bridge does.

Each refusal is judged next to a legitimate message sent after it on the same connection and seen
arriving: the broker handles one connection's packets in order, so once the legitimate one arrived,
the refused one would have too.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from edgebridge.devbrokers._process import require_tool
from tests.deploy.conftest import Deployment
from tests.deploy.secured_broker import SHIPPED, Client
from tests.waiting import wait_for

SUCCESS, NOT_AUTHORIZED, BAD_CREDENTIALS = 0, 135, 134
ACCEPTED = (SUCCESS, 16)  # 16: accepted, "no matching subscribers"
EVENTS = "devices/+/events"


def _connected(d: Deployment, clients: list[Client], user: str, **kwargs: str) -> Client:
    c = d.client(user, **kwargs)
    clients.append(c)
    rc = c.connect()
    assert rc is not None and rc.value == SUCCESS, f"{user}: {rc}"
    return c


def _bridge(d: Deployment, clients: list[Client], topic_filter: str = EVENTS) -> Client:
    """bridge-uplink-1 subscribed as the bridge subscribes: a shared subscription of the group."""
    c = _connected(d, clients, "bridge-uplink-1")
    assert c.subscribe(f"$share/bridges/{topic_filter}") == 1  # granted QoS 1
    return c


def test_device_publishes_its_events_over_tls_and_the_bridge_user_receives_them(
        deployment: Deployment, clients: list[Client]) -> None:
    bridge = _bridge(deployment, clients)
    device = _connected(deployment, clients, "dev-a")
    for kind in ("events", "status", "commands/response"):
        assert device.publish(f"devices/dev-a/{kind}", f"a {kind}".encode()) in ACCEPTED
    wait_for(lambda: bridge.payloads("devices/dev-a/events") == [b"a events"], 10, "the event")
    # what the bridge reads besides events: a second uplink user subscribes to them
    other = _connected(deployment, clients, "bridge-uplink-2")
    for kind in ("status", "commands/response"):
        assert other.subscribe(f"devices/+/{kind}") == 1
    assert device.publish("devices/dev-a/status", b"online") in ACCEPTED
    assert device.publish("devices/dev-a/commands/response", b"pong") in ACCEPTED
    wait_for(lambda: len(other.payloads()) == 2, 10, "status and response")


def test_a_device_id_with_utf8_quotes_and_backslashes_works_end_to_end(
        deployment: Deployment, clients: list[Client]) -> None:
    """Any valid device id (edgebridge.envelope.is_deviceid, no ':') is a username Mosquitto accepts,
    its %u patterns match, and its agent.toml snippet reads back as the same id."""
    from edge_agent.config import AgentConfig
    from edgebridge.config import load_config

    odd = "dév-\"q\"\\"
    bridge = _bridge(deployment, clients)
    device = _connected(deployment, clients, odd)
    assert device.publish(f"devices/{odd}/events", b"odd") in ACCEPTED
    assert device.publish("devices/dev-a/events", b"spoof") == NOT_AUTHORIZED
    wait_for(lambda: bridge.payloads(f"devices/{odd}/events") == [b"odd"], 10, "the odd id's event")
    folder = deployment.out / "devices" / odd
    config = load_config(AgentConfig, folder / "agent.toml", env={"EDGEBRIDGE_STATE_DIR": "/tmp"})
    assert config.device_id == config.mqtt.username == odd


def test_a_device_cannot_publish_as_another_device_nor_write_receipts_or_commands(
        deployment: Deployment, clients: list[Client]) -> None:
    bridge = _bridge(deployment, clients, "devices/#")
    spoofer = _connected(deployment, clients, "dev-a")
    refused = {topic: spoofer.publish(topic, b"forged") for topic in (
        "devices/dev-b/events", "devices/dev-b/status", "devices/dev-b/commands/response",
        "devices/dev-a/receipts", "devices/dev-b/receipts", "devices/dev-a/commands",
        "devices/dev-b/commands",
        "elsewhere/dev-a/events")}
    assert spoofer.publish("devices/dev-a/events", b"marker") in ACCEPTED
    wait_for(lambda: b"marker" in bridge.payloads(), 10, "the marker")
    assert refused == dict.fromkeys(refused, NOT_AUTHORIZED)
    assert bridge.payloads() == [b"marker"]
    assert spoofer.connected  # refused, not thrown out: the device's own traffic goes on


def test_no_credentials_and_a_wrong_password_are_refused_at_connect(
        deployment: Deployment, clients: list[Client]) -> None:
    for user, password in ((None, None), ("dev-a", "not-its-password"),
                           ("dev-a", deployment.password("dev-b")), ("nobody", "whatever")):
        c = deployment.client(user, password)
        clients.append(c)
        rc = c.connect()
        assert rc is not None and rc.value in (NOT_AUTHORIZED, BAD_CREDENTIALS), (user, rc)
        wait_for(lambda c=c: not c.connected, 5, "the refused connection closed")
    # the right password is accepted: the refusals above are about the credentials, not the client
    _connected(deployment, clients, "dev-a")
    # use_username_as_clientid alone refuses a login without a username, so the broker cannot show
    # that allow_anonymous is false as well; the second lock is checked in the file
    assert "\nallow_anonymous false\n" in SHIPPED.read_text()


def test_no_plain_text_listener(deployment: Deployment) -> None:
    """The only port speaks TLS: a plain MQTT CONNECT gets no CONNACK."""
    with socket.create_connection(("127.0.0.1", deployment.broker.port), timeout=5) as sock:
        sock.sendall(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x0a\x00\x04abcd")
        try:
            answer = sock.recv(4)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert not answer.startswith(b"\x20"), answer
    # and TLS with a certificate from another CA is refused by the client's check
    ctx = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", deployment.broker.port), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        ctx.wrap_socket(raw, server_hostname="localhost")


def test_a_device_cannot_subscribe_to_another_devices_commands_or_receipts(
        deployment: Deployment, clients: list[Client]) -> None:
    snoop = _connected(deployment, clients, "dev-a")
    victim = _connected(deployment, clients, "dev-b")
    for kind in ("commands", "receipts"):
        assert victim.subscribe(f"devices/dev-b/{kind}") == 1
        assert snoop.subscribe(f"devices/dev-a/{kind}") == 1
    # Mosquitto 2.0 grants these subscriptions (SUBACK QoS 1, what 2.0.11 answers) and checks the
    # ACL's read right on each message it would deliver: what matters is that none arrives
    for topic_filter in ("devices/dev-b/commands", "devices/dev-b/receipts", "devices/+/commands",
                         "devices/+/receipts", "devices/#", "#"):
        assert snoop.subscribe(topic_filter) in (1, NOT_AUTHORIZED)
    downlink = _connected(deployment, clients, "bridge-downlink-1")
    uplink = _connected(deployment, clients, "bridge-uplink-1")
    assert downlink.publish("devices/dev-b/commands", b"cmd-b") in ACCEPTED
    assert uplink.publish("devices/dev-b/receipts", b"rcpt-b") in ACCEPTED
    assert downlink.publish("devices/dev-a/commands", b"cmd-a") in ACCEPTED
    assert uplink.publish("devices/dev-a/receipts", b"rcpt-a") in ACCEPTED
    wait_for(lambda: {b"cmd-b", b"rcpt-b"} <= set(victim.payloads()), 10, "dev-b's command and receipt")
    wait_for(lambda: {b"cmd-a", b"rcpt-a"} <= set(snoop.payloads()), 10, "dev-a's own command and receipt")
    assert not {b"cmd-b", b"rcpt-b"} & set(snoop.payloads())
    assert {m.topic for m in snoop.messages} == {"devices/dev-a/commands", "devices/dev-a/receipts"}


def test_another_devices_login_cannot_take_over_a_devices_client_id(
        deployment: Deployment, clients: list[Client]) -> None:
    device = _connected(deployment, clients, "dev-c", client_id="dev-c")
    intruder = _connected(deployment, clients, "dev-b", client_id="dev-c")  # its own login, dev-c's id
    assert intruder.publish("devices/dev-b/events", b"intruder") in ACCEPTED
    time.sleep(0.5)  # a takeover disconnects the first session as the second CONNECT is handled
    assert device.connected and device.disconnects == []
    assert device.publish("devices/dev-c/events", b"still here") in ACCEPTED
    # the broker knew the intruder by its username: dev-b logging in again, under yet another client
    # id, takes over the intruder's session (a new session of one client id closes the old one)
    _connected(deployment, clients, "dev-b", client_id="anything")
    wait_for(lambda: intruder.disconnects, 10, "the session taken over")
    assert device.connected and device.disconnects == []


def test_a_packet_over_max_packet_size_is_refused(deployment: Deployment, clients: list[Client]) -> None:
    bridge = _bridge(deployment, clients)
    device = _connected(deployment, clients, "dev-a")
    largest = 256 * 1024  # the largest message edgebridge accepts (uplink.max_message_bytes)
    assert device.publish("devices/dev-a/events", b"x" * largest) in ACCEPTED
    wait_for(lambda: [len(p) for p in bridge.payloads()] == [largest], 10, "the largest accepted message")
    # MQTT 5 clients are told the limit (the shipped max_packet_size) in the CONNACK
    assert device.connack_properties.MaximumPacketSize == 270336
    info = device.client.publish("devices/dev-a/events", b"y" * 270336, qos=1)  # the limit, payload alone
    wait_for(lambda: device.disconnects, 10, "the broker closing the connection")
    assert info.mid not in device.pubacks
    time.sleep(0.5)
    assert [len(p) for p in bridge.payloads()] == [largest]


def test_the_bridge_users_publish_commands_and_receipts_and_nothing_else(
        deployment: Deployment, clients: list[Client]) -> None:
    device = _connected(deployment, clients, "dev-a")
    assert device.subscribe("devices/dev-a/commands") == 1
    assert device.subscribe("devices/dev-a/receipts") == 1
    downlink = _connected(deployment, clients, "bridge-downlink-2")
    uplink = _connected(deployment, clients, "bridge-uplink-2")
    # each connection writes only what the bridge writes with it, and never events as a device
    assert downlink.publish("devices/dev-a/receipts", b"no") == NOT_AUTHORIZED
    assert downlink.publish("devices/dev-a/events", b"no") == NOT_AUTHORIZED
    assert uplink.publish("devices/dev-a/commands", b"no") == NOT_AUTHORIZED
    assert uplink.publish("devices/dev-a/events", b"no") == NOT_AUTHORIZED
    assert downlink.publish("devices/dev-a/commands", b"reboot") in ACCEPTED
    assert uplink.publish("devices/dev-a/receipts", b"1-10") in ACCEPTED
    wait_for(lambda: sorted(device.payloads()) == [b"1-10", b"reboot"], 10, "the command and the receipt")


def test_composes_health_check_round_trips_as_the_health_user_and_reads_nothing_else(
        deployment: Deployment, clients: list[Client], tmp_path: Path) -> None:
    """The health check of deploy/compose.yaml, `mosquitto_sub -t '$SYS/broker/uptime' -C 1 -W 5` with
    XDG_CONFIG_HOME=/mosquitto/secrets/health, run with the options file deploy init wrote (only its
    container path and port moved here)."""
    written = (deployment.out / "mosquitto" / "health" / "mosquitto_sub").read_text()
    assert "-p 8883\n" in written and "--cafile /mosquitto/secrets/ca.crt\n" in written
    here = written.replace("-p 8883\n", f"-p {deployment.broker.port}\n").replace(
        "--cafile /mosquitto/secrets/ca.crt\n", f"--cafile {deployment.out / 'mosquitto' / 'ca.crt'}\n")
    (tmp_path / "mosquitto_sub").write_text(here)
    command = [require_tool("mosquitto_sub", "mosquitto-clients"), "-t", "$SYS/broker/uptime", "-C", "1",
               "-W", "5"]
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    # $SYS is published every sys_interval (10 s): the first run may come before it, as in compose
    result = wait_for(lambda: (r := subprocess.run(command, env=env, capture_output=True, text=True,
                                                   timeout=15)).returncode == 0 and r, 40, "the health check")
    assert result.stdout.strip().endswith("seconds"), result.stdout
    # the health user reads $SYS only, writes nothing
    health = _connected(deployment, clients, "health")
    assert health.publish("devices/dev-a/events", b"no") == NOT_AUTHORIZED
    assert health.publish("devices/dev-a/commands", b"no") == NOT_AUTHORIZED
    bridge = _bridge(deployment, clients)
    health.subscribe("devices/#")
    device = _connected(deployment, clients, "dev-a")
    assert device.publish("devices/dev-a/events", b"seen by the bridge only") in ACCEPTED
    wait_for(lambda: bridge.payloads(), 10, "the event at the bridge")
    assert health.payloads() == []
