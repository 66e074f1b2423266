"""The generator of :mod:`simulators.hostile`: valid material, MQTT payloads, raw Kafka records."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, NamedTuple

from simulators.hostile.mutations import (
    GAP,
    LITERALS,
    MUTATIONS,
    OBJECT_MUTATIONS,
    PROCESSED,
    READING,
    TEXT_MUTATIONS,
    Raw,
    dumps,
    finish,
    padded,
)

__all__ = ["CLASSICS", "KAFKA_MAX", "MAX_BYTES", "NESTED_BATCH", "Hostile", "Payload", "RawRecord"]

MAX_BYTES = 256 * 1024  # the bridge's uplink.max_message_bytes and the enricher's pipeline.max_bytes
KAFKA_MAX = 1_000_000  # librdkafka's message.max.bytes: the largest record a default producer sends
#: a batch whose first item is a list nested 300 deep (602 bytes): orjson reads it (1,024 levels) but
#: cannot write it again (255): it must cost one dead letter, never the bridge.
NESTED_BATCH = b"[" * 301 + b"]" * 301

#: Fixed payloads, each a known past or plausible failure, sent before the generated ones.
CLASSICS: dict[str, bytes] = {
    "nested_batch_300": NESTED_BATCH,
    "empty": b"",
    "null": b"null",
    "empty_batch": b"[]",
    "empty_object": b"{}",
    "batch_of_empty_object": b"[{}]",
    "batch_of_null": b"[null]",
    "batch_of_scalars": b'[1, "x", true, null, 1.5, []]',
    "deep_1024_arrays": b"[" * 1024 + b"]" * 1024,
    "deep_1025_arrays": b"[" * 1025 + b"]" * 1025,
    "deep_1025_objects": b'{"k":' * 1025 + b"1" + b"}" * 1025,
    "deep_100000_open": b"[" * 100_000,
    "nan": b"NaN",
    "bom_object": b"\xef\xbb\xbf{}",
    "lone_surrogate": b'"\\ud800"',
    "nul_bytes": b"\x00" * 64,
    "ff_bytes": b"\xff" * 64,
    "batch_4096_empty_objects": b"[" + b",".join([b"{}"] * 4096) + b"]",  # at the item limit: 4,096 refusals
    "batch_4097_empty_objects": b"[" + b",".join([b"{}"] * 4097) + b"]",  # past it: refused whole
}

_NAMES = ("temperature", "humidity", "pressure", "door", "state", "voltage", "lux")
_UNITS = {"temperature": "Cel", "humidity": "%RH", "pressure": "Pa", "voltage": "V", "lux": "lx"}
_HEX = "0123456789abcdef"


class Payload(NamedTuple):
    """One MQTT message: publish ``value`` on ``{prefix}/{device}/events`` (``device`` may be hostile)."""

    device: str
    value: bytes
    kind: str  # what made it: "classic:<name>", "event:<mutation>", "batch", "random_bytes", ...


class RawRecord(NamedTuple):
    """One record to produce into the raw topic as it is (what a misbehaving upstream would write)."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] | None
    partition: int  # -1: Kafka's partitioner
    kind: str


