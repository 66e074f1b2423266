"""``edgebridge dashboard``'s configuration: where it listens, its login, and what it reads.

The token never comes from the command line (every process listing shows it): ``[web] token_file``,
or ``EDGEBRIDGE_WEB_TOKEN`` in the environment, or ``[web] token`` in the (private) TOML file.
Without a token the dashboard refuses to start, unless it listens on a loopback address and
``[web] no_login = true`` (or ``--no-login``) says so explicitly: fleet data is not for everyone
on the network.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from edgebridge.errors import ConfigError
from edgebridge.secret import Secret, read_secret_file
from edgebridge.settings import KafkaSettings, LogSettings, MqttSettings
from edgebridge.topics import KafkaTopics

__all__ = ["DashboardConfig", "SourcesSettings", "WebSettings", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WebSettings:
    """``[web]``: the listening address, the login and TLS."""

    host: str = "127.0.0.1"
    port: int = 8088
    token: Secret | None = None
    token_file: Path | None = None
    no_login: bool = False  # only on a loopback address (validate)
    cert_file: Path | None = None  # both set: HTTPS
    key_file: Path | None = None

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("port", f"must be between 0 and 65535, not {self.port}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("cert_file", "cert_file and key_file go together")
        if self.token_file is not None:
            if self.token is not None:
                raise ConfigError("token_file", "token and token_file both given: give one")
            try:
                token = read_secret_file(self.token_file)
            except OSError as exc:
                reason = exc.strerror or exc
                raise ConfigError("token_file", f"cannot read {self.token_file}: {reason}") from exc
            except ValueError as exc:
                raise ConfigError("token_file", str(exc)) from exc
            if not token:
                raise ConfigError("token_file", f"{self.token_file} is empty")
            object.__setattr__(self, "token", token)
        if self.token is not None and not self.token:
            raise ConfigError("token", "is empty")
        if self.token is None and not self.no_login:
            raise ConfigError("token", "no login configured: set [web] token_file or EDGEBRIDGE_WEB_TOKEN "
                              "(or, on 127.0.0.1 only, no_login = true)")
        if self.token is None and not is_loopback(self.host):
            raise ConfigError("no_login", f"only on a loopback address, not on {self.host!r}: "
                              "set a token to listen there")

    @property
    def tls(self) -> bool:
        return self.cert_file is not None


@dataclass(frozen=True)
class SourcesSettings:
    """``[sources]``: what the dashboard reads besides Kafka and MQTT."""

    sqlite: Path | None = None  # the SQLite sink's database (opened read-only)
    # or the PostgreSQL sink's, a libpq DSN without a password (PGPASSWORD or ~/.pgpass give it)
    postgres: str | None = None
    # the components' Prometheus endpoints, e.g. "bridge=http://127.0.0.1:9108/metrics"
    metrics: list[str] = field(default_factory=list)
    refresh: float = 1.0  # seconds between two looks at the sources: how far behind the page may be
    mqtt: bool = True  # follow the devices' retained status topic (online/offline)

    def validate(self) -> None:
        if self.sqlite is not None and self.postgres is not None:
            raise ConfigError("postgres", "sqlite and postgres both given: the dashboard reads one sink")
        if self.postgres is not None:
            try:
                import psycopg
            except ImportError as exc:
                raise ConfigError("postgres", "needs psycopg: pip install 'edgebridge[dashboard,postgres]'"
                                  ) from exc
            try:
                password = psycopg.conninfo.conninfo_to_dict(self.postgres).get("password")
            except psycopg.ProgrammingError as exc:
                raise ConfigError("postgres", str(exc).splitlines()[0]) from exc
            if password:
                raise ConfigError("postgres", "holds a password, which --print-config and logs would show: "
                                  "give it in PGPASSWORD or ~/.pgpass (libpq reads them)")
        if not 0.1 <= self.refresh <= 60:
            raise ConfigError("refresh", "must be between 0.1 and 60 seconds")
        for entry in self.metrics:
            url = entry.partition("=")[2] if "=" in entry else entry
            if not url.startswith(("http://", "https://")):
                raise ConfigError("metrics", f"{entry!r}: expected NAME=http://host:port/metrics")

    def metrics_endpoints(self) -> list[tuple[str, str]]:
        out = []
        for entry in self.metrics:
            name, eq, url = entry.partition("=")
            out.append((name, url) if eq else (entry, entry))
        return out


@dataclass(frozen=True)
class DashboardConfig:
    web: WebSettings = field(default_factory=WebSettings)
    sources: SourcesSettings = field(default_factory=SourcesSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: KafkaTopics = field(default_factory=KafkaTopics)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    log: LogSettings = field(default_factory=LogSettings)
