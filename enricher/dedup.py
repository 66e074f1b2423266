"""Per-device dedup state, per epoch: which (device, epoch, seq) were seen, and devices that lost their state.

An *epoch* is one life of a device's outbox: drawn at random when the outbox is created, carried by every
event (``Event.epoch``; ``None``, from agents before epochs, is the legacy epoch ``""``). A device whose
state dir is wiped (a new SD card, a reinstall) starts a new epoch with seqs from 1 again. So dedup, late
and gap accounting are per (device, epoch): each epoch has its own :class:`~enricher.sequence.EpochSeqs`.

A device's *current* epoch is the epoch of its latest record that was not a duplicate. The first record of
an epoch the device has no state for, while it has state for another, is a **device that lost its state**:
the :class:`Observation`'s :class:`EpochNotice` carries an :class:`EpochChange` naming the device, the old
(current) epoch, its top seq and the new epoch; the steps turn it into an alert and a count, and this
module logs it. The first sight of a device is not a reset.

Old epochs are forgotten when idle: an epoch other than the current one whose latest record is
``epoch_idle_ms`` older than the device's record being processed is dropped. Time is the raw records'
Kafka timestamps, never the wall clock, so a replay after an abort or a restart decides the same. A
re-send of a forgotten epoch's event is then taken for a new epoch: processed again, and reported as a
reset. At most :data:`MAX_EPOCHS` epochs are kept per device (the least recently seen goes first), so a
device that changes epochs in a loop cannot grow its state record without bound. Both are counted.

Persistence (see :mod:`enricher.checkpoint`): the state of every device changed in a transaction is
written, key = device id, to the compacted ``iot.enricher.state`` topic *in the same transaction* as the
outputs and the consumed offsets, and **to the partition with the number of the raw partition the
device's events come from**. Raw partition ``p`` therefore owns state partition ``p``: on assignment of
``p`` we restore by reading state partition ``p`` alone (read_committed, to its end), never the whole
topic, and never by re-reading the raw topic. The state topic must have as many partitions as the raw one.

The record's value (:func:`encode_device`)::

    {"v": 2, "current": "9f86d081884c7d65",
     "epochs": {"9f86d081884c7d65": {"high": 812, "ranges": [[815, 815]], "expired": 0,
                                     "unseen": [], "seen_ms": 1795700000000}, ...}}

A record of the enricher before epochs, ``{"high", "ranges", "expired"}``, loads as the legacy epoch ``""``
last seen at the record's own Kafka timestamp, so existing state migrates without loss.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from enricher.config import DEFAULT_MAX_SEEN_RANGES
from enricher.sequence import EpochSeqs, Observation, Verdict

__all__ = ["LEGACY_EPOCH", "MAX_EPOCHS", "DedupTable", "DeviceEpochs", "EpochChange", "EpochNotice",
           "EpochSeqs", "Observation", "Verdict", "decode_device", "encode_device"]

log = logging.getLogger(__name__)

LEGACY_EPOCH = ""  # the epoch of events without the attribute (agents from before epochs)
MAX_EPOCHS = 8  # epochs kept per device; past it the least recently seen other epoch is forgotten
NEVER = 2**63  # a Kafka timestamp no record reaches
DAY_MS = 86_400_000
_DUPLICATE = Verdict.DUPLICATE


@dataclass(frozen=True, slots=True)
class EpochChange:
    """A device's new epoch after an old one: the device lost its state (new SD card, reinstall)."""

    deviceid: str
    old_epoch: str
    old_last_seq: int  # the top seq the old epoch reached
    epoch: str

    def alert(self) -> dict[str, Any]:
        """The body of the ``device_state_lost`` alert (the processor adds device, seq, event id, time)."""
        return {"kind": "device_state_lost", "old_epoch": self.old_epoch,
                "old_last_seq": self.old_last_seq, "epoch": self.epoch}


