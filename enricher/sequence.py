"""One epoch's ``seq`` accounting: which seqs were seen, which are missing, which a gap event explained.

A device's seqs within one epoch (one life of its outbox, see :mod:`enricher.dedup`) are kept as:

- ``high``: every seq ``<= high`` is *accounted for* (seen, explained by a gap event, or given up);
- ``ranges``: sorted, disjoint, non-adjacent accounted-for ranges above ``high + 1``; the holes between
  them (and between ``high`` and the first) are the epoch's open gaps;
- ``unseen``: the parts of the accounted-for seqs that a gap event explained but that never arrived.

Verdicts, per arriving seq:

- inside ``unseen`` -> **late**: processed and flagged, and no longer unseen. A gap event closes a range
  for gap accounting, it never makes its seqs duplicates: a forged gap event (seq 2**62, first 1,
  last 2**62 - 1) cannot silence the device's real seqs that follow, they come out late;
- otherwise accounted for -> **duplicate**: dropped and counted;
- in a hole -> **late**: processed and flagged, never dropped;
- more than one above the top -> **new**, and it opens a **gap** ``[top + 1, seq - 1]`` (metric, alert);
  the gap closes when its seqs arrive or a gap event explains them.

A gap event explains only seqs below its own seq (the envelope checks ``last < seq``; :meth:`explain`
clamps again, so a hand-made event cannot reach above itself).

Bounded: ``ranges`` and ``unseen`` each hold at most ``max_ranges`` entries. Past it, ``ranges`` gives up
its lowest hole and ``unseen`` its lowest range; either way those seqs count as ``expired`` and one of
them arriving afterwards is taken for a duplicate. That is the price of bounded state, and the counter
says when it was paid.

The hot path, an in-order seq of an epoch without open gaps or unseen ranges, is a few comparisons.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from enricher.dedup import EpochNotice

__all__ = ["EpochSeqs", "Observation", "Verdict"]


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
    epochs: EpochNotice | None = None  # a new epoch of the device, old epochs forgotten (enricher.dedup)


NEW = Observation(Verdict.NEW)
DUPLICATE = Observation(Verdict.DUPLICATE)
LATE = Observation(Verdict.LATE)


def _find(ranges: list[list[int]], seq: int) -> int:
    """The index of the range holding ``seq``, or -1."""
    i = bisect_right(ranges, [seq, float("inf")]) - 1
    return i if i >= 0 and ranges[i][0] <= seq <= ranges[i][1] else -1


def _merge(ranges: list[list[int]], a: int, b: int) -> list[list[int]]:
    """``ranges`` with ``[a, b]`` added, ranges that overlap or touch it merged into one."""
    merged = [a, b]
    keep: list[list[int]] = []
    for r in ranges:
        if r[1] + 1 < merged[0] or r[0] > merged[1] + 1:
            keep.append(r)
        else:
            merged = [min(r[0], merged[0]), max(r[1], merged[1])]
    keep.insert(bisect_right(keep, merged), merged)
    return keep


@dataclass(slots=True)
class EpochSeqs:
    high: int = 0
    ranges: list[list[int]] = field(default_factory=list)
    expired: int = 0  # total seqs ever given up for this epoch
    unseen: list[list[int]] = field(default_factory=list)
    seen_ms: int = 0  # the latest Kafka timestamp of a raw record that changed this state (idle expiry)

    @property
    def top(self) -> int:
        """The highest seq accounted for: the last seq of this epoch seen so far."""
        return self.ranges[-1][1] if self.ranges else self.high

    @property
    def open_gaps(self) -> int:
        return len(self.ranges)

    def accounted(self, seq: int) -> bool:
        return seq <= self.high or _find(self.ranges, seq) >= 0

    def observe(self, seq: int, max_ranges: int) -> Observation:
        if not self.ranges and not self.unseen:  # the common case: answered without building ranges
            if seq <= self.high:
                return DUPLICATE
            if seq == self.high + 1:
                self.high = seq
                return NEW
        if self.unseen:
            taken = self._take_unseen(seq, max_ranges)
            if taken >= 0:
                return Observation(Verdict.LATE, expired=taken) if taken else LATE
        if self.accounted(seq):
            return DUPLICATE
        top = self.top
        gap = (top + 1, seq - 1) if seq > top + 1 else None
        verdict = Verdict.LATE if seq < top else Verdict.NEW
        before = len(self.ranges)
        expired = self._account(seq, seq, max_ranges)
        closed = max(0, before - len(self.ranges)) if gap is None else 0
        return Observation(verdict, gap, closed, expired)

    def explain(self, first: int, last: int, seq: int, max_ranges: int) -> tuple[int, int]:
        """A gap event ``seq`` says ``first..last`` were lost: account for them (closing the gaps they
        fill) and remember the ones not seen as *unseen*. Only seqs below ``seq`` are taken.
        Returns (gaps closed, seqs expired)."""
        first, last = max(first, self.high + 1, 1), min(last, seq - 1)
        if last < first:
            return 0, 0
        holes: list[list[int]] = []  # the seqs of [first, last] not accounted for yet
        cursor = first
        for a, b in self.ranges:  # at most max_ranges
            if b < cursor:
                continue
            if a > last:
                break
            if a > cursor:
                holes.append([cursor, a - 1])
            cursor = b + 1
            if cursor > last:
                break
        if cursor <= last:
            holes.append([cursor, last])
        if holes:  # disjoint from unseen (which lies inside the accounted seqs): a sort and a coalesce
            unseen: list[list[int]] = []
            for a, b in sorted(self.unseen + holes):
                if unseen and a == unseen[-1][1] + 1:
                    unseen[-1][1] = b
                else:
                    unseen.append([a, b])
            self.unseen = unseen
        expired = self._bound_unseen(max_ranges)
        before = len(self.ranges)
        expired += self._account(first, last, max_ranges)
        return max(0, before - len(self.ranges)), expired

    def _take_unseen(self, seq: int, max_ranges: int) -> int:
        """If ``seq`` was explained but not seen, it is seen now: returns the seqs that splitting its
        unseen range made the bound give up (usually 0); -1 when ``seq`` is not unseen."""
        unseen = self.unseen
        i = _find(unseen, seq)
        if i < 0:
            return -1
        a, b = unseen[i]
        if a == b:
            del unseen[i]
        elif seq == a:
            unseen[i][0] = a + 1
        elif seq == b:
            unseen[i][1] = b - 1
        else:
            unseen[i:i + 1] = [[a, seq - 1], [seq + 1, b]]
            return self._bound_unseen(max_ranges)
        return 0

    def _bound_unseen(self, max_ranges: int) -> int:
        """Give up the lowest unseen ranges past ``max_ranges``: their seqs count as seen from now on."""
        expired = 0
        while len(self.unseen) > max_ranges:
            a, b = self.unseen.pop(0)
            expired += b - a + 1
        self.expired += expired
        return expired

    def _account(self, a: int, b: int, max_ranges: int) -> int:
        """Mark ``a..b`` accounted for; returns the seqs given up to stay within ``max_ranges``."""
        self.ranges = _merge(self.ranges, a, b)
        while self.ranges and self.ranges[0][0] <= self.high + 1:
            self.high = max(self.high, self.ranges.pop(0)[1])
        expired = 0
        while len(self.ranges) > max_ranges:
            first = self.ranges.pop(0)
            expired += first[0] - self.high - 1
            self.high = first[1]
        self.expired += expired
        return expired

    def to_obj(self) -> dict[str, Any]:
        return {"high": self.high, "ranges": self.ranges, "expired": self.expired, "unseen": self.unseen,
                "seen_ms": self.seen_ms}

    @classmethod
    def from_obj(cls, obj: dict[str, Any], seen_ms: int = 0) -> EpochSeqs:
        """From :meth:`to_obj`'s dict, or the record of the enricher before epochs (no ``unseen``,
        no ``seen_ms``: then ``seen_ms`` is the given default)."""
        return cls(int(obj["high"]), [[int(a), int(b)] for a, b in obj["ranges"]], int(obj.get("expired", 0)),
                   [[int(a), int(b)] for a, b in obj.get("unseen", ())], int(obj.get("seen_ms", seen_ms)))