class Hostile:
    """The generator: one :class:`random.Random` of ``seed`` and per device counters of valid seqs."""

    def __init__(self, seed: int, devices: Sequence[str], *, max_bytes: int = MAX_BYTES,
                 others: Sequence[str] = ("victim-1",)) -> None:
        self.rng = random.Random(seed)
        self.devices = list(devices)
        self.others = list(others) + self.devices  # whom a spoofed event claims to be
        self.max_bytes = max_bytes
        rand = self.rng.getrandbits
        # two epochs per device and the legacy one (no attribute): well inside the enricher's eight
        self._epochs = {d: [f"{rand(64):016x}", f"{rand(64):016x}", None] for d in devices}
        self._seq: dict[tuple[str, str | None], int] = {}
        self._sent: list[dict[str, Any]] = []  # recent valid events, for replays
        self._ids = 0

    # -- valid material --------------------------------------------------------------------------------

    def event(self, device: str, *, gap: bool = False) -> dict[str, Any]:
        """A valid event of ``device``: the next seq of one of its epochs."""
        rng = self.rng
        epoch = rng.choice(self._epochs[device]) if device in self._epochs else None
        seq = self._seq[(device, epoch)] = self._seq.get((device, epoch), 0) + 1
        self._ids += 1
        minute, second, milli = rng.randrange(60), rng.randrange(60), rng.randrange(1000)
        obj: dict[str, Any] = {
            "specversion": "1.0", "id": f"{rng.getrandbits(48):012x}-{self._ids}",
            "source": f"/devices/{device}", "type": READING,
            "time": f"2024-05-01T12:{minute:02d}:{second:02d}.{milli:03d}Z", "deviceid": device, "seq": seq,
        }
        if epoch is not None:
            obj["epoch"] = epoch
        if rng.random() < 0.3:
            obj.update(bootid="b" + "".join(rng.choices(_HEX, k=8)), monotime=rng.randrange(2**40),
                       clocksynced=rng.random() < 0.5)
        if gap and seq > 1:
            first = rng.randint(1, seq - 1)
            last = rng.randint(first, seq - 1)
            obj.update(type=GAP, data={"first": first, "last": last, "count": last - first + 1,
                                       "reason": rng.choice(("evicted", "quarantined", "rejected"))})
        else:
            names = rng.sample(_NAMES, rng.randint(1, 4))
            obj["data"] = {n: self._reading(n) for n in names}
        return obj

    def _remember(self, obj: dict[str, Any]) -> None:
        """Keep a copy of an event that goes out valid, for a replay (a duplicate) later. Only those:
        a replay of one that never arrived would come in below the device's top seq, out of order."""
        if len(self._sent) >= 64:
            self._sent.pop(self.rng.randrange(64))
        self._sent.append(dict(obj))

    def _reading(self, name: str) -> dict[str, Any]:
        rng = self.rng
        if name == "door":
            return {"v": rng.random() < 0.5}
        if name == "state":
            return {"v": rng.choice(("ok", "warn", "fault", ""))}
        return {"v": round(rng.uniform(-50, 150), 3), "u": _UNITS[name]}

    # -- MQTT payloads -------------------------------------------------------------------------------

    def mqtt(self, count: int, *, classics: bool = True, oversized: int = 8) -> list[Payload]:
        """``count`` payloads (at least): :data:`CLASSICS` first, ``oversized`` ones over
        ``max_bytes`` spread among them, the rest generated."""
        rng = self.rng
        out: list[Payload] = []
        if classics:
            out += [Payload(self.devices[i % len(self.devices)], value, f"classic:{name}")
                    for i, (name, value) in enumerate(CLASSICS.items())]
        big = sorted(rng.sample(range(count), min(oversized, count)))
        while len(out) < count:
            device = rng.choice(self.devices)
            if big and len(out) >= big[0]:
                big.pop(0)
                out.append(Payload(device, self._oversized(device), "oversized"))
                continue
            roll = rng.random()
            if roll < 0.50:
                value, kind = self._mutated(device)
                out.append(Payload(device, value, f"event:{kind}"))
            elif roll < 0.75:
                out.append(Payload(device, self._batch(device), "batch"))
            elif roll < 0.80:
                obj = self.event(device)
                self._remember(obj)
                out.append(Payload(device, dumps(obj), "valid"))
            elif roll < 0.85:
                out.append(Payload(device, dumps(self.event(device, gap=True)), "valid_gap"))
            elif roll < 0.92:
                out.append(Payload(device, self._random_bytes(), "random_bytes"))
            else:
                out.append(Payload(device, dumps(self.random_json(rng.randint(0, 5))), "random_json"))
        return out

    def _mutated(self, device: str) -> tuple[bytes, str]:
        rng = self.rng
        name, mutate = rng.choice(MUTATIONS)
        base = self.event(device, gap=name.startswith("gap"))
        return finish(mutate(self, base)), name

    def _batch(self, device: str) -> bytes:
        """A JSON batch mixing valid events, mutated ones and, now and then, stranger items."""
        rng = self.rng
        items: list[Any] = []
        valid: list[dict[str, Any]] = []
        for _ in range(rng.choice((1, 2, 3, 5, 10, 30, 100))):
            roll = rng.random()
            if roll < 0.45:
                valid.append(self.event(device, gap=rng.random() < 0.05))
                items.append(valid[-1])
            elif roll < 0.90:
                name, mutate = rng.choice(OBJECT_MUTATIONS)
                items.append(mutate(self, self.event(device, gap=name.startswith("gap"))))
            elif roll < 0.95 and self._sent:
                items.append(rng.choice(self._sent))  # a replay: a duplicate (device, epoch, seq)
            else:
                items.append(self.random_json(rng.randint(0, 3)))
        text = dumps(items)
        if rng.random() < 0.15:  # damage the batch as a whole, too
            return rng.choice(TEXT_MUTATIONS)[1](self, text)
        if len(text) <= self.max_bytes:
            for obj in valid:
                self._remember(obj)
        return text

    def _oversized(self, device: str) -> bytes:
        """Over ``max_bytes``: a valid-looking event with a huge string, or random bytes."""
        rng = self.rng
        size = rng.choice((self.max_bytes + 1, self.max_bytes + 100, 300 * 1024, 512 * 1024, 1024 * 1024))
        if rng.random() < 0.5:
            return self.rng.randbytes(size)
        return padded(self.event(device), size)

    def _random_bytes(self) -> bytes:
        rng = self.rng
        size = int(2 ** rng.uniform(0, 18)) if rng.random() < 0.97 else self.max_bytes  # up to the limit
        return rng.randbytes(min(size, self.max_bytes))

    def random_json(self, depth: int) -> Any:
        rng = self.rng
        roll = rng.random()
        if depth <= 0 or roll < 0.3:
            return rng.choice((None, True, False, 0, -1, 2**63 - 1, 1.5, "", "a", "\u0000", "é", 1e-300,
                               Raw(rng.choice(LITERALS))))
        if roll < 0.65:
            return [self.random_json(depth - 1) for _ in range(rng.randint(0, 4))]
        names = ("id", "seq", "data", "type", "deviceid", "epoch", "v", "u", "x", "")
        keys = rng.sample(names, rng.randint(0, 4))
        return {k: self.random_json(depth - 1) for k in keys}

    # -- raw Kafka records ---------------------------------------------------------------------------

    def raw(self, count: int, *, partitions: int, keyless: Sequence[str] = ()) -> list[RawRecord]:
        """``count`` records for the raw topic: the MQTT grammar as single events (batches and garbage
        too), keyed by their device, by another, by nothing or by bytes that are no device id; a few
        over the enricher's ``max_bytes`` and up to librdkafka's default record limit; hostile headers.
        A record without a key carries an event of one of ``keyless`` (its own devices, sent to one
        partition each, so their seqs keep their order as the MQTT grammar promises)."""
        rng = self.rng
        out: list[RawRecord] = []
        for name, value in CLASSICS.items():
            out.append(RawRecord(self.devices[0].encode(), value, None, -1, f"classic:{name}"))
        out.append(RawRecord(None, None, None, 0, "tombstone"))
        out.append(RawRecord(self.devices[0].encode(), None, None, -1, "tombstone_keyed"))
        first = self.devices[0].encode()
        # the last one as large as a default producer sends (its ~30 bytes of record overhead aside): no
        # room left for the headers a dead letter adds
        for size in (self.max_bytes + 1, 512 * 1024, KAFKA_MAX - 64 - len(first)):
            out.append(RawRecord(first, padded(self.event(self.devices[0]), size), None, -1, "oversized"))
        while len(out) < count:
            if keyless and rng.random() < 0.10:
                device = rng.choice(keyless)
                value, kind = self._raw_value(device)
                partition = keyless.index(device) % partitions
                out.append(RawRecord(None, value, self._headers(), partition, kind))
                continue
            device = rng.choice(self.devices)
            value, kind = self._raw_value(device)
            key, partition = self._raw_key(device), -1
            if key is None:  # keyless, and of a keyed device: an event invalid however it is keyed
                partition = rng.randrange(partitions)
                value, kind = dumps(self._spoofed_for_keyless()), "keyless_foreign"
            out.append(RawRecord(key, value, self._headers(), partition, kind))
        return out

    def _raw_key(self, device: str) -> bytes | None:
        """Mostly the device's own key; else another device's (``device_mismatch``), bytes that are no
        device id, or none."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.85:
            return device.encode()
        if roll < 0.90:
            return rng.choice(self.others).encode()
        if roll < 0.95:
            return rng.choice((b"", b"\xff\xfe", device.encode() + b"\x00", b"x" * 4096))
        return None

    def _raw_value(self, device: str) -> tuple[bytes, str]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.55:
            return self._mutated(device)
        if roll < 0.75:
            return dumps(self.event(device, gap=rng.random() < 0.1)), "valid"
        if roll < 0.80:
            obj = self.event(device)
            obj.update(type=PROCESSED, data={"readings": obj["data"], "x": [[[1]]]})
            return dumps(obj), "processed_type"
        if roll < 0.85:
            return self._batch(device), "batch"
        if roll < 0.93:
            return self._random_bytes(), "random_bytes"
        return dumps(self.random_json(rng.randint(0, 5))), "random_json"

    def _spoofed_for_keyless(self) -> dict[str, Any]:
        """An event that is invalid however it is keyed (its seq is 0), for a keyless record."""
        obj = self.event(self.rng.choice(self.devices))
        obj["seq"] = 0
        return obj

    def _headers(self) -> list[tuple[str, bytes | None]] | None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.7:
            return None
        if roll < 0.85:
            return [("mqtt_topic", b"devices/victim-1/events"), ("ce_seq", b"-1"), ("content-type", b"\xff")]
        return [(rng.choice(("", "x", "\u00e9", "dlq_reason", "k" * 300)),
                 rng.choice((None, b"", rng.randbytes(64)))) for _ in range(rng.randint(1, 5))]
