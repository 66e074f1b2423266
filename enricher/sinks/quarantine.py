"""A sink's dead letters: records it cannot write, kept in its own database, in the batch's transaction.

One bad record must never stop a sink (guarantee 5): a consumer that crashes on a record restarts at
the same stored offset and crashes again, forever. So what cannot be written goes to the table
``sink_quarantine`` of the same database, with the reason (a code of ``docs/deadletters.md``), the
error's class and text, the original topic, partition and offset, and the raw key and value; in the
same transaction as the batch's rows and offsets, so a record is either written, or quarantined, or
neither (and read again after a crash), never lost and never both.

Two sources of refusals. Before the database: what :func:`enricher.sinks.rows.row_of` refuses (the
decoder's reasons, ``bad_row``). In the database: :func:`insert_rows` inserts the batch in one
statement inside a savepoint; if the database refuses a row (a constraint an operator added, a value
too long for a column he narrowed), it rolls back to the savepoint and inserts row by row, each in its
own savepoint, quarantining those refused (``db_refused``). Only errors that are a row's fault count
(integrity and data errors); a lost connection, a full disk, a missing table propagate, and the sink
exits without storing anything of the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from edgebridge.deadletters import DB_REFUSED, rfc3339

__all__ = ["DB_REFUSED", "QUARANTINE_COLUMNS", "Batch", "Origin", "Quarantined", "insert_rows"]

QUARANTINE_COLUMNS = ("original_topic", "original_partition", "original_offset", "reason", "error_class",
                      "error", "key", "value", "quarantined_at")


class Origin(NamedTuple):
    """Where a record came from, and its bytes."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes


class Quarantined(NamedTuple):
    """One row of ``sink_quarantine`` (:data:`QUARANTINE_COLUMNS`)."""

    original_topic: str
    original_partition: int
    original_offset: int
    reason: str
    error_class: str
    error: str
    key: bytes | None
    value: bytes
    quarantined_at: str


@dataclass
class Batch:
    """What one consume batch of one topic becomes: rows (with their origins), quarantined records, next
    offsets. ``table``: ``readings`` (rows are :class:`enricher.sinks.rows.Row`, inserted) or
    ``aggregates`` (:class:`enricher.sinks.rows.AggregateRow`, upserted by key)."""

    topic: str
    table: str = "readings"
    rows: list[Any] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset to read

    def add(self, row: Any, origin: Origin) -> None:
        self.rows.append(row)
        self.origins.append(origin)

    def quarantine(self, origin: Origin, reason: str, error: BaseException) -> None:
        try:
            text = str(error)
        except Exception:
            text = ""
        # NUL: PostgreSQL's text refuses it, and the quarantine must not fail in turn
        text = text.replace("\0", "\\0")[:1000]
        self.quarantined.append(Quarantined(
            self.topic, origin.partition, origin.offset, reason, type(error).__name__, text, origin.key,
            origin.value, rfc3339(time.time())))


def insert_rows(
    batch: Batch,
    insert_all: Callable[[list[Any]], int],
    insert_one: Callable[[Any], int],
    savepoint: Callable[[], AbstractContextManager[object]],
    refusals: tuple[type[BaseException], ...],
) -> int:
    """Insert the batch's rows, all at once or, if the database refuses one, one by one, quarantining
    the refused (``db_refused``). Returns how many rows were inserted (known event ids are ignored).
    Must run inside the transaction that also stores the quarantine and the offsets."""
    if not batch.rows:
        return 0
    try:
        with savepoint():
            return insert_all(batch.rows)
    except refusals:
        pass
    inserted = 0
    for row, origin in zip(batch.rows, batch.origins, strict=True):
        try:
            with savepoint():
                inserted += insert_one(row)
        except refusals as exc:
            batch.quarantine(origin, DB_REFUSED, exc)
    return inserted
