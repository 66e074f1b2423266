"""Where the MQTT password comes from (``edgebridge.settings.MqttSettings``): ``password``,
``password_file``, or the systemd credential ``mqtt-password``; one rule for the agent and the bridge.
Real files; the agent against a broker that checks the password is in tests/deploy/test_agent_unit.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import BridgeConfig
from edge_agent.config import AgentConfig
from edgebridge.config import Secret, dump_config, load_config
from edgebridge.errors import ConfigError

COMPONENTS = [AgentConfig, BridgeConfig]


def _credentials(tmp_path: Path, content: str) -> dict[str, str]:
    directory = tmp_path / "credentials"
    directory.mkdir()
    (directory / "mqtt-password").write_text(content)
    return {"CREDENTIALS_DIRECTORY": str(directory)}


@pytest.mark.parametrize("cls", COMPONENTS)
def test_password_file_gives_the_password_without_its_newline(
    cls: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = tmp_path / "pw"
    path.write_text("s3cret with spaces \n")
    config = load_config(cls, overrides={"mqtt.username": "u", "mqtt.password_file": str(path)}, env={})
    assert config.mqtt.password == Secret("s3cret with spaces ")
    # and from the environment, as EDGEBRIDGE_MQTT_PASSWORD_FILE
    config = load_config(cls, env={"EDGEBRIDGE_MQTT_PASSWORD_FILE": str(path)})
    assert config.mqtt.password == Secret("s3cret with spaces ")
    assert "s3cret" not in dump_config(config) and "s3cret" not in repr(config)


@pytest.mark.parametrize("cls", COMPONENTS)
def test_the_systemd_credential_is_the_password_when_none_is_configured(
    cls: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _credentials(tmp_path, "from-systemd\n").items():
        monkeypatch.setenv(name, value)
    assert load_config(cls, env={}).mqtt.password == Secret("from-systemd")
    # a configured password wins: the credential is the fallback, not an override
    assert load_config(cls, overrides={"mqtt.password": "mine"}, env={}).mqtt.password == Secret("mine")


def test_an_empty_or_absent_credential_means_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what `edgebridge agent install` leaves for certificate login
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", _credentials(tmp_path, "")["CREDENTIALS_DIRECTORY"])
    assert load_config(AgentConfig, env={}).mqtt.password is None
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "nothing-here"))
    assert load_config(AgentConfig, env={}).mqtt.password is None


@pytest.mark.parametrize(("setup", "expected"), [
    ("missing", "mqtt.password_file: cannot read {path}: No such file or directory"),
    ("directory", "mqtt.password_file: cannot read {path}: Is a directory"),
    ("empty", "mqtt.password_file: {path} is empty"),
    ("binary", "mqtt.password_file: {path} is not UTF-8 text"),
    ("huge", "mqtt.password_file: {path} is larger than 65536 bytes: not a password file"),
])
def test_a_bad_password_file_is_a_config_error_naming_the_key(
    tmp_path: Path, setup: str, expected: str
) -> None:
    path = tmp_path / "pw"
    if setup == "directory":
        path.mkdir()
    elif setup == "empty":
        path.write_text("")
    elif setup == "binary":
        path.write_bytes(b"\xff\xfe secret")
    elif setup == "huge":
        path.write_text("x" * 70000)
    with pytest.raises(ConfigError) as info:
        load_config(AgentConfig, overrides={"mqtt.password_file": str(path)}, env={})
    assert str(info.value) == expected.format(path=path)
    assert "secret" not in str(info.value)


def test_password_and_password_file_together_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("a")
    for given in ({"mqtt.password": "b"}, {"mqtt.url": "mqtt://u:b@host:1883"}):
        with pytest.raises(ConfigError) as info:
            load_config(AgentConfig, overrides={**given, "mqtt.password_file": str(path)}, env={})
        assert info.value.key == "mqtt.password_file" and "give one" in str(info.value)


def test_print_config_shows_the_file_never_the_password(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("hunter2\n")
    result = subprocess.run(
        [sys.executable, "-m", "edgebridge", "agent", "--print-config"],
        env={"EDGEBRIDGE_MQTT_PASSWORD_FILE": str(path), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    assert f'password_file = "{path}"' in result.stdout and 'password = "***"' in result.stdout


def test_an_unreadable_credential_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    # found under a real systemd whose credential directory the service could not read: Path.exists()
    # raises on EACCES, and the agent died with a traceback at every restart
    directory = tmp_path / "credentials"
    directory.mkdir()
    (directory / "mqtt-password").write_text("secret")
    directory.chmod(0o000)
    # root reads anything: take away its DAC override so the permission bits count, as for a service user
    prefix = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"] \
        if os.geteuid() == 0 else []
    try:
        result = subprocess.run(
            [*prefix, sys.executable, "-m", "edgebridge", "agent", "--print-config"],
            env={"CREDENTIALS_DIRECTORY": str(directory), "PATH": os.environ["PATH"]},
            capture_output=True, text=True, timeout=60,
        )
    finally:
        directory.chmod(0o700)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (f"edgebridge agent: mqtt.password: cannot read "
                                      f"{directory / 'mqtt-password'}: Permission denied")
