"""The bridge's configuration: ``bridge.toml`` plus ``EDGEBRIDGE_*`` overrides (see edgebridge.config)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from edgebridge.config import Secret
from edgebridge.envelope import DEVICE_TYPES, device_types
from edgebridge.errors import ConfigError
from edgebridge.kafka_ids import BRIDGE_DOWNLINK_GROUP
from edgebridge.settings import KafkaSettings, LogSettings, MetricsConfig, MqttSettings
from edgebridge.topics import KafkaTopics

__all__ = ["BridgeConfig", "DownlinkConfig", "UplinkConfig"]


@dataclass(frozen=True)
class UplinkConfig:
    """``[uplink]``: MQTT (events, status, command responses) into Kafka.

    ``receive_maximum`` is the MQTT 5 Receive Maximum the bridge announces: the broker sends at most that
    many unacknowledged QoS 1 messages, which bounds the bridge's in-flight work (and its memory) however
    long Kafka is away. The bridge's intake queue has the same size, so it cannot overflow while the
    broker honours it.
    """

    client_id: str = "edgebridge-bridge"
    # This connection's own MQTT user, instead of [mqtt] username/password: a broker that makes the
    # username the client id (Mosquitto's use_username_as_clientid, deploy/mosquitto/mosquitto.conf)
    # needs one user per connection, or the uplink and the downlink would take each other's session.
    username: str | None = None
    password: Secret | None = None
    # seconds the broker keeps our session (and queues for it) while we are away; unset: 7 days alone,
    # 0 in a share group (see :attr:`session_seconds`)
    session_expiry: int | None = None
    receive_maximum: int = 1000
    # payload bytes received and not yet acknowledged (intake + in flight): what bounds the bridge's
    # memory; the default keeps its peak RSS inside a 512 MB container (the figures: docs/bridge.md)
    max_inflight_bytes: int = 16 * 1024 * 1024
    share_group: str | None = None  # "$share/<group>/..." so several replicas split the stream
    events_filter: str | None = None  # default: {topic_prefix}/+/events
    status_filter: str | None = None  # default: {topic_prefix}/+/status
    responses_filter: str | None = None  # default: {topic_prefix}/+/commands/response
    max_message_bytes: int = 256 * 1024  # larger MQTT payloads are dead-lettered as "oversized"
    # event types taken from devices; any other is dead-lettered as unknown_type (edgebridge.envelope.
    # device_types says what the list must keep; docs/schema.md how a new type is rolled out)
    known_types: list[str] = field(default_factory=lambda: sorted(DEVICE_TYPES))
    max_deadletter_payload: int = 64 * 1024  # the dead letter keeps at most this much of the payload
    # librdkafka's delivery timeout; 0: never expire, so librdkafka itself keeps each partition's order
    # through any outage (a finite one re-produces expired records, which may then land out of order)
    message_timeout_ms: int = 0
    retry_backoff_max: float = 10.0  # cap of the jittered wait before re-producing failed deliveries
    linger_ms: int = 5
    compression: str = "lz4"
    drain_timeout: float = 30.0  # on SIGTERM: how long to wait for Kafka to confirm in-flight events
    # receipts to devices ({prefix}/{id}/receipts): what Kafka confirmed, at most once per interval per
    # device; off only for agents configured with receipts = "off"
    receipts: bool = True
    receipt_interval: float = 0.5

    @property
    def session_seconds(self) -> int:
        """The Session Expiry Interval we connect with: ``session_expiry`` when set; otherwise 7 days
        for a bridge alone, and 0 for a member of a share group.

        Why 0 in a group: the broker deals a shared subscription's messages to its members' sessions,
        offline ones included (Mosquitto and EMQX do; MQTT 5 allows it). A replica that dies with a
        persistent session keeps receiving its share of every device's stream into a queue nobody
        reads, for as long as the session lives, and drops it once that queue is full, PUBACKed. The
        agents resend what no receipt covered, and each resend again has its share dealt to the dead
        session. Every device's stream then has one-event holes (every second seq with two replicas)
        that close only after several receipt timeouts: events late by seconds, and more open holes
        than the enricher's bounded state keeps (``pipeline.max_seen_ranges``), whose seqs it then
        takes for duplicates. With no session to outlive the connection, the broker drops a dead
        replica from the group at once; what was in flight to it comes back once, as the agents'
        resends. Nothing is lost either way: the agents keep every event until its receipt.
        """
        if self.session_expiry is not None:
            return self.session_expiry
        return 0 if self.share_group else 7 * 24 * 3600

    def validate(self) -> None:
        _check_user(self.username, self.password)
        if self.session_expiry is not None and self.session_expiry < 0:
            raise ConfigError("session_expiry", "must be >= 0")
        if not 1 <= self.receive_maximum <= 65535:
            raise ConfigError("receive_maximum", "must be in 1..65535 (MQTT 5 Receive Maximum)")
        group = self.share_group
        if group is not None and (not group or any(c in group for c in "/+#")):
            raise ConfigError("share_group", f"not a usable share group name: {self.share_group!r}")
        if self.message_timeout_ms < 0:
            raise ConfigError("message_timeout_ms", "must be >= 0 (0: librdkafka never times out)")
        if self.max_inflight_bytes < 1024 * 1024:
            raise ConfigError("max_inflight_bytes", "must be at least 1 MiB")
        if self.max_message_bytes < 1 or self.max_deadletter_payload < 0:
            raise ConfigError("max_message_bytes", "sizes must be positive")
        device_types(self.known_types)
        if self.retry_backoff_max <= 0.1:
            raise ConfigError("retry_backoff_max", "must be > 0.1 seconds")
        if not 0.01 <= self.receipt_interval <= 60:
            raise ConfigError("receipt_interval", "must be between 0.01 and 60 seconds")


@dataclass(frozen=True)
class DownlinkConfig:
    """``[downlink]``: commands from Kafka to devices over MQTT."""

    enabled: bool = True
    client_id: str = "edgebridge-bridge-downlink"
    username: str | None = None  # this connection's own MQTT user, as [uplink] username
    password: Secret | None = None
    group_id: str = BRIDGE_DOWNLINK_GROUP
    max_in_flight: int = 100  # commands published and not yet PUBACKed

    def validate(self) -> None:
        _check_user(self.username, self.password)


def _check_user(username: str | None, password: Secret | None) -> None:
    if password is not None and username is None:
        raise ConfigError("password", "a password without a username: set username too")


@dataclass(frozen=True)
class BridgeConfig:
    """The Kafka topic names are ``[topics]``, as for the enricher and the sinks: the bridge writes
    ``raw``, ``status``, ``command_responses`` and ``deadletter``, and reads ``commands``."""

    # the names these topics had under [uplink] and [downlink]; they still work, with a warning
    renamed_keys: ClassVar[Mapping[str, str]] = MappingProxyType({
        "uplink.raw_topic": "topics.raw",
        "uplink.status_topic": "topics.status",
        "uplink.responses_topic": "topics.command_responses",
        "uplink.deadletter_topic": "topics.deadletter",
        "downlink.commands_topic": "topics.commands",
    })

    mqtt: MqttSettings = field(default_factory=MqttSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    uplink: UplinkConfig = field(default_factory=UplinkConfig)
    downlink: DownlinkConfig = field(default_factory=DownlinkConfig)
    topics: KafkaTopics = field(default_factory=KafkaTopics)
    metrics: MetricsConfig = field(default_factory=lambda: MetricsConfig(port=9109))
    log: LogSettings = field(default_factory=LogSettings)
    # /healthz answers 503 once the uplink's or the downlink's loop has been inside one turn this many
    # seconds: a healthy turn takes milliseconds, even with Kafka away (the window fills and the loop
    # waits on delivery reports in 20 ms polls); only a hang, or a producer queue full for this long,
    # stops it
    stall_after: float = 60.0

    def validate(self) -> None:
        if not self.stall_after > 0:
            raise ConfigError("stall_after", "must be > 0")

    def mqtt_for(self, link: UplinkConfig | DownlinkConfig) -> MqttSettings:
        """``[mqtt]`` with the credentials of ``link``'s own user when it has one."""
        if link.username is None:
            return self.mqtt
        return dataclasses.replace(self.mqtt, username=link.username, password=link.password)
