"""Issue 9's small ones: URL credentials never in clear, CLI argument errors, the one device-id rule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.routes import parse_topic
from edge_agent.config import AgentConfig
from edgebridge.config import load_config
from edgebridge.envelope import is_deviceid
from edgebridge.errors import ConfigError, EnvelopeError
from edgebridge.settings import MqttSettings
from edgebridge.topics import device_topic, parse_device_topic
from enricher.registry import RegistryError, parse_device

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgebridge", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, **(env or {})})


# --- credentials inside an MQTT URL -----------------------------------------------------------------


def test_credentials_leave_the_url_for_username_and_a_secret_password() -> None:
    m = MqttSettings(url="mqtt://al%40ice:s3cr%3At@broker.example:1884")
    assert (m.url, m.username, m.host, m.port) == (
        "mqtt://broker.example:1884", "al@ice", "broker.example", 1884)
    assert m.password is not None and m.password.reveal() == "s3cr:t"
    assert "s3cr" not in repr(m) and "s3cr" not in str(m)
    assert MqttSettings(url="mqtts://bob@[::1]:8883").url == "mqtts://[::1]:8883"
    assert MqttSettings(url="mqtt://h:1883") == MqttSettings(url="mqtt://h:1883")


def test_credentials_given_twice_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mqtt"):
        load_config(AgentConfig, env={"EDGEBRIDGE_MQTT_URL": "mqtt://a:b@h", "EDGEBRIDGE_MQTT_USERNAME": "c"},
                    overrides={"device_id": "d1"})


def test_print_config_never_shows_a_password_from_the_url(tmp_path: Path) -> None:
    result = _run("agent", "--print-config", env={"EDGEBRIDGE_MQTT_URL": "mqtt://alice:hunter2@h:1883",
                                                  "EDGEBRIDGE_DEVICE_ID": "d1",
                                                  "EDGEBRIDGE_STATE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert 'url = "mqtt://h:1883"' in result.stdout and 'username = "alice"' in result.stdout


# --- CLI argument errors: one line, exit 2 -------------------------------------------------------------

BAD_ARGUMENTS = [
    (("topics", "create", "--partitions", "0"), "--partitions: must be at least 1"),
    (("topics", "create", "--partitions", "x"), "--partitions: not an integer"),
    (("topics", "create", "--replication-factor", "0"), "--replication-factor: must be at least 1"),
    (("topics", "acls", "--config", "/nonexistent.toml"), "cannot read config file"),
    (("devices", "put", "bad id/with slash"), "argument id: 'bad id/with slash' is not a device id"),
    (("devices", "put", "."), "is not a device id"),
    (("devices", "put", ".."), "is not a device id"),
    (("devices", "get", "a+b"), "is not a device id"),
    (("devices", "delete", "#"), "is not a device id"),
    (("devices", "put", "x", "--json", "{"), "--json: not JSON"),
    (("devices", "put", "x", "--json", "[1]"), "--json: a JSON object is expected"),
    (("demo", "--devices", "-1"), "--devices: must be at least 1"),
    (("demo", "--rate", "0"), "--rate: must be a positive number"),
    (("demo", "--events", "0"), "--events: must be at least 1"),
    (("demo", "--timeout", "nan"), "--timeout: must be a positive number"),
    (("agent", "bogus"), "invalid choice"),
    (("agent", "--config", "/nonexistent.toml", "run"), "cannot read config file"),
    (("bridge", "bogus"), "invalid choice"),
    (("enricher", "run", "--config", "/nonexistent.toml"), "cannot read config file"),
    (("sink", "sqlite"), "--db"),
    (("sink", "sqlite", "--db", "/nonexistent/dir/x.db"), "cannot open"),
    (("sink", "postgres", "--dsn", "not a dsn"), "--dsn"),
    (("sink", "postgres", "--dsn", "host=127.0.0.1 password=hunter2"), "--dsn: holds a password"),
    (("sink", "postgres", "--dsn", "postgresql://u:hunter2@127.0.0.1/db"), "--dsn: holds a password"),
    (("brokers", "up", "--timeout", "abc"), "--timeout"),
    (("brokers", "up", "--kafka-nodes", "0"), "--kafka-nodes: must be at least 1"),
    (("brokers", "up", "--kafka-nodes", "10"), "--kafka-nodes: at most 9 nodes, not 10"),
    (("brokers", "up", "--kafka-nodes", "three"), "--kafka-nodes: not an integer"),
]


@pytest.mark.parametrize(("args", "message"), BAD_ARGUMENTS, ids=" ".join)
def test_a_bad_argument_is_one_line_and_exit_2(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    result = _run(*args, env={"EDGEBRIDGE_STATE_DIR": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"edgebridge {args[0]}") and message in last, result.stderr


def test_brokers_mqtt_user_without_a_colon_is_an_argument_error(tmp_path: Path) -> None:
    result = _run("brokers", "--state-dir", str(tmp_path), "up", "--mqtt-user", "alice")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_a_sink_that_cannot_reach_its_database_says_so_in_one_line(how: str) -> None:
    dsn = "host=127.0.0.1 port=1 connect_timeout=2"
    if how == "argument":
        result = _run("sink", "postgres", "--dsn", dsn)
    else:  # the DSN (a password with it) from the environment, nothing on the command line
        result = _run("sink", "postgres", env={"EDGEBRIDGE_SINK_DSN": dsn + " password=hunter2"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("edgebridge sink: cannot connect") and "port 1" in last, result.stderr
    assert "hunter2" not in result.stderr


# --- one device-id rule --------------------------------------------------------------------------------

BAD_IDS = [".", "..", "", "a/b", "a+b", "a#b", "a b", "a\0b", "a\tb", "x" * 129]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_every_component_refuses_the_same_bad_device_ids(bad: str, tmp_path: Path) -> None:
    assert not is_deviceid(bad)
    with pytest.raises(ConfigError, match="device_id"):  # the agent's configuration
        load_config(AgentConfig, env={}, overrides={"device_id": bad, "state_dir": str(tmp_path)})
    with pytest.raises(EnvelopeError):  # the topic builders the agent and the bridge use
        device_topic(bad, "events")
    with pytest.raises(EnvelopeError):  # the parser behind the bridge's routes
        parse_device_topic(f"devices/{bad}/events")
    assert parse_topic("devices", f"devices/{bad}/events") is None  # the bridge: a bad_topic
    with pytest.raises(RegistryError):  # the registry and `devices import`
        parse_device(bad, {"site": "s"})


def test_good_ids_pass_everywhere(tmp_path: Path) -> None:
    for good in ["pump-7", "urn:dev:mac:0024befffe804ff1", "ü", "...", ".hidden", "a.b"]:
        assert is_deviceid(good)
        load_config(AgentConfig, env={}, overrides={"device_id": good, "state_dir": str(tmp_path)})
        assert parse_device_topic(device_topic(good, "events")) == (good, "events")
        assert parse_topic("devices", f"devices/{good}/events") is not None
        parse_device(good, {})