@dataclass(frozen=True, slots=True)
class EpochNotice:
    """What happened to a device's epochs on one record, besides its verdict (rare)."""

    change: EpochChange | None = None  # the record is the first of a new epoch after an old one
    forgotten_idle: int = 0  # old epochs forgotten because idle
    forgotten_over_cap: int = 0  # old epochs forgotten past MAX_EPOCHS


@dataclass(slots=True)
class DeviceEpochs:
    """One device's epochs; ``seqs`` is the current epoch's (the hot path reads it without a lookup)."""

    current: str
    seqs: EpochSeqs
    epochs: dict[str, EpochSeqs]
    forget_at: int = NEVER  # the Kafka timestamp at which the least recently seen old epoch falls idle

    @classmethod
    def first(cls, epoch: str) -> DeviceEpochs:
        seqs = EpochSeqs()
        return cls(epoch, seqs, {epoch: seqs})

    def forget_idle(self, now_ms: int, idle_ms: int) -> int:
        """Drop the old epochs idle since ``now_ms - idle_ms`` or longer (never the current one)."""
        idle = [e for e, s in self.epochs.items() if e != self.current and s.seen_ms + idle_ms <= now_ms]
        for e in idle:
            del self.epochs[e]
        return len(idle)

    def forget_over_cap(self) -> int:
        """Drop the least recently seen old epochs past :data:`MAX_EPOCHS`."""
        dropped = 0
        while len(self.epochs) > MAX_EPOCHS:
            oldest = min((e for e in self.epochs if e != self.current),
                         key=lambda e: (self.epochs[e].seen_ms, e))
            del self.epochs[oldest]
            dropped += 1
        return dropped

    def schedule(self, idle_ms: int) -> None:
        """Set :attr:`forget_at`, so that the hot path needs one comparison to know nothing is idle yet."""
        old = [s.seen_ms for e, s in self.epochs.items() if e != self.current]
        self.forget_at = min(old) + idle_ms if old else NEVER


def encode_device(device: DeviceEpochs) -> bytes:
    return orjson.dumps({"v": 2, "current": device.current,
                         "epochs": {e: s.to_obj() for e, s in device.epochs.items()}})


def decode_device(payload: bytes, record_ms: int = 0) -> DeviceEpochs:
    """A state record's value (this version's, or the enricher's before epochs, see the module docstring);
    ``record_ms`` is the record's Kafka timestamp."""
    obj = orjson.loads(payload)
    if "epochs" not in obj:  # written before epochs: one sequence, the legacy epoch
        seqs = EpochSeqs.from_obj(obj, seen_ms=record_ms)
        return DeviceEpochs(LEGACY_EPOCH, seqs, {LEGACY_EPOCH: seqs})
    epochs = {str(e): EpochSeqs.from_obj(s, seen_ms=record_ms) for e, s in obj["epochs"].items()}
    current = str(obj["current"])
    return DeviceEpochs(current, epochs[current], epochs)


