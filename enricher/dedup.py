"""Per-device dedup state: the highest contiguous ``seq`` plus the seen ranges above it.

For each device we keep ``high`` (every seq ``<= high`` has been seen) and a sorted list of disjoint,
non-adjacent seen ranges above ``high + 1``. The holes between them are the device's open gaps.

- a seq ``<= high`` or inside a range is a **duplicate**: dropped and counted;
- a seq inside a hole is **late**: processed and flagged, never dropped;
- a seq more than one above the top seen opens a **gap** ``[top + 1, seq - 1]`` (metric and alert);
  the gap closes when its seqs arrive or when an ``edgebridge.gap.v1`` event explains them.

Bounded: with more than ``max_ranges`` ranges, the lowest hole is given up (``expired``, counted); a
seq of it that arrives afterwards is taken for a duplicate. That is the price of bounded state, and the
counter says when it was paid.

Persistence (see :mod:`enricher.checkpoint`): the state of every device changed in a transaction is
written, key = device id, to the compacted ``iot.enricher.state`` topic *in the same transaction* as the
outputs and the consumed offsets, and **to the partition with the number of the raw partition the
device's events come from**. Raw partition ``p`` therefore owns state partition ``p``: on assignment of
``p`` we restore by reading state partition ``p`` alone (read_committed, to its end), never the whole
topic, and never by re-reading the raw topic. The state topic must have as many partitions as the raw one.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from enum import Enum

import orjson

__all__ = ["DedupTable", "DeviceDedup", "Observation", "Verdict"]


class Verdict(Enum):
    NEW = "new"
    LATE = "late"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Observation:
    verdict: Verdict
    gap_opened: tuple[int, int] | None = None  # [first, last] missing, when this seq jumped
    gaps_closed: int = 0
    expired: int = 0  # seqs given up to keep the state bounded


_NEW = Observation(Verdict.NEW)
_DUPLICATE = Observation(Verdict.DUPLICATE)


@dataclass(slots=True)
class DeviceDedup:
    high: int = 0
    ranges: list[list[int]] = field(default_factory=list)
    expired: int = 0  # total seqs ever given up for this device

    @property
    def top(self) -> int:
        return self.ranges[-1][1] if self.ranges else self.high

    @property
    def open_gaps(self) -> int:
        return len(self.ranges)

    def seen(self, seq: int) -> bool:
        if seq <= self.high:
            return True
        i = bisect_right(self.ranges, [seq, float("inf")]) - 1
        return i >= 0 and self.ranges[i][0] <= seq <= self.ranges[i][1]

    def observe(self, seq: int, max_ranges: int) -> Observation:
        if not self.ranges:  # no open gap, the common case: answered without building ranges
            if seq <= self.high:
                return _DUPLICATE
            if seq == self.high + 1:
                self.high = seq
                return _NEW
        if self.seen(seq):
            return _DUPLICATE
        top = self.top
        gap = (top + 1, seq - 1) if seq > top + 1 else None
        verdict = Verdict.LATE if seq < top else Verdict.NEW
        before = len(self.ranges)
        expired = self._add(seq, seq, max_ranges)
        closed = max(0, before - len(self.ranges)) if gap is None else 0
        return Observation(verdict, gap, closed, expired)

    def explain(self, first: int, last: int, max_ranges: int) -> tuple[int, int]:
        """Mark ``first..last`` as accounted for (a gap event); returns (gaps closed, seqs expired)."""
        if last <= self.high:
            return 0, 0
        before = len(self.ranges)
        expired = self._add(max(first, self.high + 1), last, max_ranges)
        return max(0, before - len(self.ranges)), expired

    def _add(self, a: int, b: int, max_ranges: int) -> int:
        merged = [a, b]
        keep: list[list[int]] = []
        for r in self.ranges:
            if r[1] + 1 < merged[0] or r[0] > merged[1] + 1:
                keep.append(r)
            else:
                merged = [min(r[0], merged[0]), max(r[1], merged[1])]
        keep.insert(bisect_right(keep, merged), merged)
        self.ranges = keep
        while self.ranges and self.ranges[0][0] <= self.high + 1:
            self.high = max(self.high, self.ranges.pop(0)[1])
        expired = 0
        while len(self.ranges) > max_ranges:
            first = self.ranges.pop(0)
            expired += first[0] - self.high - 1
            self.high = first[1]
        self.expired += expired
        return expired

    def to_bytes(self) -> bytes:
        return orjson.dumps({"high": self.high, "ranges": self.ranges, "expired": self.expired})

    @classmethod
    def from_bytes(cls, payload: bytes) -> DeviceDedup:
        obj = orjson.loads(payload)
        return cls(int(obj["high"]), [[int(a), int(b)] for a, b in obj["ranges"]], int(obj.get("expired", 0)))


class DedupTable:
    """The states of the devices of the assigned partitions, and which changed since the last commit."""

    def __init__(self, max_ranges: int = 256) -> None:
        self.max_ranges = max_ranges
        self._devices: dict[str, DeviceDedup] = {}
        self._partition: dict[str, int] = {}
        self._dirty: set[str] = set()

    def __len__(self) -> int:
        return len(self._devices)

    def get(self, deviceid: str, partition: int) -> DeviceDedup:
        state = self._devices.get(deviceid)
        if state is None:
            state = self._devices[deviceid] = DeviceDedup()
            self._partition[deviceid] = partition
        return state

    def observe(self, deviceid: str, partition: int, seq: int) -> Observation:
        obs = self.get(deviceid, partition).observe(seq, self.max_ranges)
        if obs.verdict is not Verdict.DUPLICATE:
            self._dirty.add(deviceid)
        return obs

    def explain(self, deviceid: str, partition: int, first: int, last: int) -> tuple[int, int]:
        self._dirty.add(deviceid)
        return self.get(deviceid, partition).explain(first, last, self.max_ranges)

    def dirty(self) -> list[tuple[int, str, bytes]]:
        """(state partition, device id, state bytes) of every device changed since :meth:`clean`."""
        return [(self._partition[d], d, self._devices[d].to_bytes()) for d in sorted(self._dirty)]

    def clean(self) -> None:
        self._dirty.clear()

    def open_gaps(self) -> int:
        return sum(s.open_gaps for s in self._devices.values())

    def load(self, partition: int, deviceid: str, payload: bytes | None) -> None:
        """Restore one state record (``None``: a tombstone)."""
        if payload is None:
            self._devices.pop(deviceid, None)
            self._partition.pop(deviceid, None)
            return
        self._devices[deviceid] = DeviceDedup.from_bytes(payload)
        self._partition[deviceid] = partition

    def drop_partitions(self, partitions: set[int]) -> int:
        """Forget the devices of ``partitions`` (revoked or lost); returns how many."""
        gone = [d for d, p in self._partition.items() if p in partitions]
        for d in gone:
            self._devices.pop(d, None)
            self._partition.pop(d, None)
            self._dirty.discard(d)
        return len(gone)
