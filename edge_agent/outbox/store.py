"""The :class:`Outbox`: opening the file, reading committed rows, and the group commit whose order
:mod:`edge_agent.outbox` states.

Cost per event. Events are encoded once, at commit, and stored as bytes (a batch is those bytes
joined); one prepared INSERT per group commit (``executemany``); acked rows go by seq range, counted in
SQLite. The rows of the latest commits stay in memory (:mod:`~edge_agent.outbox.recent`) so the
forwarder publishes live events without reading back what was just written.

Pages freed by deletes are reused (``auto_vacuum=INCREMENTAL`` set at creation); a drained outbox gives
back at most a few pages per commit through ``incremental_vacuum``, never a full ``VACUUM`` (SD-card
wear).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from edge_agent.config import OutboxConfig
from edge_agent.outbox import bound, integrity
from edge_agent.outbox.migrations import migrate
from edge_agent.outbox.recent import RecentRows
from edge_agent.outbox.rows import Row
from edge_agent.outbox.seqfile import SeqMarks, read_marks, write_marks
from edgebridge.envelope import GAP_TYPE, Event, encode, new_gap, to_dict
from edgebridge.errors import EdgeBridgeError, EnvelopeError

__all__ = ["CommitResult", "Outbox", "OutboxError", "OutboxStats"]

log = logging.getLogger(__name__)

_INSERT_ROW = (
    "INSERT INTO outbox VALUES (?1, ?2, ?3,"
    " CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), length(?4), ?4)"
)


class OutboxError(EdgeBridgeError):
    """The outbox cannot be opened or written (disk, permissions); ``path`` says which file."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass
class OutboxStats:
    """Plain counters read by the metrics collector at scrape time (ints: atomic to read)."""

    committed: int = 0  # events inserted (readings and gaps)
    acked: int = 0  # rows deleted after PUBACK
    evicted: int = 0  # rows dropped by drop_oldest
    rejected: int = 0  # events refused by reject_new
    gaps: int = 0  # gap events inserted
    commits: int = 0
    payload_bytes: int = 0  # payload bytes inserted
    quarantined: int = 0
    commit_failures: int = 0  # commits that raised OutboxError (a full disk), nothing of them kept
    rows: int = 0
    bytes: int = 0
    last_seq: int = 0
    last_ack_seq: int = 0
    oldest_ms: int | None = None


@dataclass
class CommitResult:
    first_seq: int = 0  # seqs of the new events (0 when none were inserted)
    last_seq: int = 0
    rejected: int = 0
    gaps: list[Event] = field(default_factory=list)