class DedupTable:
    """The states of the devices of the assigned partitions, and which changed since the last commit."""

    def __init__(self, max_ranges: int = DEFAULT_MAX_SEEN_RANGES, epoch_idle_days: float = 7.0) -> None:
        self.max_ranges = max_ranges
        self.idle_ms = int(epoch_idle_days * DAY_MS)
        self._devices: dict[str, DeviceEpochs] = {}
        self._partition: dict[str, int] = {}
        self._dirty: set[str] = set()

    def __len__(self) -> int:
        return len(self._devices)

    def device(self, deviceid: str) -> DeviceEpochs | None:
        return self._devices.get(deviceid)

    def observe(self, deviceid: str, partition: int, seq: int, epoch: str | None = None,
                ts_ms: int | None = None) -> Observation:
        """The verdict on (device, epoch, seq) arriving in a raw record of Kafka timestamp ``ts_ms``."""
        if epoch is None:
            epoch = LEGACY_EPOCH
        ts = ts_ms or 0
        device = self._devices.get(deviceid)
        if device is None or device.current != epoch or ts >= device.forget_at:
            return self._observe_other(deviceid, partition, seq, epoch, ts)
        # the hot path: the device's current epoch, nothing idle to forget
        seqs = device.seqs
        obs = seqs.observe(seq, self.max_ranges)
        if obs.verdict is not _DUPLICATE:
            self._dirty.add(deviceid)
            if ts > seqs.seen_ms:
                seqs.seen_ms = ts
        return obs

    def _observe_other(self, deviceid: str, partition: int, seq: int, epoch: str, ts: int) -> Observation:
        """A new device, another epoch than the current one, or an old epoch to forget first."""
        device = self._devices.get(deviceid)
        if device is None:
            device = self._devices[deviceid] = DeviceEpochs.first(epoch)
            self._partition[deviceid] = partition
        idle = device.forget_idle(ts, self.idle_ms)
        change = None
        seqs = device.epochs.get(epoch)
        if seqs is None:
            change = EpochChange(deviceid, device.current, device.seqs.top, epoch)
            seqs = device.epochs[epoch] = EpochSeqs()
            log.warning("device lost its state: a new epoch", extra={
                "device": deviceid, "old_epoch": change.old_epoch, "old_last_seq": change.old_last_seq,
                "epoch": epoch, "seq": seq})
        obs = seqs.observe(seq, self.max_ranges)  # never a duplicate for a new epoch: it becomes current
        if obs.verdict is not _DUPLICATE:
            device.current, device.seqs = epoch, seqs
            if ts > seqs.seen_ms:
                seqs.seen_ms = ts
        capped = device.forget_over_cap() if change is not None else 0
        if obs.verdict is not _DUPLICATE or idle or capped:
            self._dirty.add(deviceid)
        device.schedule(self.idle_ms)
        if change is not None or idle or capped:
            obs = dataclasses.replace(obs, epochs=EpochNotice(change, idle, capped))
        return obs

    def explain(self, deviceid: str, partition: int, first: int, last: int, epoch: str | None,
                seq: int) -> tuple[int, int]:
        """A gap event ``seq`` of (device, epoch), just observed, explains ``first..last`` (only seqs below
        ``seq`` are taken); returns (gaps closed, seqs expired)."""
        device = self._devices.get(deviceid)
        seqs = None if device is None else device.epochs.get(LEGACY_EPOCH if epoch is None else epoch)
        if seqs is None:  # not observed first (or forgotten since): nothing to explain against
            return 0, 0
        self._dirty.add(deviceid)
        return seqs.explain(first, last, seq, self.max_ranges)

    def dirty(self) -> list[tuple[int, str, bytes]]:
        """(state partition, device id, state bytes) of every device changed since :meth:`clean`."""
        return [(self._partition[d], d, encode_device(self._devices[d])) for d in sorted(self._dirty)]

    def clean(self) -> None:
        self._dirty.clear()

    def open_gaps(self) -> int:
        return sum(s.open_gaps for d in self._devices.values() for s in d.epochs.values())

    def load(self, partition: int, deviceid: str, payload: bytes | None, record_ms: int = 0) -> None:
        """Restore one state record (``None``: a tombstone); ``record_ms``: its Kafka timestamp."""
        if payload is None:
            self._devices.pop(deviceid, None)
            self._partition.pop(deviceid, None)
            return
        device = self._devices[deviceid] = decode_device(payload, record_ms)
        device.schedule(self.idle_ms)
        self._partition[deviceid] = partition

    def drop_partitions(self, partitions: set[int]) -> int:
        """Forget the devices of ``partitions`` (revoked or lost); returns how many."""
        gone = [d for d, p in self._partition.items() if p in partitions]
        for d in gone:
            self._devices.pop(d, None)
            self._partition.pop(d, None)
            self._dirty.discard(d)
        return len(gone)
