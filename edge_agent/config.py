"""``agent.toml``: the agent's configuration, one frozen dataclass per TOML table.

Built once in ``main()`` by :func:`edgebridge.config.config_from_args` (file, then ``EDGEBRIDGE_*``
environment: ``EDGEBRIDGE_DEVICE_ID``, ``EDGEBRIDGE_OUTBOX_MAX_ROWS``, ``EDGEBRIDGE_MQTT_URL``...) and
passed down explicitly. See ``deploy/agent.example.toml`` for every key with its meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edgebridge.envelope import is_deviceid
from edgebridge.errors import ConfigError
from edgebridge.settings import LogSettings, MetricsConfig, MqttSettings

__all__ = [
    "AgentConfig",
    "ClockConfig",
    "ForwarderConfig",
    "IngestConfig",
    "OutboxConfig",
    "SerialConfig",
    "SimulatedConfig",
    "SystemdConfig",
]


@dataclass(frozen=True)
class OutboxConfig:
    """``[outbox]``: the SQLite file, its durability and its bound."""

    path: Path | None = None  # default: {state_dir}/outbox.db
    synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"
    commit_every_events: int = 1000  # group commit: whichever comes first
    commit_every_ms: int = 100
    max_rows: int = 5_000_000
    max_bytes: int = 1024 * 1024 * 1024
    policy: Literal["drop_oldest", "reject_new"] = "drop_oldest"
    min_free_bytes: int = 64 * 1024 * 1024  # free-disk guard: act as full before the disk is
    integrity_check: Literal["quick", "full", "off"] = "quick"
    seq_block: int = 100_000  # seqs reserved per sidecar write (see outbox docs)

    def validate(self) -> None:
        if self.commit_every_events < 1:
            raise ConfigError("commit_every_events", "must be at least 1")
        if not 1 <= self.commit_every_ms <= 10_000:
            raise ConfigError("commit_every_ms", "must be between 1 and 10000")
        if self.max_rows < 10:
            raise ConfigError("max_rows", "must be at least 10")
        if self.max_bytes < 64 * 1024:
            raise ConfigError("max_bytes", "must be at least 65536")
        if self.min_free_bytes < 0:
            raise ConfigError("min_free_bytes", "must not be negative")
        if self.seq_block < 1:
            raise ConfigError("seq_block", "must be at least 1")


@dataclass(frozen=True)
class ForwarderConfig:
    """``[forwarder]``: how committed events go to MQTT."""

    protocol: Literal["5", "3.1.1"] = "5"
    window: int = 100  # MQTT messages published and not yet PUBACKed
    batch: bool = False  # CloudEvents JSON batches instead of one event per message
    batch_max_events: int = 500
    batch_max_bytes: int = 128 * 1024
    # In single-event mode, a backlog longer than this is drained in batches (0: never)
    catchup_batch_after: int = 0
    session_expiry: int = 7 * 24 * 3600  # seconds the broker keeps our session (MQTT 5)
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    connect_timeout: float = 10.0
    drain_on_stop: float = 5.0  # seconds to wait for receipts (PUBACKs) of what is in flight at SIGTERM
    # Receipts (see edge_agent/forwarder.py): a row is deleted only when the bridge says Kafka has it.
    # "off": deleted on the broker's PUBACK, lost if the broker loses it (a bridge without receipts).
    receipts: Literal["on", "off"] = "on"
    receipt_timeout: float = 30.0  # PUBACKed, no receipt after this: sent again (doubling per resend)
    receipt_timeout_max: float = 600.0  # the cap of that doubling
    max_unreceipted: int = 50_000  # events published and not receipted: at the bound no new row goes

    def validate(self) -> None:
        if not 1 <= self.window <= 65535:
            raise ConfigError("window", "must be between 1 and 65535")
        if self.batch_max_events < 1 or self.batch_max_bytes < 1024:
            raise ConfigError("batch_max_events", "batch limits too small")
        if self.batch_max_bytes > 256 * 1024:
            # larger messages are dead-lettered whole by the bridge (uplink.max_message_bytes), unread
            raise ConfigError("batch_max_bytes", "must be at most 262144 (the bridge's message limit)")
        if not 0 < self.receipt_timeout <= self.receipt_timeout_max:
            raise ConfigError("receipt_timeout", "need 0 < receipt_timeout <= receipt_timeout_max")
        if self.max_unreceipted < 1:
            raise ConfigError("max_unreceipted", "must be at least 1")
        if not 0 < self.reconnect_initial <= self.reconnect_max:
            raise ConfigError("reconnect_initial", "need 0 < reconnect_initial <= reconnect_max")


@dataclass(frozen=True)
class SimulatedConfig:
    """``[simulated]``: built-in sensor models (temperature, humidity, pressure, illuminance, voltage)."""

    enabled: bool = False
    interval: float = 1.0  # seconds between samples; 0: as fast as the agent commits (benchmarks)
    sensors: list[str] = field(default_factory=lambda: ["temperature", "humidity", "pressure"])
    seed: int | None = None
    limit: int = 0  # stop after this many events (0: never); for tests and benchmarks

    def validate(self) -> None:
        from edge_agent.sources.simulated import MODELS

        for name in self.sensors:
            if name not in MODELS:
                raise ConfigError("sensors", f"unknown sensor {name!r}; known: {', '.join(sorted(MODELS))}")
        if self.interval < 0:
            raise ConfigError("interval", "must not be negative")


@dataclass(frozen=True)
class SerialConfig:
    """``[serial]``: a sensor on a serial port (``/dev/ttyUSB0``, ``/dev/serial/by-id/...``)."""

    enabled: bool = False
    port: str = "/dev/ttyUSB0"
    baudrate: int = 9600
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: float = 1.0
    protocol: Literal["json", "kv", "csv"] = "json"
    # csv: header column -> "measurement:unit" (a column not listed is ignored)
    csv_columns: dict[str, str] = field(default_factory=dict)
    # kv: key -> unit
    units: dict[str, str] = field(default_factory=dict)
    max_line: int = 4096
    read_timeout: float = 0.5
    reopen_initial: float = 0.5
    reopen_max: float = 10.0


@dataclass(frozen=True)
class IngestConfig:
    """``[ingest]``: a UNIX datagram socket other local programs send JSON readings to."""

    enabled: bool = False
    socket: Path | None = None  # default: {state_dir}/ingest.sock
    mode: int = 0o660
    max_datagram: int = 65536


@dataclass(frozen=True)
class ClockConfig:
    """``[clock]``: when is the wall clock trusted (``clocksynced``)."""

    trust: Literal["auto", "always", "never"] = "auto"  # auto: the kernel's NTP status (adjtimex)


@dataclass(frozen=True)
class SystemdConfig:
    """``[systemd]``: sd_notify over ``$NOTIFY_SOCKET`` (no effect when it is unset)."""

    notify: bool = True
    stall_after: float = 0.0  # a loop silent this long stops WATCHDOG=1; 0: half of WATCHDOG_USEC or 10 s


@dataclass(frozen=True)
class AgentConfig:
    device_id: str = "device-1"
    state_dir: Path = Path("/var/lib/edge-agent")
    queue_size: int = 10_000  # source intake queue (policy: block the producing source)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    forwarder: ForwarderConfig = field(default_factory=ForwarderConfig)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    simulated: SimulatedConfig = field(default_factory=SimulatedConfig)
    serial: SerialConfig = field(default_factory=SerialConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    systemd: SystemdConfig = field(default_factory=SystemdConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogSettings = field(default_factory=LogSettings)

    def validate(self) -> None:
        if not is_deviceid(self.device_id):
            raise ConfigError("device_id", f"not a valid device id: {self.device_id!r}")
        if self.queue_size < 1:
            raise ConfigError("queue_size", "must be at least 1")

    @property
    def outbox_path(self) -> Path:
        return self.outbox.path or self.state_dir / "outbox.db"

    @property
    def ingest_path(self) -> Path:
        return self.ingest.socket or self.state_dir / "ingest.sock"
