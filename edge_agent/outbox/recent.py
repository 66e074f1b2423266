"""The rows of the latest commits, kept in memory so the forwarder publishes live events without reading
back what was just written.

Bounded: two group commits. While the broker is away the agent asks for none (``keep_recent=False`` at
commit), so a backlog costs no memory.
"""

from __future__ import annotations

import bisect

from edge_agent.outbox.rows import Row


def _seq_of(row: Row) -> int:
    return row.seq


class RecentRows:
    """Exact by construction: holds every row with ``seq >= start``, and answers only reads above
    ``deleted_max`` (nothing at or above that seq was ever deleted)."""

    def __init__(self, cap: int) -> None:
        self.rows: list[Row] = []
        self.start = 1
        self.cap = cap
        self.deleted_max = 0
        self.keep = True  # False: the rows of the next commits are not kept (nobody will send them soon)

    def read(self, from_seq: int, limit: int) -> list[Row] | None:
        """Up to ``limit`` rows with ``seq >= from_seq``, or ``None`` when the database must answer."""
        if from_seq >= self.start and from_seq > self.deleted_max:
            recent = self.rows
            i = bisect.bisect_left(recent, from_seq, key=_seq_of)
            return recent[i : i + limit]
        return None

    def reset(self, next_seq: int) -> None:
        """Forget every row; the next one kept will have ``next_seq``."""
        self.rows = []
        self.start = next_seq

    def add(self, rows: list[Row]) -> None:
        """``rows`` were just inserted, in seq order, above every row already kept."""
        if not self.keep:
            self.rows = []
            self.start = rows[-1].seq + 1
            return
        recent = self.rows
        recent.extend(rows)
        if len(recent) > self.cap:
            drop = len(recent) - self.cap
            self.start = recent[drop - 1].seq + 1
            del recent[:drop]

    def deleted_upto(self, seq: int) -> None:
        """Rows up to ``seq`` may be gone: the recent rows at or below it are no longer needed."""
        if seq > self.deleted_max:
            self.deleted_max = seq
            if seq >= self.start:
                i = bisect.bisect_right(self.rows, seq, key=_seq_of)
                del self.rows[:i]
                self.start = seq + 1
