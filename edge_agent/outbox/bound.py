"""The bound of an outbox, and its two overflow policies.

The bound: ``max_rows`` and ``max_bytes`` (payload bytes), the latter shrunk by the free-disk guard so
the outbox behaves as full while the file system has less than ``min_free_bytes`` free; the pages the
file has freed count as free (they are reused before the file grows).

What happens at the bound (``policy``), steps 2 to 4 of the commit order in :mod:`edge_agent.outbox`:

- ``drop_oldest``: after the insert, the oldest rows are evicted until they, plus one gap event per
  contiguous evicted run, fit the bound; each run is logged, counted (``evicted``) and announced by a
  gap with reason ``evicted``. An evicted gap event takes its announcement with it, so the new gap
  covers its range too.
- ``reject_new``: the events that fit are inserted, leaving room for one gap event; the rest are
  refused, counted (``rejected``) and their seqs burnt; the burnt range waits in ``pending_gap`` until a
  gap with reason ``rejected`` fits.

The functions here decide and delete; :class:`~edge_agent.outbox.store.Outbox` assigns the seqs, keeps
the counters and inserts the gap events.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import orjson

from edge_agent.config import OutboxConfig
from edgebridge.envelope import GAP_TYPE, Event, encode

GAP_ROOM = 512  # bytes kept free in the bound for each gap event an eviction adds


def free_bytes(folder: Path) -> int:
    """Bytes of the file system holding ``folder`` that an unprivileged writer may still use."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def reusable_bytes(db: sqlite3.Connection) -> int:
    """Bytes of the pages the outbox file has freed (acks, evictions) and fills again before it grows:
    room the free-disk guard must count, or a disk below the reserve would refuse new events forever,
    however much the acks free inside the file."""
    count = db.execute("PRAGMA freelist_count").fetchone()[0]
    return int(count) * int(db.execute("PRAGMA page_size").fetchone()[0]) if count else 0


def limits(config: OutboxConfig, stored_bytes: int, free: int, reusable: int = 0) -> tuple[int, int]:
    """``(max_rows, max_bytes)`` for an outbox holding ``stored_bytes``, with ``free`` bytes on disk and
    ``reusable`` bytes of freed pages in its file."""
    guard = free - config.min_free_bytes
    # free-disk guard: the file may grow by at most what is free above the reserve; refilling its
    # freed pages costs the disk nothing
    return config.max_rows, min(config.max_bytes, stored_bytes + reusable + max(guard, 0))


def gap_fits(rows: int, size: int, max_rows: int, max_bytes: int) -> bool:
    """Whether one more gap event fits an outbox of ``rows`` rows and ``size`` bytes."""
    return rows + 1 <= max_rows and size + GAP_ROOM <= max_bytes


# -- reject_new ------------------------------------------------------------------------------------


def room(events: Sequence[Event], rows: int, size: int, max_rows: int, max_bytes: int) -> int:
    """How many of ``events``, in order, fit while keeping room for the gap that announces the rest."""
    max_rows, max_bytes = max_rows - 1, max_bytes - GAP_ROOM
    for i, event in enumerate(events):
        size += len(encode(event))
        rows += 1
        if rows > max_rows or size > max_bytes:
            return i
    return len(events)


def remember_rejected(db: sqlite3.Connection, first: int, last: int) -> None:
    """Keep the burnt seqs ``first..last`` in ``pending_gap``, extending the latest range if contiguous."""
    latest = db.execute("SELECT rowid, last FROM pending_gap ORDER BY rowid DESC LIMIT 1").fetchone()
    if latest is not None and latest[1] == first - 1:
        db.execute("UPDATE pending_gap SET last = ? WHERE rowid = ?", (last, latest[0]))
    else:
        db.execute("INSERT INTO pending_gap VALUES (?, ?, 'rejected')", (first, last))


def pending_gaps(db: sqlite3.Connection) -> list[tuple[int, int, int, str]]:
    """The burnt ranges not announced yet, oldest first: ``(rowid, first, last, reason)``."""
    return db.execute("SELECT rowid, first, last, reason FROM pending_gap ORDER BY rowid").fetchall()


def forget_pending(db: sqlite3.Connection, rowid: int) -> None:
    """The range at ``rowid`` is being announced."""
    db.execute("DELETE FROM pending_gap WHERE rowid = ?", (rowid,))


# -- drop_oldest -----------------------------------------------------------------------------------


class Eviction(NamedTuple):
    runs: list[list[int]]  # contiguous evicted ranges [first, last], one gap event each
    rows: int  # rows deleted
    bytes: int  # payload bytes deleted
    upto: int  # the highest seq deleted: every row up to it is gone


def evict_oldest(db: sqlite3.Connection, rows: int, size: int, max_rows: int, max_bytes: int) -> Eviction:
    """Delete the oldest rows of an outbox of ``rows`` rows and ``size`` bytes until the rows, plus one
    gap event per evicted run, fit the bound."""
    runs: list[list[int]] = []
    evicted = evicted_bytes = upto = 0
    while rows + len(runs) > max_rows or size + GAP_ROOM * len(runs) > max_bytes:
        over_rows = rows + len(runs) + 1 - max_rows
        over_bytes = size + GAP_ROOM * (len(runs) + 1) - max_bytes
        picked: list[tuple[int, int]] = []
        freed = 0
        covers: dict[int, int] = {}  # evicted gap seq -> first seq of the range it announced
        oldest = db.execute(
            "SELECT seq, size, CASE WHEN type = ? THEN payload END FROM outbox ORDER BY seq LIMIT ?",
            (GAP_TYPE, max(over_rows, 1) + 256),
        )
        for seq, row_size, gap_payload in oldest.fetchall():
            picked.append((seq, row_size))
            freed += row_size
            if gap_payload is not None:
                covers[seq] = int(orjson.loads(gap_payload)["data"]["first"])
            if len(picked) >= over_rows and freed >= over_bytes:
                break
        if not picked:
            break
        upto = picked[-1][0]
        db.execute("DELETE FROM outbox WHERE seq <= ?", (upto,))
        rows -= len(picked)
        size -= freed
        evicted += len(picked)
        evicted_bytes += freed
        for seq, _ in picked:
            # An evicted gap event takes its announcement with it: the new gap must cover its
            # range too, or the seqs it announced would become a silent hole.
            first = covers.get(seq, seq)
            if runs and runs[-1][1] + 1 >= first:
                runs[-1][1] = seq
                runs[-1][0] = min(runs[-1][0], first)
            else:
                runs.append([first, seq])
        runs = merge_runs(runs)
    return Eviction(runs, evicted, evicted_bytes, upto)


def merge_runs(runs: list[list[int]]) -> list[list[int]]:
    """Evicted runs that became contiguous (a later pass took the seqs between them) merge into one."""
    merged: list[list[int]] = []
    for first, last in sorted(runs):
        if merged and merged[-1][1] + 1 >= first:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return merged
