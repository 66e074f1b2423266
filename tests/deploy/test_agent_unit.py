"""The device side as an operator installs it: ``edgebridge agent install`` (the installed console
script, a real subprocess), the unit it writes judged by the real ``systemd-analyze`` (``verify``, and
``security --offline=true`` for its exposure score), and the agent started by that unit's ``ExecStart=``
reading its MQTT password the way systemd hands it over (``$CREDENTIALS_DIRECTORY``), against a real
Mosquitto that requires it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.install import packaged_text
from edgebridge.devbrokers import LocalBrokers, MosquittoOptions
from simulators.processes import stop_process, to_toml
from tests.agent.conftest import Subscriber
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
EDGEBRIDGE = Path(sys.executable).parent / "edgebridge"  # the console script pip installed
UNIT = Path("etc/systemd/system/edge-agent.service")
CONFIG = Path("etc/edge-agent/agent.toml")
PASSWORD = Path("etc/edge-agent/mqtt-password")
NOBODY = 65534


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is not installed: `make setup` installs it (Debian package systemd)")
    return found


def _install(*args: str, as_user: bool = False) -> subprocess.CompletedProcess[str]:
    prefix: list[str] = []
    if as_user and os.geteuid() == 0:
        # an ordinary user (nobody) who may read everything (CAP_DAC_READ_SEARCH: the interpreter may
        # live under /root) and write nothing that is not its own
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is missing"
        prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                  "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return subprocess.run([*prefix, str(EDGEBRIDGE), "agent", "install", *args], capture_output=True,
                          text=True, timeout=60)


def _exec_start(unit: Path) -> list[str]:
    lines = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0].removeprefix("ExecStart="))


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    result = _install("--root", str(root))
    assert result.returncode == 0, result.stderr
    return root


def test_install_writes_the_unit_the_config_and_the_password_file(installed: Path) -> None:
    unit, config, password = installed / UNIT, installed / CONFIG, installed / PASSWORD
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert stat.S_IMODE(config.stat().st_mode) == 0o644  # the unit's dynamic user must read it
    assert stat.S_IMODE(password.stat().st_mode) == 0o600
    assert password.read_bytes() == b""
    assert config.read_text() == packaged_text("agent.example.toml")
    # ExecStart names this installation's edgebridge, absolute, and that program runs the agent
    argv = _exec_start(unit)
    assert argv[0] == str(EDGEBRIDGE) and Path(argv[0]).is_absolute()
    assert argv[1:] == ["agent", "run", "--config", "/etc/edge-agent/agent.toml"]
    run_help = subprocess.run([argv[0], *argv[1:3], "--help"], capture_output=True, text=True, timeout=60)
    assert run_help.returncode == 0, run_help.stderr
    assert "edgebridge agent" in run_help.stdout
    # everything else of the unit is the packaged one
    others = [line for line in unit.read_text().splitlines() if not line.startswith("ExecStart=")]
    assert others == [line for line in packaged_text("edge-agent.service").splitlines()
                      if not line.startswith("ExecStart=")]


def test_modes_do_not_depend_on_the_umask(tmp_path: Path) -> None:
    # root's umask may be 077: the unit's dynamic user must still reach /etc/edge-agent/agent.toml
    result = subprocess.run(["sh", "-c", 'umask 077 && exec "$0" agent install --root "$1"', str(EDGEBRIDGE),
                             str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*")}
    assert modes == {"etc": 0o755, "etc/systemd": 0o755, "etc/systemd/system": 0o755, str(UNIT): 0o644,
                     "etc/edge-agent": 0o755, str(CONFIG): 0o644, str(PASSWORD): 0o600}
    # an operator's config the dynamic user cannot read is kept, and said
    (tmp_path / CONFIG).chmod(0o600)
    again = _install("--root", str(tmp_path))
    assert again.returncode == 0 and "cannot read it: chmod 644 /etc/edge-agent/agent.toml" in again.stdout


def test_install_prints_the_next_steps(tmp_path: Path) -> None:
    result = _install("--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for step in ("systemctl daemon-reload", "systemctl enable --now edge-agent",
                 "/etc/edge-agent/mqtt-password", "/etc/edge-agent/agent.toml", f"ExecStart={EDGEBRIDGE}"):
        assert step in result.stdout, step


def test_a_second_install_keeps_the_operators_config_and_password_renews_the_unit(installed: Path) -> None:
    config, password, unit = installed / CONFIG, installed / PASSWORD, installed / UNIT
    config.write_text('device_id = "pi-edited"\n')
    password.write_text("operator-secret\n")
    unit.write_text(unit.read_text().replace("MemoryMax=128M", "MemoryMax=1G"))  # an old or tampered unit
    result = _install("--root", str(installed))
    assert result.returncode == 0, result.stderr
    assert config.read_text() == 'device_id = "pi-edited"\n'
    assert password.read_text() == "operator-secret\n"
    assert "MemoryMax=128M" in unit.read_text()
    assert "kept" in result.stdout
    assert "warning" not in result.stdout
    password.chmod(0o644)  # an operator's slip: the installer keeps the file and says so
    loose = _install("--root", str(installed))
    assert "has mode 0644; make it root-only: chmod 600 /etc/edge-agent/mqtt-password" in loose.stdout


def test_deploy_files_are_the_packaged_ones() -> None:
    # one source of truth: deploy/ links to the files the package ships
    assert (REPO / "deploy/systemd/edge-agent.service").read_text() == packaged_text("edge-agent.service")
    assert (REPO / "deploy/agent.example.toml").read_text() == packaged_text("agent.example.toml")


def test_install_errors_are_one_line_without_a_traceback(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    bad_exec = _install("--root", str(tmp_path), "--executable", str(not_a_dir))
    assert bad_exec.returncode == 1 and "not an executable file" in bad_exec.stderr
    bad_root = _install("--root", str(not_a_dir))
    assert bad_root.returncode == 1 and "not a directory" in bad_root.stderr
    # as an ordinary user: / needs root, and a directory it may not write is reported as such
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o755)
    if os.geteuid() != 0:
        locked.chmod(0o555)
    as_user = _install(as_user=True)
    assert as_user.returncode == 1 and "must run as root" in as_user.stderr
    unwritable = _install("--root", str(locked), as_user=True)
    assert unwritable.returncode == 1
    assert "cannot write" in unwritable.stderr and "Permission denied" in unwritable.stderr
    assert not (locked / "etc").exists()
    for result in (bad_exec, bad_root, as_user, unwritable):
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_systemd_analyze_verify_accepts_the_installed_unit(installed: Path) -> None:
    result = subprocess.run([_systemd_analyze(), "verify", str(installed / UNIT)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr  # not even a warning


def _exposure(unit: Path) -> float:
    result = subprocess.run([_systemd_analyze(), "security", "--offline=true", str(unit)],
                            capture_output=True, text=True, timeout=120)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) ", result.stdout)
    assert found, result.stdout + result.stderr
    return float(found.group(1))


def test_an_executable_path_with_blanks_and_percent_is_quoted_for_systemd(tmp_path: Path) -> None:
    odd = tmp_path / "my venv 100%" / "bin"
    odd.mkdir(parents=True)
    (odd / "edgebridge").symlink_to(EDGEBRIDGE)
    root = tmp_path / "root"
    root.mkdir()
    result = _install("--root", str(root), "--executable", str(odd / "edgebridge"))
    assert result.returncode == 0, result.stderr
    unit = root / UNIT
    assert f'ExecStart="{odd / "edgebridge"}"'.replace("%", "%%") in unit.read_text()
    # systemd reads it back as one word naming the program: verify checks that it is executable
    verify = subprocess.run([_systemd_analyze(), "verify", str(unit)], capture_output=True, text=True,
                            timeout=120)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    (odd / "edgebridge").unlink()  # and would have said so, were it not
    verify = subprocess.run([_systemd_analyze(), "verify", str(unit)], capture_output=True, text=True,
                            timeout=120)
    assert f"{odd / 'edgebridge'} is not executable" in verify.stderr


def test_exposure_of_the_installed_unit_is_at_most_2(installed: Path, tmp_path: Path) -> None:
    score = _exposure(installed / UNIT)
    assert score <= 2.0, score
    # The parser reads real scores: a bare unit (what an unhardened service gets) and our unit without
    # one of its settings score higher.
    bare = tmp_path / "bare" / "edge-agent.service"
    bare.parent.mkdir()
    bare.write_text(f"[Service]\nType=notify\nExecStart={EDGEBRIDGE} agent run\n")
    assert _exposure(bare) > 9.0
    weaker = tmp_path / "weaker" / "edge-agent.service"
    weaker.parent.mkdir()
    weaker.write_text((installed / UNIT).read_text().replace("\nCapabilityBoundingSet=\n", "\n"))
    assert _exposure(weaker) > score


def test_the_unit_keeps_network_serial_notify_state_and_memory_bound(installed: Path) -> None:
    keys: dict[str, list[str]] = {}
    for line in (installed / UNIT).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            keys.setdefault(key, []).append(value)
    assert keys["Type"] == ["notify"] and keys["WatchdogSec"] == ["30"]
    assert set(keys["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "PrivateNetwork" not in keys and "PrivateDevices" not in keys
    assert keys["DevicePolicy"] == ["closed"]
    assert {v.split()[0] for v in keys["DeviceAllow"]} == {"char-ttyUSB", "char-ttyACM", "char-ttyAMA",
                                                           "char-ttyS"}
    assert all(v.split()[1] == "rw" for v in keys["DeviceAllow"])
    assert keys["SupplementaryGroups"] == ["dialout"]
    assert keys["StateDirectory"] == ["edge-agent"] and keys["MemoryMax"] == ["128M"]
    assert keys["LoadCredential"] == ["mqtt-password:/etc/edge-agent/mqtt-password"]
    for required in ("CapabilityBoundingSet", "ProtectKernelModules", "ProtectKernelLogs", "ProtectClock",
                     "RestrictNamespaces", "SystemCallFilter"):
        assert required in keys, required
    assert "@system-service" in keys["SystemCallFilter"]


# -- the password, as systemd hands it over, against a Mosquitto that requires it ---------------------


@pytest.fixture
def password_broker(private_brokers: Callable[..., LocalBrokers]) -> LocalBrokers:
    """A Mosquitto of this test that lets in only users with their password (and the ACL of a
    deployment: a device under its own id, the reader everywhere)."""
    acl = "user reader\ntopic read devices/#\ntopic write devices/+/receipts\n\n" + "".join(
        f"pattern {mode} devices/%u/{kind}\n" for mode, kind in (
            ("write", "events"), ("write", "status"), ("read", "receipts"), ("read", "commands")))
    return private_brokers("mosquitto", mosquitto=MosquittoOptions(
        users={"pi-1": "pi-secret", "reader": "reader-secret"}, acl=acl))


def _agent_config(tmp_path: Path, url: str, **mqtt: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(to_toml({
        "device_id": "pi-1", "state_dir": str(tmp_path / "state"),
        "mqtt": {"url": url, "username": "pi-1", **mqtt},
        "simulated": {"enabled": True, "interval": 0.02, "limit": 20},
        "systemd": {"notify": False}, "metrics": {"enabled": False}, "log": {"level": "INFO"},
        "forwarder": {"reconnect_initial": 0.1, "reconnect_max": 0.5},
    }))
    return path


def _start_agent(installed: Path, config: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # the unit's own command line, with the test's config in place of /etc/edge-agent/agent.toml
    argv = _exec_start(installed / UNIT)
    argv[argv.index("--config") + 1] = str(config)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
    clean.pop("CREDENTIALS_DIRECTORY", None)
    with log.open("wb") as out:
        return subprocess.Popen(argv, env={**clean, **env}, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.brokers
def test_the_agent_reads_its_password_from_the_systemd_credential(
    installed: Path, tmp_path: Path, password_broker: LocalBrokers
) -> None:
    mosquitto = password_broker.mosquitto
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "mqtt-password").write_text("pi-secret\n")  # as an operator's editor leaves it
    config = _agent_config(tmp_path, mosquitto.url)
    assert "password" not in config.read_text()  # the secret is in the credential only
    sub = Subscriber("127.0.0.1", mosquitto.port, "devices/+/events", username="reader",
                     password="reader-secret")
    proc = _start_agent(installed, config, {"CREDENTIALS_DIRECTORY": str(credentials)}, tmp_path / "ok.log")
    try:
        wait_for(lambda: len(sub.events()) >= 20, 60, "the agent's 20 events through the password login")
    finally:
        stop_process(proc)
        sub.close()
    assert sorted({e["seq"] for e in sub.events()}) == list(range(1, 21))
    assert {m.topic for m in sub.snapshot()} == {"devices/pi-1/events"}
    assert "pi-secret" not in (tmp_path / "ok.log").read_text()


@pytest.mark.brokers
def test_a_wrong_credential_is_refused_by_the_broker(
    installed: Path, tmp_path: Path, password_broker: LocalBrokers
) -> None:
    # the negative control of the test above: the broker really checks the password the agent read
    mosquitto = password_broker.mosquitto
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt-password").write_text("not-the-secret")
    log = tmp_path / "wrong.log"
    sub = Subscriber("127.0.0.1", mosquitto.port, "devices/+/events", username="reader",
                     password="reader-secret")
    proc = _start_agent(installed, _agent_config(tmp_path, mosquitto.url),
                        {"CREDENTIALS_DIRECTORY": str(credentials)}, log)
    try:
        wait_for(lambda: "mqtt connection refused" in log.read_text(), 30, "the broker's refusal")
        time.sleep(1.0)  # time enough for the first events, had the login succeeded
        assert proc.poll() is None  # refused logins are retried, never fatal
    finally:
        stop_process(proc)
        sub.close()
    assert sub.events() == []
    assert "not-the-secret" not in log.read_text()


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", "mqtt.password_file: cannot read {path}: No such file or directory"),
    ("directory", "mqtt.password_file: cannot read {path}: Is a directory"),
    ("empty", "mqtt.password_file: {path} is empty"),
])
def test_a_bad_password_file_stops_the_agent_with_a_clear_error(
    installed: Path, tmp_path: Path, setup: str, message: str
) -> None:
    path = tmp_path / "mqtt-password"
    if setup == "directory":
        path.mkdir()
    elif setup == "empty":
        path.write_text("")
    config = _agent_config(tmp_path, "mqtt://127.0.0.1:1", password_file=str(path))
    log = tmp_path / "bad.log"
    proc = _start_agent(installed, config, {}, log)
    assert proc.wait(60) == 2
    text = log.read_text()
    assert message.format(path=path) in text, text
    assert "Traceback" not in text
