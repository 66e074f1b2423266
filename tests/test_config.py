"""edgebridge.config: TOML + EDGEBRIDGE_* environment into frozen dataclasses."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebridge.config import (
    Secret,
    add_config_arguments,
    config_from_args,
    dump_config,
    load_config,
    looks_secret,
)
from edgebridge.errors import ConfigError


@dataclass(frozen=True)
class MqttConfig:
    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: Secret | None = None
    qos: Literal[0, 1] = 1
    keepalive_s: float = 60.0
    clean_start: bool = False
    max_inflight: int = 20

    def validate(self) -> None:
        if self.max_inflight < 1:
            raise ConfigError("max_inflight", "must be at least 1")


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str = "127.0.0.1:9092"
    topics: list[str] = field(default_factory=lambda: ["iot.events.raw"])
    librdkafka: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TlsConfig:
    ca_file: Path | None = None
    verify: bool = True


@dataclass(frozen=True)
class OutboxConfig:
    path: Path = Path("/var/lib/edgebridge/outbox.db")
    max_bytes: int = 100_000_000
    policy: Literal["drop_oldest", "block"] = "drop_oldest"


@dataclass(frozen=True)
class AppConfig:
    device_id: str = "dev-1"
    log_level: Literal["DEBUG", "INFO", "WARNING"] = "INFO"
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    outbox: OutboxConfig = field(default_factory=lambda: OutboxConfig(max_bytes=5_000))
    tls: TlsConfig | None = None

    def validate(self) -> None:
        if self.mqtt.qos == 0 and self.outbox.policy == "block":
            raise ConfigError("mqtt.qos", "QoS 0 cannot be used with outbox.policy = block")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


# -- loading -------------------------------------------------------------------------------------------


def test_defaults_without_file_or_env() -> None:
    config = load_config(AppConfig, None, env={})
    assert config == AppConfig()
    assert config.tls is None


def test_field_default_of_a_section_is_kept() -> None:
    # AppConfig.outbox's default_factory customises max_bytes; a missing [outbox] must keep it
    assert load_config(AppConfig, None, env={}).outbox.max_bytes == 5_000


def test_file_values_are_typed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        device_id = "pi-7"
        [mqtt]
        url = "mqtts://broker:8883"
        password = "hunter2"
        keepalive_s = 30          # an int is fine for a float field
        clean_start = true
        [outbox]
        path = "/data/outbox.db"
        [tls]
        ca_file = "/etc/ssl/ca.pem"
        """,
    )
    config = load_config(AppConfig, path, env={})
    assert config.device_id == "pi-7"
    assert config.mqtt.url == "mqtts://broker:8883"
    assert config.mqtt.password == Secret("hunter2")
    assert config.mqtt.keepalive_s == 30.0 and isinstance(config.mqtt.keepalive_s, float)
    assert config.mqtt.clean_start is True
    assert config.outbox.path == Path("/data/outbox.db")
    assert config.outbox.max_bytes == 5_000
    assert config.tls == TlsConfig(ca_file=Path("/etc/ssl/ca.pem"))


def test_config_is_frozen() -> None:
    config = load_config(AppConfig, None, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.device_id = "x"  # type: ignore[misc]


def test_env_beats_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[mqtt]\nurl = "mqtt://file:1883"\nmax_inflight = 5\n')
    env = {
        "EDGEBRIDGE_MQTT_URL": "mqtt://env:1883",
        "EDGEBRIDGE_MQTT_MAX_INFLIGHT": "7",
        "EDGEBRIDGE_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
        "EDGEBRIDGE_DEVICE_ID": "from-env",
    }
    config = load_config(AppConfig, path, env=env)
    assert config.mqtt.url == "mqtt://env:1883"
    assert config.mqtt.max_inflight == 7
    assert config.kafka.bootstrap == "k1:9092,k2:9092"
    assert config.device_id == "from-env"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("1", True),
        ("YES", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("Off", False),
    ],
)
def test_env_bool(text: str, expected: bool) -> None:
    assert (
        load_config(AppConfig, None, env={"EDGEBRIDGE_MQTT_CLEAN_START": text}).mqtt.clean_start is expected
    )


