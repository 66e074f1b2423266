"""`edgebridge deploy init | add-devices | rotate`: the files, their modes, that the components' config
loaders read them, refusals of bad input, and (on the shipped Mosquitto) added devices and renewed
passwords taking effect at a SIGHUP while every other secret stays."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.config import BridgeConfig
from edge_agent.config import AgentConfig
from edgebridge.config import load_config
from edgebridge.deploy import mosquitto_passwords as pw
from edgebridge.devbrokers._process import require_tool
from tests.deploy.conftest import Deployment, deploy, env_file
from tests.deploy.secured_broker import Client
from tests.waiting import wait_for

SECRET_FILES = {"ca.key", "mosquitto/server.key", "mosquitto/passwords", "mosquitto/health/mosquitto_sub",
                "env/bridge.env", "devices/pump-1/mqtt-password", "devices/pump-2/mqtt-password"}
MOSQUITTO_UID = 1883  # the broker image's user (deploy/mosquitto/Dockerfile)


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _digests(out: Path) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in _files(out).items()}


def test_init_writes_every_file_with_secrets_0600_and_passwords_mosquitto_can_check(tmp_path: Path) -> None:
    out = tmp_path / "d"
    assert deploy("init", "--out", str(out), "--devices", "pump-1,pump-2") == 0
    files = _files(out)
    assert set(files) == SECRET_FILES | {
        "ca.crt", "deploy.json", "mosquitto/ca.crt", "mosquitto/server.crt", "mosquitto/acl",
        "devices/pump-1/ca.crt", "devices/pump-1/agent.toml",
        "devices/pump-2/ca.crt", "devices/pump-2/agent.toml"}
    for name in files:
        mode = stat.S_IMODE((out / name).stat().st_mode)
        assert mode == (0o600 if name in SECRET_FILES else 0o644), name
        # as root, Mosquitto's folder is given to the broker's user: it must read its key and passwords
        owner = MOSQUITTO_UID if name.startswith("mosquitto/") and os.geteuid() == 0 else os.geteuid()
        assert (out / name).stat().st_uid == owner, name
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    hashes = pw.parse((out / "mosquitto" / "passwords").read_text())
    assert set(hashes) == {"pump-1", "pump-2", "bridge-uplink-1", "bridge-downlink-1", "health"}
    for device in ("pump-1", "pump-2"):
        password = (out / "devices" / device / "mqtt-password").read_text().strip()
        assert pw.verify(password, hashes[device]) and not pw.verify(password + "x", hashes[device])
        assert files[f"devices/{device}/ca.crt"] == files["ca.crt"]
    bridge = env_file(out / "env" / "bridge.env")
    assert pw.verify(bridge["EDGEBRIDGE_UPLINK_PASSWORD"], hashes["bridge-uplink-1"])
    assert pw.verify(bridge["EDGEBRIDGE_DOWNLINK_PASSWORD"], hashes["bridge-downlink-1"])
    health = (out / "mosquitto" / "health" / "mosquitto_sub").read_text().splitlines()
    assert pw.verify(health[-1].removeprefix("-P "), hashes["health"])
    plain = {bridge["EDGEBRIDGE_UPLINK_PASSWORD"], bridge["EDGEBRIDGE_DOWNLINK_PASSWORD"],
             health[-1].removeprefix("-P "),
             *((out / "devices" / d / "mqtt-password").read_text().strip() for d in ("pump-1", "pump-2"))}
    assert len(plain) == 5 and all(len(p) >= 43 for p in plain)  # 256 random bits each
    # no password in a file that is not 0600
    for name, data in files.items():
        if name not in SECRET_FILES:
            assert not any(p.encode() in data for p in plain), name


def test_our_hash_is_mosquitto_passwds_hash(tmp_path: Path) -> None:
    """A line written by the real mosquitto_passwd checks out with our verify, and our hash of the same
    password with its salt is that line (the broker accepting ours is test_mosquitto_security's)."""
    path = tmp_path / "passwords"
    path.write_text("")
    subprocess.run([require_tool("mosquitto_passwd", "mosquitto"), "-b", str(path), "alice", "s3cret:é"],
                   check=True)
    theirs = pw.parse(path.read_text())["alice"]
    assert pw.verify("s3cret:é", theirs) and not pw.verify("s3cret", theirs)
    import base64

    salt = base64.b64decode(theirs.split("$")[3])
    assert pw.hash_password("s3cret:é", salt=salt) == theirs


def test_the_components_read_what_init_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "d"
    assert deploy("init", "--out", str(out), "--devices", "pump-1,pump-2", "--hosts",
                  "mqtt.example.net,10.0.0.5", "--device-url", "mqtts://mqtt.example.net:8883",
                  "--bridges", "2") == 0
    device = out / "devices" / "pump-1"
    # the device's unit hands mqtt-password over as the systemd credential of that name
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(device))
    agent = load_config(AgentConfig, device / "agent.toml", env={})
    assert agent.device_id == agent.mqtt.username == "pump-1"
    assert agent.mqtt.url == "mqtts://mqtt.example.net:8883" and agent.mqtt.tls
    assert str(agent.mqtt.ca_file) == "/etc/edge-agent/ca.crt"
    assert agent.mqtt.password is not None
    assert agent.mqtt.password.reveal() == (device / "mqtt-password").read_text().strip()
    for replica, name in ((1, "bridge.env"), (2, "bridge-2.env")):
        env = env_file(out / "env" / name)
        config = load_config(BridgeConfig, env=env)
        up, down = config.mqtt_for(config.uplink), config.mqtt_for(config.downlink)
        assert (up.username, down.username) == (f"bridge-uplink-{replica}", f"bridge-downlink-{replica}")
        assert up.password is not None and up.password.reveal() == env["EDGEBRIDGE_UPLINK_PASSWORD"]
        assert config.mqtt.url == "mqtts://localhost:8883"
        assert str(config.mqtt.ca_file) == "/etc/edgebridge/ca.crt"  # where compose mounts DIR/ca.crt
        assert config.uplink.share_group == "bridges"  # two replicas split the stream
    # the server certificate names every host given
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((out / "mosquitto" / "server.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # the loopback names always: the bridge and the health check reach Mosquitto through them
    assert {str(n.value) for n in names} == {"mqtt.example.net", "10.0.0.5", "localhost", "127.0.0.1"}


def test_init_never_overwrites_an_existing_directory(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d"
    assert deploy("init", "--out", str(out), "--devices", "pump-1") == 0
    before = _digests(out)
    assert deploy("init", "--out", str(out), "--devices", "pump-1,pump-2") == 2
    assert "exists" in capsys.readouterr().err
    assert _digests(out) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert deploy("init", "--out", str(empty), "--devices", "pump-1") == 2
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--devices", "a/b"], "device id 'a/b'"),
    (["--devices", "a:b"], "':' cannot be"),
    (["--devices", "ok,bridge-uplink-3"], "the deployment's own MQTT users"),
    (["--devices", "health"], "the deployment's own MQTT users"),
    (["--devices", "x,y,x"], "there twice"),
    (["--devices", ""], "no device ids"),
    (["--devices", "x", "--hosts", "bad host"], "neither an IP address nor a DNS name"),
    (["--devices", "x", "--device-url", "mqtts://elsewhere:8883"], "not among --hosts"),
    (["--devices", "x", "--bridge-url", "mqtt://localhost:1883"], "expected mqtts://host:port"),
    (["--devices", "x", "--bridge-url", "mqtts://localhost:99999"], "--bridge-url"),
    (["--devices-file", "/nonexistent/ids"], "cannot read it"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    out = tmp_path / "d"
    assert deploy("init", "--out", str(out), *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_devices_file_one_id_a_line_with_comments(tmp_path: Path) -> None:
    ids = tmp_path / "ids"
    ids.write_text("# line 1 is a comment\npump-1\n\n  pump-2  \n# pump-3\n")
    out = tmp_path / "d"
    assert deploy("init", "--out", str(out), "--devices-file", str(ids), "--devices", "pump-9") == 0
    assert sorted(p.name for p in (out / "devices").iterdir()) == ["pump-1", "pump-2", "pump-9"]


def _login(d: Deployment, user: str, password: str | None = None) -> int:
    c = d.client(user, password)
    try:
        rc = c.connect()
        return -1 if rc is None else rc.value
    finally:
        c.close()


def test_add_devices_keeps_every_secret_and_the_broker_takes_them_at_sighup(
        own_deployment: Callable[..., Deployment], clients: list[Client],
        capsys: pytest.CaptureFixture[str]) -> None:
    d = own_deployment()
    before = _digests(d.out)
    old_hashes = pw.parse((d.out / "mosquitto" / "passwords").read_text())
    assert deploy("add-devices", "--out", str(d.out), "--devices", "dev-new") == 0
    assert "dev-new" in capsys.readouterr().out
    after = _digests(d.out)
    changed = {name for name in before if after[name] != before[name]}
    assert changed == {"mosquitto/passwords"}
    new_hashes = pw.parse((d.out / "mosquitto" / "passwords").read_text())
    # the old lines are kept as they were
    assert {k: v for k, v in new_hashes.items() if k != "dev-new"} == old_hashes
    assert set(after) - set(before) == {f"devices/dev-new/{f}" for f in ("ca.crt", "agent.toml",
                                                                           "mqtt-password")}
    assert _login(d, "dev-new") != 0  # the broker has not reloaded yet
    connected = d.client("dev-b")
    clients.append(connected)
    assert connected.connect() == 0
    d.broker.signal(signal.SIGHUP)
    wait_for(lambda: _login(d, "dev-new") == 0, 10, "dev-new accepted after SIGHUP")
    assert connected.connected and connected.disconnects == []  # the reload dropped nobody
    assert _login(d, "dev-a") == 0  # the existing devices' passwords still work
    # an id that has credentials already, or a bad one, is refused; nothing changes
    for ids, message in (("dev-a", "already has credentials"), ("dev-z,a/b", "device id 'a/b'")):
        assert deploy("add-devices", "--out", str(d.out), "--devices", ids) == 2
        assert message in capsys.readouterr().err
        assert _digests(d.out) == after


def test_add_devices_needs_a_deployment_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy("add-devices", "--out", str(tmp_path), "--devices", "x") == 2
    assert "not a directory made by `edgebridge deploy init`" in capsys.readouterr().err


def test_rotate_renews_one_password_and_the_old_one_stops_working_at_sighup(
        own_deployment: Callable[..., Deployment], clients: list[Client]) -> None:
    d = own_deployment()
    old_device, old_bridge = d.password("dev-a"), d.password("bridge-downlink-1")
    before = _digests(d.out)
    assert deploy("rotate", "--out", str(d.out), "--users", "dev-a,bridge-downlink-1") == 0
    after = _digests(d.out)
    assert {n for n in before if after[n] != before[n]} == {
        "mosquitto/passwords", "devices/dev-a/mqtt-password", "env/bridge.env"}
    new_device, new_bridge = d.password("dev-a"), d.password("bridge-downlink-1")
    assert new_device != old_device and new_bridge != old_bridge
    for name in ("devices/dev-a/mqtt-password", "env/bridge.env", "mosquitto/passwords"):
        assert stat.S_IMODE((d.out / name).stat().st_mode) == 0o600
    if os.geteuid() == 0:  # still the broker's
        assert (d.out / "mosquitto" / "passwords").stat().st_uid == MOSQUITTO_UID
    assert _login(d, "dev-a", old_device) == 0  # until the broker reloads
    # connected when it reloads: dev-a with its old password, dev-b
    open_a, open_b = d.client("dev-a", old_device), d.client("dev-b")
    clients += [open_a, open_b]
    assert open_a.connect() == 0 and open_b.connect() == 0
    d.broker.signal(signal.SIGHUP)
    # the reload checks the connected clients again: the old password's connection is closed
    wait_for(lambda: open_a.disconnects, 10, "the connection with the old password closed")
    assert open_b.connected and open_b.disconnects == []
    wait_for(lambda: _login(d, "dev-a", old_device) != 0, 10, "the old password refused after SIGHUP")
    assert _login(d, "dev-a") == 0 and _login(d, "bridge-downlink-1") == 0
    assert _login(d, "bridge-downlink-1", old_bridge) != 0
    assert _login(d, "dev-b") == 0  # nobody else's changed
    assert deploy("rotate", "--out", str(d.out), "--users", "nobody") == 2


def test_run_by_another_user_than_root_it_prints_the_chown_the_broker_needs(tmp_path: Path) -> None:
    """Only root may give files away: anyone else keeps Mosquitto's folder and is told the command."""
    # a folder of /tmp, not under pytest's 0700 base: nobody must reach it
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="deploy-nonroot-") as folder:
        work = Path(folder)
        command = [sys.executable, "-m", "edgebridge", "deploy", "init", "--out", str(work / "d"),
                   "--devices", "pump-1"]
        if os.geteuid() == 0:  # as CI runs: become nobody for this command
            work.chmod(0o777)
            command = [require_tool("setpriv", "util-linux"), "--reuid=65534", "--regid=65534",
                       "--clear-groups", *command]
        _check_nonroot_run(command, work)


def _check_nonroot_run(command: list[str], work: Path) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=work)
    assert result.returncode == 0, result.stderr
    user = os.geteuid() if os.geteuid() != 0 else 65534
    for path in (work / "d" / "mosquitto").rglob("*"):
        assert path.stat().st_uid == user, path
    assert f"sudo chown -R 1883:1883 {work / 'd' / 'mosquitto'}" in result.stdout
