"""A set of seqs kept as runs: ``[1, 500], [502, 510]`` costs two runs, not 509 entries.

The audit's memory bound. A device's seqs arrive mostly in order and mostly complete, so one epoch of a
device is a handful of runs whatever its length; memory grows with the holes, never with the events.
The runs live in one flat ``array('q')`` of inclusive bounds ``a0, b0, a1, b1, ...`` (sorted, disjoint,
not adjacent), 16 bytes a run instead of a Python list of two boxed ints; the flat array is itself
sorted, so ``bisect`` on it says whether a seq is inside a run (odd index) or between two (even).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator

from edgebridge.receipts import merge_ranges

__all__ = ["SeqSet", "uncovered"]

Ranges = list[tuple[int, int]]


class SeqSet:
    """Seqs (integers >= 0 below 2**63) as sorted runs; :meth:`add` says whether a seq is new."""

    __slots__ = ("_bounds", "_count")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._bounds = array("q")
        self._count = 0
        for first, last in merge_ranges(ranges):
            self._bounds.extend((first, last))
            self._count += last - first + 1

    def __len__(self) -> int:
        """How many distinct seqs."""
        return self._count

    def __contains__(self, seq: int) -> bool:
        bounds = self._bounds
        i = bisect_right(bounds, seq)
        return i % 2 == 1 or (i > 0 and bounds[i - 1] == seq)

    def add(self, seq: int) -> bool:
        """Put ``seq`` in; False when it was already there (a duplicate)."""
        bounds = self._bounds
        if not bounds or seq > bounds[-1] + 1:  # the usual case: the next run after a hole, or the first
            bounds.extend((seq, seq))
        elif seq == bounds[-1] + 1:  # the most usual: the next seq in order
            bounds[-1] = seq
        else:
            i = bisect_right(bounds, seq)
            if i % 2 == 1 or bounds[i - 1] == seq:
                return False
            # between run k-1 (ending at bounds[i-1], if i > 0) and run k (starting at bounds[i])
            joins_left = i > 0 and bounds[i - 1] == seq - 1
            joins_right = bounds[i] == seq + 1  # i < len: seq is below the last bound here
            if joins_left and joins_right:
                del bounds[i - 1:i + 1]  # the two runs become one
            elif joins_left:
                bounds[i - 1] = seq
            elif joins_right:
                bounds[i] = seq
            else:
                bounds[i:i] = array("q", (seq, seq))
        self._count += 1
        return True

    def add_range(self, first: int, last: int) -> None:
        """Put ``first..last`` in (a gap event's range: rare, so merged the simple way)."""
        if last < first:
            return
        merged = merge_ranges([*self.ranges(), (first, last)])
        self._bounds = array("q", (x for run in merged for x in run))
        self._count = sum(b - a + 1 for a, b in merged)

    def runs(self) -> Iterator[tuple[int, int]]:
        bounds = self._bounds
        return zip(bounds[::2], bounds[1::2], strict=True)

    def ranges(self) -> Ranges:
        return list(self.runs())

    @property
    def low(self) -> int:
        return self._bounds[0] if self._bounds else 0

    @property
    def high(self) -> int:
        return self._bounds[-1] if self._bounds else 0

    def nbytes(self) -> int:
        return self._bounds.buffer_info()[1] * self._bounds.itemsize


def uncovered(low: int, high: int, *sets: SeqSet | Iterable[tuple[int, int]]) -> Ranges:
    """The runs of ``low..high`` that none of ``sets`` holds: the holes left by seen and explained seqs."""
    covered = merge_ranges(run for s in sets for run in (s.runs() if isinstance(s, SeqSet) else s))
    out: Ranges = []
    cursor = low
    for a, b in covered:
        if b < cursor:
            continue
        if a > high:
            break
        if a > cursor:
            out.append((cursor, a - 1))
        cursor = b + 1
    if cursor <= high:
        out.append((cursor, high))
    return out
