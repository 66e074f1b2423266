"""Configuration sections shared by several components: how to reach MQTT and Kafka, how to log.

A component's config dataclass embeds these (``mqtt: MqttSettings``, ``kafka: KafkaSettings``,
``log: LogSettings``, ``metrics: MetricsConfig``), so ``EDGEBRIDGE_MQTT_URL`` and
``EDGEBRIDGE_KAFKA_BOOTSTRAP`` (what `edgebridge brokers env` prints) configure every component alike.
Nothing here imports paho or confluent-kafka: the adapters in each component turn these into clients.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from edgebridge.config import Secret
from edgebridge.errors import ConfigError
from edgebridge.secret import read_secret_file

__all__ = ["MQTT_PASSWORD_CREDENTIAL", "KafkaSettings", "LogSettings", "MetricsConfig", "MqttSettings"]

# The name of the systemd credential (LoadCredential=mqtt-password:/etc/edge-agent/mqtt-password) that
# holds the MQTT password when no password or password_file is configured.
MQTT_PASSWORD_CREDENTIAL = "mqtt-password"


@dataclass(frozen=True)
class MqttSettings:
    """``[mqtt]``: the broker address, credentials and TLS files. ``mqtts://`` turns TLS on.

    Credentials inside the URL (``mqtt://user:pass@host``, percent-encoded as URLs are) are taken out
    of it when the settings are made, into ``username`` and ``password`` (a :class:`Secret`): so ``url``
    never holds a password, and whatever logs or prints it (a connect log line, ``--print-config``)
    cannot leak one. Giving a user or password both in the URL and in their own keys is an error.

    The password, by the first rule that applies (:meth:`validate`, so once, when the configuration is
    loaded): ``password`` (or in the URL); ``password_file``, a file holding it (an unreadable or empty
    file is a configuration error); else the systemd credential ``mqtt-password``, i.e. the file
    ``$CREDENTIALS_DIRECTORY/mqtt-password`` when systemd's ``LoadCredential=`` provides one and it is
    not empty (an empty one means no password: certificate login). So a secret never has to sit in a
    config file, the environment or on a command line, and the agent and the bridge share the rule.
    """

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: Secret | None = None
    password_file: Path | None = None  # a file holding the password (excludes password)
    ca_file: Path | None = None  # CA bundle for mqtts:// (system CAs when unset)
    cert_file: Path | None = None  # client certificate, for brokers that authenticate by certificate
    key_file: Path | None = None
    keepalive: int = 30
    topic_prefix: str = "devices"

    def __post_init__(self) -> None:
        parsed = urlparse(self.url)
        if "@" not in parsed.netloc:
            return
        if self.username is not None or self.password is not None:
            raise ValueError("url: credentials in the URL and in username/password: give them once")
        userinfo, _, hostport = parsed.netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        object.__setattr__(self, "url", parsed._replace(netloc=hostport).geturl())
        object.__setattr__(self, "username", unquote(user) if user else None)
        object.__setattr__(self, "password", Secret(unquote(password)) if colon else None)

    def validate(self) -> None:
        parsed = urlparse(self.url)
        if parsed.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parsed.hostname:
            raise ConfigError("url", f"expected mqtt://host:port or mqtts://host:port, not {self.url!r}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("cert_file", "cert_file and key_file go together")
        if not self.topic_prefix or any(c in self.topic_prefix for c in "+#"):
            raise ConfigError("topic_prefix", f"not a usable topic prefix: {self.topic_prefix!r}")
        if self.keepalive < 5:
            raise ConfigError("keepalive", "must be at least 5 seconds")
        self._read_password_file()

    def _read_password_file(self) -> None:
        """Fill ``password`` from ``password_file`` or the systemd credential (see the class)."""
        if self.password_file is not None:
            if self.password is not None:
                raise ConfigError("password_file", "password and password_file both given: give one")
            password = _read_password(self.password_file, "password_file")
            if not password:
                raise ConfigError("password_file", f"{self.password_file} is empty")
        elif self.password is None and os.environ.get("CREDENTIALS_DIRECTORY"):
            path = Path(os.environ["CREDENTIALS_DIRECTORY"], MQTT_PASSWORD_CREDENTIAL)
            try:
                password = _read_password(path, "password")
            except ConfigError as exc:
                if isinstance(exc.__cause__, FileNotFoundError):  # no such credential: no password
                    return
                raise
            if not password:
                return
        else:
            return
        object.__setattr__(self, "password", password)

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "127.0.0.1"

    @property
    def tls(self) -> bool:
        return urlparse(self.url).scheme in ("mqtts", "ssl")

    @property
    def port(self) -> int:
        return urlparse(self.url).port or (8883 if self.tls else 1883)

    def authenticate(self, client: Any) -> None:
        """Set the credentials and, for ``mqtts://``, TLS (server certificate verified; the client
        certificate when configured) on a paho client: the one place the agent and the bridge share."""
        if self.username is not None:
            password = self.password.reveal() if self.password is not None else None
            client.username_pw_set(self.username, password)
        if self.tls:
            import ssl  # only a TLS link pays for it

            client.tls_set(
                ca_certs=str(self.ca_file) if self.ca_file else None,
                certfile=str(self.cert_file) if self.cert_file else None,
                keyfile=str(self.key_file) if self.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )


def _read_password(path: Path, key: str) -> Secret:
    try:
        return read_secret_file(path)
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from exc


@dataclass(frozen=True)
class KafkaSettings:
    """``[kafka]``: bootstrap servers plus a raw librdkafka passthrough (SASL/SSL and tuning).

    ``[kafka.librdkafka]`` keys are passed to every client verbatim, except those a component declares
    protected because its delivery guarantee depends on them (``enable.idempotence``,
    ``isolation.level``, ``enable.auto.commit``...): setting one of those is a configuration error,
    not a silent weakening.
    """

    bootstrap: str = "127.0.0.1:9092"
    librdkafka: dict[str, str] = field(default_factory=dict)

    def client_config(self, ours: Mapping[str, Any], protected: Iterable[str] = ()) -> dict[str, Any]:
        """librdkafka settings for one client: the project's logging and reconnect backoff
        (:mod:`edgebridge.kafka_log`: the client must then be polled regularly), ``ours``, then the
        passthrough on top."""
        from edgebridge.kafka_log import kafka_logging

        clash = sorted(set(self.librdkafka) & set(protected))
        if clash:
            raise ConfigError(f"librdkafka.{clash[0]}", "is set by edgebridge for its delivery guarantee")
        return {"bootstrap.servers": self.bootstrap, **kafka_logging(), **ours, **self.librdkafka}


@dataclass(frozen=True)
class LogSettings:
    """``[log]``: level and line format of the stderr log."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["logfmt", "json"] = "logfmt"


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: where the Prometheus metrics and health endpoint listen.

    It lives here, not in :mod:`edgebridge.metrics`, so that reading a configuration does not import
    ``http.server`` and ``prometheus_client``: on a device every megabyte of RSS counts.
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9108

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("port", f"must be between 0 and 65535, not {self.port}")