def test_env_coercions() -> None:
    env = {
        "EDGEBRIDGE_MQTT_KEEPALIVE_S": "2.5",
        "EDGEBRIDGE_MQTT_QOS": "0",
        "EDGEBRIDGE_MQTT_PASSWORD": "s3cret",
        "EDGEBRIDGE_MQTT_USERNAME": "",  # empty makes an optional field None
        "EDGEBRIDGE_KAFKA_TOPICS": "a, b,,c",
        "EDGEBRIDGE_OUTBOX_PATH": "/tmp/o.db",
        "EDGEBRIDGE_LOG_LEVEL": "DEBUG",
    }
    config = load_config(AppConfig, None, env=env)
    assert config.mqtt.keepalive_s == 2.5
    assert config.mqtt.qos == 0
    assert config.mqtt.password is not None and config.mqtt.password.reveal() == "s3cret"
    assert config.mqtt.username is None
    assert config.kafka.topics == ["a", "b", "c"]
    assert config.outbox.path == Path("/tmp/o.db")
    assert config.log_level == "DEBUG"


def test_env_creates_optional_section() -> None:
    config = load_config(AppConfig, None, env={"EDGEBRIDGE_TLS_VERIFY": "false"})
    assert config.tls == TlsConfig(verify=False)


def test_unrelated_env_is_ignored() -> None:
    env = {"EDGEBRIDGE_NOPE": "1", "EDGEBRIDGE_MQTT": "x", "EDGEBRIDGE_CONFIG": "/x.toml", "PATH": "/bin"}
    assert load_config(AppConfig, None, env=env) == AppConfig()