class Outbox:
    """One device's outbox at ``path``; only the thread that opened it may use it."""

    def __init__(
        self,
        path: Path,
        deviceid: str,
        config: OutboxConfig | None = None,
        *,
        stamp: Callable[[], dict[str, object]] | None = None,
        free_bytes: Callable[[Path], int] | None = None,
    ) -> None:
        self.path = Path(path)
        self.deviceid = deviceid
        self.config = config or OutboxConfig()
        self.stats = OutboxStats()
        self.sidecar = self.path.with_name(self.path.name + ".seq")
        self._stamp = stamp or (lambda: {})  # bootid/monotime/clocksynced for gap events
        self._free_bytes = free_bytes or bound.free_bytes
        self._db: sqlite3.Connection | None = None
        self._marks = SeqMarks(deviceid)
        self.epoch = ""  # set at open (see _open_epoch); "" is the legacy epoch of pre-epoch outboxes
        self._last_seq = 0
        self._recent = RecentRows(cap=2 * self.config.commit_every_events)
        self._refusing = False  # reject_new is refusing events (for its start and end log lines)

    # -- opening -----------------------------------------------------------------------------------

    def open(self) -> Outbox:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        marks = read_marks(self.sidecar, self.deviceid)
        existed = self.path.exists()
        lost: tuple[int, int, str] | None = None
        if existed and not integrity.healthy(self.path, self.config.integrity_check):
            integrity.quarantine(self.path)
            self.stats.quarantined += 1
            if marks is not None and marks.reserved > marks.acked:
                lost = (marks.acked + 1, marks.reserved, "quarantined")
        elif not existed and marks is not None and marks.reserved > marks.acked:
            lost = (marks.acked + 1, marks.reserved, "missing")  # the file vanished under us
        try:
            self._db = self._connect(new=not self.path.exists())
            migrate(self._db)
            self.epoch = self._open_epoch(marks)
            self._load(marks)
            if lost is not None:
                log.error("outbox lost, announcing gap",
                          extra={"first": lost[0], "last": lost[1], "reason": lost[2]})
                self._in_tx(lambda db: self._insert_gap(db, lost[0], lost[1], lost[2], CommitResult()))
        except (sqlite3.Error, OSError) as exc:  # OSError: the sidecar (a full disk: ENOSPC)
            raise OutboxError(self.path, f"cannot open: {exc}") from exc
        return self

    def _connect(self, *, new: bool) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        if new:
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only possible before the first table
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.config.synchronous}")
        # 256 KiB of page cache instead of 2 MiB: the writer appends at the tail and the forwarder
        # reads just behind it, so hits stay high; the agent's RSS budget is 35 MB (bench/RESULTS.md)
        db.execute("PRAGMA cache_size=-256")
        return db

    def _open_epoch(self, marks: SeqMarks | None) -> str:
        """This outbox's epoch: the one it was created with; for a new file, the surviving sidecar's
        (same device life, seqs go on above ``reserved``), else a fresh random one (a device whose state
        is gone: a new SD card, a wiped state folder). An outbox from before epochs keeps ``""``."""
        db = self._conn
        row = db.execute("SELECT value FROM meta WHERE name = 'epoch'").fetchone()
        if row is not None:
            return str(row[0])
        if db.execute("SELECT count(*) FROM seqs").fetchone()[0]:
            epoch = ""  # migrated from schema 1: its events went out without an epoch, keep it so
        elif marks is not None:
            epoch = marks.epoch
        else:
            epoch = secrets.token_hex(8)
            log.info("new outbox epoch: no earlier state of this device found",
                        extra={"device": self.deviceid, "epoch": epoch, "path": str(self.path)})
        db.execute("INSERT INTO meta VALUES ('epoch', ?)", (epoch,))
        return epoch

    def _load(self, marks: SeqMarks | None) -> None:
        db = self._conn
        row = db.execute("SELECT last_seq FROM seqs WHERE deviceid = ?", (self.deviceid,)).fetchone()
        self._last_seq = max(row[0] if row else 0, marks.reserved if marks and not row else 0)
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        s = self.stats
        s.evicted, s.rejected = counters.get("evicted", 0), counters.get("rejected", 0)
        s.last_ack_seq = counters.get("last_ack_seq", 0)
        s.rows, s.bytes = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
        oldest = db.execute("SELECT created_ms FROM outbox ORDER BY seq LIMIT 1").fetchone()
        s.oldest_ms = oldest[0] if oldest else None
        s.last_seq = self._last_seq
        self._recent.reset(self._last_seq + 1)
        acked = (self.head() or self._last_seq + 1) - 1
        reserved = max(self._last_seq, marks.reserved if marks else 0)
        self._marks = SeqMarks(self.deviceid, reserved, acked, self.epoch)
        try:
            write_marks(self.sidecar, self._marks)
        except OSError as exc:
            if marks is None or marks.reserved < reserved or marks.epoch != self.epoch:
                raise
            # the sidecar on disk already covers every seq and names the epoch: only its acked mark
            # (a lower bound) is stale, so a full disk must not keep the outbox from opening
            log.warning("outbox sidecar not refreshed", extra={"path": str(self.sidecar), "error": str(exc)})

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("outbox is not open")
        return self._db

    def close(self) -> None:
        if self._db is None:
            return
        try:
            # Both steps are housekeeping (the acked mark is a lower bound; the WAL holds every commit):
            # on a full disk they fail, and closing must not.
            self._marks = dataclasses.replace(self._marks, acked=(self.head() or self._last_seq + 1) - 1)
            write_marks(self.sidecar, self._marks)
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except (sqlite3.Error, OSError) as exc:
            log.warning("outbox closed without its final checkpoint", extra={"error": str(exc)})
        finally:
            self._db.close()
            self._db = None

    def __enter__(self) -> Outbox:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def head(self) -> int | None:
        """The lowest seq still in the outbox."""
        row = self._conn.execute("SELECT min(seq) FROM outbox").fetchone()
        return row[0] if row else None

    def read(self, from_seq: int, limit: int) -> list[Row]:
        """Up to ``limit`` committed rows with ``seq >= from_seq``, in seq order."""
        recent = self._recent.read(from_seq, limit)
        if recent is not None:
            return recent
        rows = self._conn.execute(
            "SELECT seq, eventid, type, payload FROM outbox WHERE seq >= ? ORDER BY seq LIMIT ?",
            (from_seq, limit),
        ).fetchall()
        return list(map(Row._make, rows))

    # -- the group commit --------------------------------------------------------------------------

    def commit(
        self,
        events: Sequence[Event] = (),
        acked: Iterable[tuple[int, int]] = (),
        *,
        keep_recent: bool = True,
        facts: Mapping[str, int] | None = None,
    ) -> CommitResult:
        """Delete ``acked`` (receipted) seq ranges and insert ``events`` (their ``seq`` is replaced) in
        one transaction; see :mod:`edge_agent.outbox` for the order. Raises :class:`OutboxError`.

        ``keep_recent``: keep the new rows in memory for :meth:`read` (the forwarder is about to send
        them); pass ``False`` while nobody will (broker away), so a backlog costs no memory.
        ``facts``: counters of the forwarder to keep with the commit for ``edgebridge agent status``
        (``unreceipted``, ``resends``, ``oldest_unreceipted_ms``)."""
        self._recent.keep = keep_recent
        result = CommitResult()

        def body(db: sqlite3.Connection) -> None:
            self._commit(db, events, list(acked), result)
            for name, value in (facts or {}).items():
                self._set_counter(db, name, value)

        try:
            self._in_tx(body)
        except (sqlite3.Error, OSError) as exc:  # OSError: the sidecar (a full disk: ENOSPC)
            self.stats.commit_failures += 1
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                # The WAL could not grow. Checkpoint it and restart it from its first frame, so the
                # next try rewrites space the WAL already holds instead of asking the disk for more.
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(RESTART)")
            raise OutboxError(self.path, f"commit failed: {exc}") from exc
        return result

    def _in_tx(self, body: Callable[[sqlite3.Connection], None]) -> None:
        db = self._conn
        saved = (dataclasses.replace(self.stats), self._last_seq)
        db.execute("BEGIN IMMEDIATE")
        try:
            body(db)
            db.execute("INSERT OR REPLACE INTO seqs VALUES (?, ?)", (self.deviceid, self._last_seq))
            db.execute("COMMIT")
        except BaseException:
            failures = self.stats.commit_failures
            try:
                # SQLite has rolled back already after SQLITE_FULL and some I/O errors
                if db.in_transaction:
                    db.execute("ROLLBACK")
            finally:
                self.stats, self._last_seq = saved  # what the database says again
                self.stats.commit_failures = failures
                self._recent.reset(self._last_seq + 1)
            raise
        self.stats.commits += 1
        self.stats.last_seq = self._last_seq

    def _commit(
        self,
        db: sqlite3.Connection,
        events: Sequence[Event],
        acked: list[tuple[int, int]],
        result: CommitResult,
    ) -> None:
        s = self.stats
        for first, last in acked:
            # count and sum in SQLite, not one Python object per deleted row
            count, freed = db.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM outbox WHERE seq BETWEEN ? AND ?", (first, last)
            ).fetchone()
            db.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (first, last))
            s.rows -= count
            s.bytes -= freed
            s.acked += count
            s.last_ack_seq = max(s.last_ack_seq, last)
            self._recent.deleted_upto(last)
        if acked:
            self._set_counter(db, "last_ack_seq", s.last_ack_seq)
            self._set_counter(db, "last_ack_ms", int(time.time() * 1000))
        free = self._free_bytes(self.path.parent)
        max_rows, max_bytes = bound.limits(self.config, s.bytes, free, bound.reusable_bytes(db))
        for rowid, first, last, reason in bound.pending_gaps(db):
            if not bound.gap_fits(s.rows, s.bytes, max_rows, max_bytes):
                break
            bound.forget_pending(db, rowid)
            self._insert_gap(db, first, last, reason, result)
        if events:
            accept = len(events)
            if self.config.policy == "reject_new":
                accept = bound.room(events, s.rows, s.bytes, max_rows, max_bytes)
            self._insert(db, events[:accept], result)
            if accept < len(events):
                self._reject(db, len(events) - accept, result)
            elif self._refusing:
                self._refusing = False
                log.warning("outbox accepting new events again", extra={"rejected_total": s.rejected})
        if self.config.policy == "drop_oldest":
            self._evict(db, max_rows, max_bytes, result)
        if s.rows == 0 and acked:
            db.execute("PRAGMA incremental_vacuum(64)")  # give back a little after a drain, bounded
        row = db.execute("SELECT created_ms FROM outbox ORDER BY seq LIMIT 1").fetchone()
        s.oldest_ms = row[0] if row else None

    def _reserve(self, upto: int) -> None:
        if upto > self._marks.reserved:
            head = self._conn.execute("SELECT min(seq) FROM outbox").fetchone()[0]
            acked = (head or self._last_seq + 1) - 1
            self._marks = SeqMarks(self.deviceid, upto + self.config.seq_block, acked, self.epoch)
            write_marks(self.sidecar, self._marks)  # before the seqs exist anywhere else

    def _insert(self, db: sqlite3.Connection, events: Sequence[Event], result: CommitResult) -> None:
        if not events:
            return
        first = self._last_seq + 1
        self._reserve(first + len(events) - 1)
        dumps, make, epoch = orjson.dumps, Row._make, self.epoch
        rows: list[Row] = []
        sizes = 0
        seq = first
        try:
            for event in events:
                obj = to_dict(event)
                obj["seq"] = seq  # the placeholder's key keeps its place: the envelope's encoding
                if epoch:
                    obj["epoch"] = epoch  # after data: member order carries no meaning in JSON
                payload = dumps(obj)
                sizes += len(payload)
                rows.append(make((seq, event.id, event.type, payload)))
                seq += 1
        except orjson.JSONEncodeError as exc:  # an event built around the validators
            raise EnvelopeError("not_json", f"cannot encode: {exc}") from exc
        # one prepared statement for every commit; the wall clock (ms) is taken by SQLite
        db.executemany(_INSERT_ROW, rows)
        self._recent.add(rows)
        self._last_seq = first + len(events) - 1
        added = sizes
        s = self.stats
        s.rows += len(rows)
        s.bytes += added
        s.payload_bytes += added
        s.committed += len(rows)
        result.first_seq = result.first_seq or first
        result.last_seq = self._last_seq

    def _insert_gap(
        self, db: sqlite3.Connection, first: int, last: int, reason: str, result: CommitResult
    ) -> None:
        seq = self._last_seq + 1
        self._reserve(seq)
        gap = new_gap(self.deviceid, seq, first, last, reason, epoch=self.epoch or None,
                      **self._stamp())  # type: ignore[arg-type]
        payload = encode(gap)
        row = Row(seq, gap.id, GAP_TYPE, payload)
        db.execute(_INSERT_ROW, row)
        self._recent.add([row])
        self._last_seq = seq
        s = self.stats
        s.rows += 1
        s.bytes += len(payload)
        s.payload_bytes += len(payload)
        s.committed += 1
        s.gaps += 1
        result.gaps.append(gap)

    def _reject(self, db: sqlite3.Connection, count: int, result: CommitResult) -> None:
        """Burn ``count`` seqs for refused events and remember the range until a gap fits."""
        first = self._last_seq + 1
        self._reserve(first + count - 1)
        self._last_seq = first + count - 1
        bound.remember_rejected(db, first, self._last_seq)
        if not self._refusing:  # logged when refusing starts and when it ends, not once per commit
            self._refusing = True
            log.warning("outbox full: refusing new events (reject_new) until acks make room",
                        extra={"first": first, "rows": self.stats.rows, "bytes": self.stats.bytes})
        self.stats.rejected += count
        result.rejected += count
        self._set_counter(db, "rejected", self.stats.rejected)

    def _evict(self, db: sqlite3.Connection, max_rows: int, max_bytes: int, result: CommitResult) -> None:
        s = self.stats
        gone = bound.evict_oldest(db, s.rows, s.bytes, max_rows, max_bytes)
        if not gone.runs:
            return
        self._recent.deleted_upto(gone.upto)
        s.rows -= gone.rows
        s.bytes -= gone.bytes
        s.evicted += gone.rows
        self._set_counter(db, "evicted", s.evicted)
        for first, last in gone.runs:
            log.warning("outbox full: evicted oldest events", extra={"first": first, "last": last})
            self._insert_gap(db, first, last, "evicted", result)

    def _set_counter(self, db: sqlite3.Connection, name: str, value: int) -> None:
        db.execute("INSERT OR REPLACE INTO counters VALUES (?, ?)", (name, value))
