"""The device registry: the compacted ``iot.devices`` topic, loaded fully at start, then followed.

Record: key = device id (UTF-8), value = JSON (a tombstone deletes the device)::

    {"name": "Pump 7", "site": "plant-a", "location": "hall 2", "model": "TH-100",
     "calibration": {"temperature": {"offset": -0.4, "scale": 1.0}},
     "thresholds": {"temperature": {"min": -10, "max": 45}},
     "units": {"temperature": "Cel"}}

Every field is optional. :meth:`Registry.load` reads every partition to its end before the enricher
consumes any event; :meth:`Registry.poll` (called from the processing loop, never blocking) applies the
updates that arrive afterwards, so the next event of a device sees its new calibration without a restart.
A record that does not parse is logged, counted and ignored (the previous entry stays).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from edgebridge.envelope import is_deviceid
from edgebridge.errors import ConfigError, EdgeBridgeError
from edgebridge.units import canonical_unit

__all__ = ["REGISTRY_READER_GROUP", "DeviceInfo", "Registry", "RegistryError", "parse_device"]

log = logging.getLogger(__name__)
# the group.id librdkafka requires of this reader (assigned, never committed): kafka_acls grants it
REGISTRY_READER_GROUP = "edgebridge-registry-reader"


class RegistryError(EdgeBridgeError):
    """A registry record is not valid; ``.deviceid`` says whose."""

    def __init__(self, deviceid: str, message: str) -> None:
        super().__init__(f"{deviceid}: {message}")
        self.deviceid = deviceid


@dataclass(frozen=True)
class DeviceInfo:
    name: str | None = None
    site: str | None = None
    location: str | None = None
    model: str | None = None
    calibration: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    units: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def summary(self) -> dict[str, Any]:
        """The ``device`` block of a processed event (built once per registry entry, shared: read only)."""
        return {"registered": True, **{k: v for k in ("name", "site", "location", "model")
                                       if (v := getattr(self, k)) is not None}}

    @cached_property
    def rated(self) -> bool:
        """A rate-of-change limit on some measurement (only then does ``flag`` need the event time)."""
        return any("rate" in limits for limits in self.thresholds.values())

    @cached_property
    def canonical_units(self) -> dict[str, str]:
        """The expected unit of each measurement, normalised (what ``normalise`` compares against)."""
        return {name: canonical_unit(unit) for name, unit in self.units.items()}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in ("name", "site", "location", "model")}
        out = {k: v for k, v in out.items() if v is not None}
        for k in ("calibration", "thresholds", "units"):
            if getattr(self, k):
                out[k] = {n: dict(v) if isinstance(v, Mapping) else v for n, v in getattr(self, k).items()}
        return out


def _number_map(deviceid: str, key: str, value: Any, allowed: set[str]) -> dict[str, dict[str, float]]:
    if not isinstance(value, Mapping):
        raise RegistryError(deviceid, f"{key} must be an object")
    out: dict[str, dict[str, float]] = {}
    for name, entry in value.items():
        if not isinstance(entry, Mapping) or set(entry) - allowed:
            raise RegistryError(deviceid, f"{key}.{name} must be an object with keys {sorted(allowed)}")
        for k, v in entry.items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise RegistryError(deviceid, f"{key}.{name}.{k} must be a number")
        out[str(name)] = {k: float(v) for k, v in entry.items()}
    return out


def parse_device(deviceid: str, obj: Any) -> DeviceInfo:
    """Validate one registry value (parsed JSON) and its key; :class:`RegistryError` names what is wrong.

    The key is a device id by the one rule (:func:`edgebridge.envelope.is_deviceid`): a record under
    another key could never match an event, and ``devices import`` refuses the file that holds it.
    """
    if not is_deviceid(deviceid):
        raise RegistryError(deviceid, "not a valid device id")
    if not isinstance(obj, Mapping):
        raise RegistryError(deviceid, "a device is a JSON object")
    unknown = set(obj) - {"name", "site", "location", "model", "calibration", "thresholds", "units"}
    if unknown:
        raise RegistryError(deviceid, f"unknown keys {sorted(unknown)}")
    text = {}
    for k in ("name", "site", "location", "model"):
        if obj.get(k) is not None and not isinstance(obj[k], str):
            raise RegistryError(deviceid, f"{k} must be a string")
        text[k] = obj.get(k)
    units = obj.get("units", {})
    if not isinstance(units, Mapping) or not all(isinstance(u, str) for u in units.values()):
        raise RegistryError(deviceid, "units must map measurement names to unit strings")
    return DeviceInfo(
        **text,
        calibration=_number_map(deviceid, "calibration", obj.get("calibration", {}), {"offset", "scale"}),
        thresholds=_number_map(deviceid, "thresholds", obj.get("thresholds", {}), {"min", "max", "rate"}),
        units=dict(units),
    )


def read_topic(consumer_config: Mapping[str, Any], topic: str, timeout: float = 30.0) -> dict[str, bytes]:
    """Every live key of a compacted topic with its latest value (the devices CLI's ``get``/``list``)."""
    registry = Registry(consumer_config, topic)
    try:
        registry.load(timeout)
        return dict(registry.raw)
    finally:
        registry.close()


class Registry:
    """The devices known right now. Owns one consumer, assigned (no group) to every partition."""

    def __init__(self, consumer_config: Mapping[str, Any], topic: str) -> None:
        self.topic = topic
        self.devices: dict[str, DeviceInfo] = {}
        self.raw: dict[str, bytes] = {}
        self.updates = 0
        self.invalid = 0
        self._consumer = Consumer(
            {
                **consumer_config,
                "group.id": REGISTRY_READER_GROUP,  # required by librdkafka, never committed
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,  # reading to the end: do not let the broker sit on an empty fetch
                "isolation.level": "read_committed",
            }
        )

    def load(self, timeout: float = 60.0) -> None:
        """Read every partition from the beginning to its end; ``ConfigError`` if the topic is missing."""
        meta = self._consumer.list_topics(self.topic, timeout=10)
        tmeta = meta.topics.get(self.topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            raise ConfigError("topics.devices", f"registry topic {self.topic!r} does not exist")
        parts = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(tmeta.partitions)]
        self._consumer.assign(parts)
        pending = {p.partition for p in parts}
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise ConfigError("topics.devices", f"{self.topic!r} not read to its end in {timeout}s")
            for msg in self._consumer.consume(1000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                        continue
                    log.warning("registry read error", extra={"error": str(err)})
                    continue
                self._apply(msg.key(), msg.value())
        log.info("device registry loaded", extra={"topic": self.topic, "devices": len(self.devices)})

    def poll(self) -> int:
        """Apply the updates waiting right now (never blocks); returns how many."""
        n = 0
        for msg in self._consumer.consume(500, 0):
            if msg.error() is None:
                self._apply(msg.key(), msg.value())
                n += 1
        return n

    def get(self, deviceid: str) -> DeviceInfo | None:
        return self.devices.get(deviceid)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if not key:
            self.invalid += 1
            return
        deviceid = key.decode("utf-8", "replace")
        self.updates += 1
        if value is None:
            self.devices.pop(deviceid, None)
            self.raw.pop(deviceid, None)
            return
        try:
            self.devices[deviceid] = parse_device(deviceid, orjson.loads(value))
            self.raw[deviceid] = value
        except (orjson.JSONDecodeError, RegistryError) as exc:
            self.invalid += 1
            log.warning("invalid registry record ignored", extra={"device": deviceid, "error": str(exc)})

    def close(self) -> None:
        self._consumer.close()