@pytest.mark.parametrize(
    ("var", "value", "key"),
    [
        ("EDGEBRIDGE_MQTT_MAX_INFLIGHT", "ten", "mqtt.max_inflight"),
        ("EDGEBRIDGE_MQTT_KEEPALIVE_S", "1s", "mqtt.keepalive_s"),
        ("EDGEBRIDGE_MQTT_CLEAN_START", "maybe", "mqtt.clean_start"),
        ("EDGEBRIDGE_MQTT_QOS", "2", "mqtt.qos"),
        ("EDGEBRIDGE_OUTBOX_POLICY", "Block", "outbox.policy"),
    ],
)
def test_bad_env_value_names_key_and_variable(var: str, value: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(AppConfig, None, env={var: value})
    assert info.value.key == key
    assert var in str(info.value)


@pytest.mark.parametrize(
    ("toml", "key", "fragment"),
    [
        ("[mqtt]\nurll = 'x'\n", "mqtt.urll", "did you mean 'url'"),
        ("typo_root = 1\n", "typo_root", "unknown key"),
        ("[mqtt]\nmax_inflight = '20'\n", "mqtt.max_inflight", "expected int"),
        ("[mqtt]\nmax_inflight = true\n", "mqtt.max_inflight", "expected int"),
        ("[mqtt]\nqos = true\n", "mqtt.qos", "must be one of 0, 1"),
        ("[mqtt]\nqos = 2\n", "mqtt.qos", "must be one of"),
        ("[mqtt]\nclean_start = 'yes'\n", "mqtt.clean_start", "expected bool"),
        ("[outbox]\npolicy = 'oldest'\n", "outbox.policy", "'drop_oldest', 'block'"),
        ("[kafka]\ntopics = 'a'\n", "kafka.topics", "expected a list"),
        ("[kafka]\ntopics = ['a', 1]\n", "kafka.topics[1]", "expected str"),
        ("mqtt = 'x'\n", "mqtt", "expected a table"),
        ("[kafka]\nlibrdkafka = 'x'\n", "kafka.librdkafka", "expected a table"),
        ("[kafka.librdkafka]\n'x' = [1]\n", "kafka.librdkafka.x", "expected a scalar"),
    ],
)
def test_bad_file_value_names_key(tmp_path: Path, toml: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(AppConfig, write(tmp_path, toml), env={})
    assert info.value.key == key
    assert fragment in str(info.value)


def test_wrong_type_for_secret_does_not_echo_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(AppConfig, write(tmp_path, "[mqtt]\npassword = 123456789\n"), env={})
    assert info.value.key == "mqtt.password"
    assert "123456789" not in str(info.value)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(AppConfig, tmp_path / "missing.toml", env={})
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        load_config(AppConfig, write(tmp_path, "[mqtt\n"), env={})
    assert info.value.key.endswith("config.toml")


def test_validate_hook_prefixes_section_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(AppConfig, None, env={"EDGEBRIDGE_MQTT_MAX_INFLIGHT": "0"})
    assert info.value.key == "mqtt.max_inflight"


def test_validate_hook_on_root_sees_whole_config() -> None:
    env = {"EDGEBRIDGE_MQTT_QOS": "0", "EDGEBRIDGE_OUTBOX_POLICY": "block"}
    with pytest.raises(ConfigError) as info:
        load_config(AppConfig, None, env=env)
    assert info.value.key == "mqtt.qos"


def test_overrides_beat_env_and_accept_dotted_keys() -> None:
    config = load_config(
        AppConfig,
        None,
        env={"EDGEBRIDGE_MQTT_URL": "mqtt://env"},
        overrides={"mqtt.url": "mqtt://override", "kafka": {"librdkafka": {"linger.ms": 5}}},
    )
    assert config.mqtt.url == "mqtt://override"
    assert config.kafka.librdkafka == {"linger.ms": "5"}


def test_overrides_are_checked_too() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(AppConfig, None, env={}, overrides={"mqtt.port": 1883})
    assert info.value.key == "mqtt.port"


def test_passthrough_flattens_dotted_keys_and_stringifies(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [kafka.librdkafka]
        "linger.ms" = 5
        enable.idempotence = true
        sasl.mechanism = "PLAIN"
        """,
    )
    env = {"EDGEBRIDGE_KAFKA_LIBRDKAFKA__SASL_PASSWORD": "pw", "EDGEBRIDGE_KAFKA_LIBRDKAFKA__LINGER_MS": "20"}
    config = load_config(AppConfig, path, env=env)
    assert config.kafka.librdkafka == {
        "linger.ms": "20",
        "enable.idempotence": "true",
        "sasl.mechanism": "PLAIN",
        "sasl.password": "pw",
    }


@dataclass(frozen=True)
class _ClientCert:
    cert_file: str = ""
    key_file: str = ""

    def validate(self) -> None:
        if not self.cert_file:
            raise ConfigError("cert_file", "is required when [client_cert] is present")


@dataclass(frozen=True)
class _Window:
    low: int = 0
    high: int = 10
    tags: tuple[str, ...] = ()
    client_cert: _ClientCert | None = None

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError("low must not exceed high")


def test_absent_optional_section_is_not_validated() -> None:
    assert load_config(_Window, None, env={}).client_cert is None
    with pytest.raises(ConfigError) as info:
        load_config(_Window, None, env={"EDGEBRIDGE_CLIENT_CERT_KEY_FILE": "/k.pem"})
    assert info.value.key == "client_cert.cert_file"


def test_post_init_value_error_becomes_config_error() -> None:
    with pytest.raises(ConfigError, match="low must not exceed high"):
        load_config(_Window, None, env={"EDGEBRIDGE_LOW": "11"})


def test_tuple_fields(tmp_path: Path) -> None:
    assert load_config(_Window, None, env={"EDGEBRIDGE_TAGS": "a,b"}).tags == ("a", "b")
    assert load_config(_Window, write(tmp_path, "tags = ['x']\n"), env={}).tags == ("x",)


@dataclass(frozen=True)
class _Inner:
    b: int = 0


@dataclass(frozen=True)
class _Clash:
    a_b: int = 0
    a: _Inner = field(default_factory=_Inner)


def test_env_name_collision_is_a_schema_bug() -> None:
    with pytest.raises(TypeError, match="EDGEBRIDGE_A_B"):
        load_config(_Clash, None, env={})


def test_repr_of_a_config_hides_passthrough_secrets() -> None:
    env = {"EDGEBRIDGE_KAFKA_LIBRDKAFKA__SASL_PASSWORD": "kafkapw", "EDGEBRIDGE_MQTT_PASSWORD": "mqttpw"}
    config = load_config(AppConfig, None, env=env)
    assert isinstance(config.kafka.librdkafka, dict)
    assert config.kafka.librdkafka["sasl.password"] == "kafkapw"
    assert "kafkapw" not in repr(config) and "mqttpw" not in repr(config)


# -- Secret --------------------------------------------------------------------------------------------


def test_secret_never_prints() -> None:
    secret = Secret("hunter2")
    assert str(secret) == "***"
    assert "hunter2" not in repr(secret)
    assert f"{secret}" == "***"
    assert "hunter2" not in repr(MqttConfig(password=secret))
    assert secret.reveal() == "hunter2"
    assert secret == Secret("hunter2") and secret != Secret("other")
    assert hash(secret) == hash(Secret("hunter2"))
    assert not Secret("")


@pytest.mark.parametrize(
    ("key", "secret"),
    [("sasl.password", True), ("ssl.key.pem", True), ("api_token", True), ("linger.ms", False)],
)
def test_looks_secret(key: str, secret: bool) -> None:
    assert looks_secret(key) is secret


# -- printing ------------------------------------------------------------------------------------------


def test_dump_masks_secrets_and_round_trips(tmp_path: Path) -> None:
    env = {
        "EDGEBRIDGE_MQTT_PASSWORD": "hunter2",
        "EDGEBRIDGE_KAFKA_LIBRDKAFKA__SASL_PASSWORD": "kafkapw",
        "EDGEBRIDGE_KAFKA_LIBRDKAFKA__LINGER_MS": "5",
        "EDGEBRIDGE_DEVICE_ID": 'we"ird\nid',
    }
    config = load_config(AppConfig, None, env=env)
    text = dump_config(config)
    assert "hunter2" not in text and "kafkapw" not in text
    assert 'password = "***"' in text and '"sasl.password" = "***"' in text
    assert "# username is not set" in text
    parsed = tomllib.loads(text)
    assert parsed["kafka"]["librdkafka"]["linger.ms"] == "5"
    reloaded = load_config(AppConfig, write(tmp_path, text), env={})
    assert reloaded.device_id == 'we"ird\nid'
    assert dataclasses.replace(reloaded.mqtt, password=config.mqtt.password) == config.mqtt
    assert reloaded.outbox == config.outbox and reloaded.tls is None


@given(
    device_id=st.text(),
    keepalive=st.floats(allow_nan=False),
    topics=st.lists(st.text()),
    passthrough=st.dictionaries(st.text(min_size=1), st.text()),
)
def test_dump_is_valid_toml_for_any_values(
    device_id: str, keepalive: float, topics: list[str], passthrough: dict[str, str]
) -> None:
    config = AppConfig(
        device_id=device_id,
        mqtt=MqttConfig(keepalive_s=keepalive),
        kafka=KafkaConfig(topics=topics, librdkafka=passthrough),
    )
    parsed = tomllib.loads(dump_config(config))
    assert parsed["device_id"] == device_id
    assert parsed["mqtt"]["keepalive_s"] == keepalive
    assert parsed["kafka"]["topics"] == topics
    assert parsed["kafka"]["librdkafka"] == {
        k: "***" if looks_secret(k) else v for k, v in passthrough.items()
    }


# -- command line --------------------------------------------------------------------------------------


def test_config_arguments(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    path = write(tmp_path, 'device_id = "from-file"\n')
    args = parser.parse_args(["--config", str(path), "--print-config"])
    assert args.print_config is True
    assert config_from_args(AppConfig, args, env={}).device_id == "from-file"
    assert "--print-config" in parser.format_help()


def test_config_path_from_environment(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    path = write(tmp_path, 'device_id = "via-env"\n')
    args = parser.parse_args([])
    assert args.print_config is False
    assert config_from_args(AppConfig, args, env={"EDGEBRIDGE_CONFIG": str(path)}).device_id == "via-env"
    assert config_from_args(AppConfig, args, env={}).device_id == "dev-1"


# -- renamed keys --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Old:
    keep: int = 0


@dataclass(frozen=True)
class _Names:
    raw: str = "iot.events.raw"


@dataclass(frozen=True)
class RenamedConfig:
    renamed_keys: ClassVar[Mapping[str, str]] = {"uplink.raw_topic": "topics.raw"}
    uplink: _Old = field(default_factory=_Old)
    topics: _Names = field(default_factory=_Names)


def _deprecations(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edgebridge.config"]


def test_a_renamed_key_works_under_both_names_and_the_old_one_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "edgebridge.config")
    new = load_config(RenamedConfig, write(tmp_path, '[topics]\nraw = "r"\n'), env={})
    assert new.topics.raw == "r" and _deprecations(caplog) == []
    old = load_config(RenamedConfig, write(tmp_path, '[uplink]\nkeep = 3\nraw_topic = "r"\n'), env={})
    assert old == RenamedConfig(uplink=_Old(keep=3), topics=_Names(raw="r"))
    assert _deprecations(caplog) == ["config key uplink.raw_topic is deprecated: use topics.raw"]
    caplog.clear()
    over = load_config(RenamedConfig, None, env={}, overrides={"uplink.raw_topic": "o"})
    assert over.topics.raw == "o" and len(_deprecations(caplog)) == 1


def test_a_renamed_environment_variable_works_and_keeps_the_precedence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "edgebridge.config")
    path = write(tmp_path, '[topics]\nraw = "file"\n')
    assert load_config(RenamedConfig, path, env={"EDGEBRIDGE_TOPICS_RAW": "env"}).topics.raw == "env"
    assert _deprecations(caplog) == []
    old = load_config(RenamedConfig, path, env={"EDGEBRIDGE_UPLINK_RAW_TOPIC": "env"})
    assert old.topics.raw == "env"  # the environment still beats the file
    assert _deprecations(caplog) == ["EDGEBRIDGE_UPLINK_RAW_TOPIC is deprecated: use EDGEBRIDGE_TOPICS_RAW"]


def test_old_and_new_name_with_the_same_value_only_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A shared environment file during a rolling upgrade sets both names, to the same value."""
    same = write(tmp_path, '[uplink]\nraw_topic = "a"\n[topics]\nraw = "a"\n')
    assert load_config(RenamedConfig, same, env={}).topics.raw == "a"
    assert _deprecations(caplog) == ["config key uplink.raw_topic is deprecated: use topics.raw"]
    caplog.clear()
    env = {"EDGEBRIDGE_UPLINK_RAW_TOPIC": "e", "EDGEBRIDGE_TOPICS_RAW": "e"}
    assert load_config(RenamedConfig, None, env=env).topics.raw == "e"
    assert _deprecations(caplog) == ["EDGEBRIDGE_UPLINK_RAW_TOPIC is deprecated: use EDGEBRIDGE_TOPICS_RAW"]


def test_old_and_new_name_in_one_source_is_an_error(tmp_path: Path) -> None:
    both = write(tmp_path, '[uplink]\nraw_topic = "a"\n[topics]\nraw = "b"\n')
    with pytest.raises(ConfigError, match=r"^topics\.raw: both uplink\.raw_topic and topics\.raw"):
        load_config(RenamedConfig, both, env={})
    env = {"EDGEBRIDGE_UPLINK_RAW_TOPIC": "a", "EDGEBRIDGE_TOPICS_RAW": "b"}
    with pytest.raises(ConfigError, match="EDGEBRIDGE_UPLINK_RAW_TOPIC and EDGEBRIDGE_TOPICS_RAW"):
        load_config(RenamedConfig, None, env=env)


# --- sections: a tool reading its part of another component's file ---------------------------------------


@dataclass(frozen=True)
class KafkaOnly:
    kafka: KafkaConfig = field(default_factory=KafkaConfig)


def test_sections_take_their_tables_and_leave_the_rest_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "enricher.toml"
    path.write_text('instance_id = "e-1"\n[mqtt]\nurl = "mqtt://x:1883"\n'
                    '[kafka]\nbootstrap = "k:9092"\n[kafka.librdkafka]\n"sasl.username" = "enricher"\n')
    with pytest.raises(ConfigError):  # without sections, the other component's keys are unknown here
        load_config(KafkaOnly, path, env={})
    config = load_config(KafkaOnly, path, env={}, sections=("kafka",))
    assert config.kafka.bootstrap == "k:9092" and config.kafka.librdkafka == {"sasl.username": "enricher"}
    # inside a section taken, an unknown key is still an error, and the environment still goes on top
    path.write_text('[kafka]\nbootstrap = "k:9092"\nbootstrp = "typo"\n')
    with pytest.raises(ConfigError, match="bootstrp"):
        load_config(KafkaOnly, path, env={}, sections=("kafka",))
    path.write_text('[kafka]\nbootstrap = "k:9092"\n')
    env = {"EDGEBRIDGE_KAFKA_BOOTSTRAP": "env:9092"}
    assert load_config(KafkaOnly, path, env=env, sections=("kafka",)).kafka.bootstrap == "env:9092"
