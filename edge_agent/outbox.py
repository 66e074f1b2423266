"""The outbox: a bounded, durable SQLite queue of encoded events, one writer connection.

Delivery guarantee. An event is *committed* when the transaction that inserted it has committed with
``synchronous=FULL`` (the default): from then on it survives kill -9 and power loss, and it stays in the
outbox until :meth:`Outbox.commit` is handed its PUBACK (``acked``), or until the bound evicts it, which
is counted and announced as an ``edgebridge.gap.v1`` event carrying the exact evicted ``seq`` range.

Commit order, inside one transaction per group commit (every N events or T ms, see the agent loop):

1. delete the rows whose PUBACK arrived since the last commit;
2. announce seqs burnt by ``reject_new`` earlier, once there is room for the gap event;
3. assign the next seqs (from the ``seqs`` counter table, never from rowids: a counter survives the
   outbox draining empty and restarts) and insert the new events, or refuse them under ``reject_new``;
4. under ``drop_oldest``, evict the oldest rows until the bound holds, then insert one gap per
   contiguous evicted run;
5. update the counters (evictions, last ack) that ``edgebridge agent status`` reads; COMMIT.

The bound: ``max_rows`` and ``max_bytes`` (payload bytes), the latter shrunk by the free-disk guard so
the outbox behaves as full while the file system has less than ``min_free_bytes`` free. Pages freed by
deletes are reused (``auto_vacuum=INCREMENTAL`` set at creation); a drained outbox gives back at most a
few pages per commit through ``incremental_vacuum``, never a full ``VACUUM`` (SD-card wear).

Cost per event. Events are encoded once, at commit, and stored as bytes (a batch is those bytes
joined); one prepared INSERT per group commit (``executemany``); acked rows go by seq range, counted in
SQLite. The rows of the latest commits stay in memory (bounded: two group commits) so the forwarder
publishes live events without reading back what was just written; while the broker is away the agent
asks for none (``keep_recent=False``), so a backlog costs no memory.

At open, ``PRAGMA quick_check`` (or ``integrity_check``); a corrupt file is renamed aside with its
``-wal``/``-shm`` (kept, never deleted), a new outbox starts, and the possibly lost range from the seq
sidecar (:mod:`edge_agent.seqfile`) is announced as a gap with reason ``quarantined``.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import orjson

from edge_agent.config import OutboxConfig
from edge_agent.seqfile import SeqMarks, read_marks, write_marks
from edgebridge.envelope import GAP_TYPE, Event, encode, new_gap, to_dict
from edgebridge.errors import EdgeBridgeError, EnvelopeError

__all__ = ["CommitResult", "Outbox", "OutboxError", "OutboxStats", "Row", "read_status"]

log = logging.getLogger(__name__)

GAP_ROOM = 512  # bytes kept free in the bound for each gap event an eviction adds

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE seqs (deviceid TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY,        -- assigned from seqs, never reused
            eventid TEXT NOT NULL,
            type TEXT NOT NULL,
            created_ms INTEGER NOT NULL,    -- wall clock at commit, for the oldest-age figure
            size INTEGER NOT NULL,
            payload BLOB NOT NULL           -- application/cloudevents+json
        );
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE pending_gap (first INTEGER NOT NULL, last INTEGER NOT NULL, reason TEXT NOT NULL);
        """,
    ),
]


_INSERT_ROW = (
    "INSERT INTO outbox VALUES (?1, ?2, ?3,"
    " CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), length(?4), ?4)"
)


def _seq_of(row: Row) -> int:
    return row.seq


class OutboxError(EdgeBridgeError):
    """The outbox cannot be opened or written (disk, permissions); ``path`` says which file."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class Row(NamedTuple):
    """One committed event as the forwarder sends it (a tuple: cheap to make, one per event)."""

    seq: int
    eventid: str
    type: str
    payload: bytes


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
        self._free_bytes = free_bytes or _free_bytes
        self._db: sqlite3.Connection | None = None
        self._marks = SeqMarks(deviceid)
        self._last_seq = 0
        # The rows of the latest commits, so that live events are published without reading back what
        # was just written. Exact by construction: it holds every row with seq >= _recent_from, and is
        # only used for reads above _deleted_max (nothing at or above that seq was ever deleted).
        self._recent: list[Row] = []
        self._recent_from = 1
        self._recent_cap = 2 * self.config.commit_every_events
        self._deleted_max = 0
        self._keep_recent = True

    # -- opening -----------------------------------------------------------------------------------

    def open(self) -> Outbox:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        marks = read_marks(self.sidecar, self.deviceid)
        existed = self.path.exists()
        lost: tuple[int, int, str] | None = None
        if existed and not self._healthy():
            self._quarantine()
            if marks is not None and marks.reserved > marks.acked:
                lost = (marks.acked + 1, marks.reserved, "quarantined")
        elif not existed and marks is not None and marks.reserved > marks.acked:
            lost = (marks.acked + 1, marks.reserved, "missing")  # the file vanished under us
        try:
            self._db = self._connect(new=not self.path.exists())
            self._migrate()
            self._load(marks)
        except sqlite3.Error as exc:
            raise OutboxError(self.path, f"cannot open: {exc}") from exc
        if lost is not None:
            log.error(
                "outbox lost, announcing gap", extra={"first": lost[0], "last": lost[1], "reason": lost[2]}
            )
            self._in_tx(lambda db: self._insert_gap(db, lost[0], lost[1], lost[2], CommitResult()))
        return self

    def _healthy(self) -> bool:
        mode = self.config.integrity_check
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
            try:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                if mode == "off":
                    return True
                pragma = "quick_check" if mode == "quick" else "integrity_check"
                result = [r[0] for r in db.execute(f"PRAGMA {pragma}")]
                db.execute("SELECT count(*), max(seq) FROM outbox").fetchone()
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            log.error("outbox unreadable", extra={"path": str(self.path), "error": str(exc)})
            return False
        if result != ["ok"]:
            log.error("outbox failed integrity check", extra={"path": str(self.path), "errors": result[:5]})
            return False
        return True

    def _quarantine(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                src.rename(Path(str(target) + suffix))
        self.stats.quarantined += 1
        log.error("outbox quarantined, starting a new one", extra={"moved_to": str(target)})

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

    def _migrate(self) -> None:
        db = self._conn
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)"
        )
        done = {r[0] for r in db.execute("SELECT version FROM schema_migrations")}
        for version, sql in MIGRATIONS:
            if version in done:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, sql.split(";")):
                    db.execute(statement)
                db.execute("INSERT INTO schema_migrations VALUES (?, datetime('now'))", (version,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

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
        self._reset_recent()
        acked = (self.head() or self._last_seq + 1) - 1
        self._marks = SeqMarks(self.deviceid, max(self._last_seq, marks.reserved if marks else 0), acked)
        write_marks(self.sidecar, self._marks)

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("outbox is not open")
        return self._db

    def close(self) -> None:
        if self._db is None:
            return
        try:
            self._marks = dataclasses.replace(self._marks, acked=(self.head() or self._last_seq + 1) - 1)
            write_marks(self.sidecar, self._marks)
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
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
        if from_seq >= self._recent_from and from_seq > self._deleted_max:
            recent = self._recent
            i = bisect.bisect_left(recent, from_seq, key=_seq_of)
            return recent[i : i + limit]
        rows = self._conn.execute(
            "SELECT seq, eventid, type, payload FROM outbox WHERE seq >= ? ORDER BY seq LIMIT ?",
            (from_seq, limit),
        ).fetchall()
        return list(map(Row._make, rows))

    def _reset_recent(self) -> None:
        self._recent = []
        self._recent_from = self._last_seq + 1

    def _remember(self, rows: list[Row]) -> None:
        if not self._keep_recent:
            self._recent = []
            self._recent_from = rows[-1].seq + 1
            return
        recent = self._recent
        recent.extend(rows)
        if len(recent) > self._recent_cap:
            drop = len(recent) - self._recent_cap
            self._recent_from = recent[drop - 1].seq + 1
            del recent[:drop]

    def _deleted_upto(self, seq: int) -> None:
        """Rows up to ``seq`` may be gone: the recent rows at or below it are no longer needed."""
        if seq > self._deleted_max:
            self._deleted_max = seq
            if seq >= self._recent_from:
                i = bisect.bisect_right(self._recent, seq, key=_seq_of)
                del self._recent[:i]
                self._recent_from = seq + 1

    # -- the group commit --------------------------------------------------------------------------

    def commit(
        self,
        events: Sequence[Event] = (),
        acked: Iterable[tuple[int, int]] = (),
        *,
        keep_recent: bool = True,
    ) -> CommitResult:
        """Delete ``acked`` seq ranges and insert ``events`` (their ``seq`` is replaced) in one
        transaction; see the module docstring for the order. Raises :class:`OutboxError`.

        ``keep_recent``: keep the new rows in memory for :meth:`read` (the forwarder is about to send
        them); pass ``False`` while nobody will (broker away), so a backlog costs no memory."""
        self._keep_recent = keep_recent
        result = CommitResult()
        try:
            self._in_tx(lambda db: self._commit(db, events, list(acked), result))
        except sqlite3.Error as exc:
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
            db.execute("ROLLBACK")
            self.stats, self._last_seq = saved  # what the database says again
            self._reset_recent()
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
            self._deleted_upto(last)
        if acked:
            self._set_counter(db, "last_ack_seq", s.last_ack_seq)
            self._set_counter(db, "last_ack_ms", int(time.time() * 1000))
        max_rows, max_bytes = self._limits()
        pending = db.execute("SELECT rowid, first, last, reason FROM pending_gap ORDER BY rowid").fetchall()
        for rowid, first, last, reason in pending:
            if s.rows + 1 > max_rows or s.bytes + GAP_ROOM > max_bytes:
                break
            db.execute("DELETE FROM pending_gap WHERE rowid = ?", (rowid,))
            self._insert_gap(db, first, last, reason, result)
        if events:
            accept = len(events)
            if self.config.policy == "reject_new":
                accept = self._room(events, max_rows - 1, max_bytes - GAP_ROOM)
            self._insert(db, events[:accept], result)
            if accept < len(events):
                self._reject(db, len(events) - accept, result)
        if self.config.policy == "drop_oldest":
            self._evict(db, max_rows, max_bytes, result)
        if s.rows == 0 and acked:
            db.execute("PRAGMA incremental_vacuum(64)")  # give back a little after a drain, bounded
        row = db.execute("SELECT created_ms FROM outbox ORDER BY seq LIMIT 1").fetchone()
        s.oldest_ms = row[0] if row else None

    def _limits(self) -> tuple[int, int]:
        max_bytes = self.config.max_bytes
        guard = self._free_bytes(self.path.parent) - self.config.min_free_bytes
        # free-disk guard: the file may grow by at most what is free above the reserve
        return self.config.max_rows, min(max_bytes, self.stats.bytes + max(guard, 0))

    def _room(self, events: Sequence[Event], max_rows: int, max_bytes: int) -> int:
        rows, size = self.stats.rows, self.stats.bytes
        for i, event in enumerate(events):
            size += len(encode(event))
            rows += 1
            if rows > max_rows or size > max_bytes:
                return i
        return len(events)

    def _reserve(self, upto: int) -> None:
        if upto > self._marks.reserved:
            head = self._conn.execute("SELECT min(seq) FROM outbox").fetchone()[0]
            acked = (head or self._last_seq + 1) - 1
            self._marks = SeqMarks(self.deviceid, upto + self.config.seq_block, acked)
            write_marks(self.sidecar, self._marks)  # before the seqs exist anywhere else

    def _insert(self, db: sqlite3.Connection, events: Sequence[Event], result: CommitResult) -> None:
        if not events:
            return
        first = self._last_seq + 1
        self._reserve(first + len(events) - 1)
        dumps, make = orjson.dumps, Row._make
        rows: list[Row] = []
        sizes = 0
        seq = first
        try:
            for event in events:
                obj = to_dict(event)
                obj["seq"] = seq  # the placeholder's key keeps its place: the envelope's encoding
                payload = dumps(obj)
                sizes += len(payload)
                rows.append(make((seq, event.id, event.type, payload)))
                seq += 1
        except orjson.JSONEncodeError as exc:  # an event built around the validators
            raise EnvelopeError("not_json", f"cannot encode: {exc}") from exc
        # one prepared statement for every commit; the wall clock (ms) is taken by SQLite
        db.executemany(_INSERT_ROW, rows)
        self._remember(rows)
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
        gap = new_gap(self.deviceid, seq, first, last, reason, **self._stamp())  # type: ignore[arg-type]
        payload = encode(gap)
        row = Row(seq, gap.id, GAP_TYPE, payload)
        db.execute(_INSERT_ROW, row)
        self._remember([row])
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
        last_pending = db.execute(
            "SELECT rowid, last FROM pending_gap ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        if last_pending is not None and last_pending[1] == first - 1:
            db.execute("UPDATE pending_gap SET last = ? WHERE rowid = ?", (self._last_seq, last_pending[0]))
        else:
            db.execute("INSERT INTO pending_gap VALUES (?, ?, 'rejected')", (first, self._last_seq))
        self.stats.rejected += count
        result.rejected += count
        self._set_counter(db, "rejected", self.stats.rejected)

    def _evict(self, db: sqlite3.Connection, max_rows: int, max_bytes: int, result: CommitResult) -> None:
        s = self.stats
        runs: list[list[int]] = []
        # Evict until the rows, plus one gap event per evicted run, fit the bound.
        while s.rows + len(runs) > max_rows or s.bytes + GAP_ROOM * len(runs) > max_bytes:
            over_rows = s.rows + len(runs) + 1 - max_rows
            over_bytes = s.bytes + GAP_ROOM * (len(runs) + 1) - max_bytes
            picked: list[tuple[int, int]] = []
            freed = 0
            covers: dict[int, int] = {}  # evicted gap seq -> first seq of the range it announced
            oldest = db.execute(
                "SELECT seq, size, CASE WHEN type = ? THEN payload END FROM outbox ORDER BY seq LIMIT ?",
                (GAP_TYPE, max(over_rows, 1) + 256),
            )
            for seq, size, gap_payload in oldest.fetchall():
                picked.append((seq, size))
                freed += size
                if gap_payload is not None:
                    covers[seq] = int(orjson.loads(gap_payload)["data"]["first"])
                if len(picked) >= over_rows and freed >= over_bytes:
                    break
            if not picked:
                break
            db.execute("DELETE FROM outbox WHERE seq <= ?", (picked[-1][0],))
            self._deleted_upto(picked[-1][0])
            s.rows -= len(picked)
            s.bytes -= freed
            s.evicted += len(picked)
            for seq, _ in picked:
                # An evicted gap event takes its announcement with it: the new gap must cover its
                # range too, or the seqs it announced would become a silent hole.
                first = covers.get(seq, seq)
                if runs and runs[-1][1] + 1 >= first:
                    runs[-1][1] = seq
                    runs[-1][0] = min(runs[-1][0], first)
                else:
                    runs.append([first, seq])
            runs = _merge_runs(runs)
        if not runs:
            return
        self._set_counter(db, "evicted", s.evicted)
        for first, last in runs:
            log.warning("outbox full: evicted oldest events", extra={"first": first, "last": last})
            self._insert_gap(db, first, last, "evicted", result)

    def _set_counter(self, db: sqlite3.Connection, name: str, value: int) -> None:
        db.execute("INSERT OR REPLACE INTO counters VALUES (?, ?)", (name, value))


def _merge_runs(runs: list[list[int]]) -> list[list[int]]:
    """Evicted runs that became contiguous (a later pass took the seqs between them) merge into one."""
    merged: list[list[int]] = []
    for first, last in sorted(runs):
        if merged and merged[-1][1] + 1 >= first:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return merged


def _free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def read_status(path: Path) -> dict[str, object]:
    """What ``edgebridge agent status`` shows, read through a read-only connection (the agent may run)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        rows, size = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
        oldest = db.execute("SELECT seq, created_ms FROM outbox ORDER BY seq LIMIT 1").fetchone()
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        seqs = dict(db.execute("SELECT deviceid, last_seq FROM seqs").fetchall())
        version = db.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
    finally:
        db.close()
    now_ms = int(time.time() * 1000)
    last_ack_ms = counters.get("last_ack_ms")
    return {
        "backlog_rows": rows,
        "backlog_bytes": size,
        "oldest_seq": oldest[0] if oldest else None,
        "oldest_age_s": round((now_ms - oldest[1]) / 1000, 3) if oldest else None,
        "last_seq": seqs,
        "evicted": counters.get("evicted", 0),
        "rejected": counters.get("rejected", 0),
        "last_ack_seq": counters.get("last_ack_seq", 0),
        "last_ack_age_s": round((now_ms - last_ack_ms) / 1000, 3) if last_ack_ms else None,
        "schema_version": version,
        "file_bytes": path.stat().st_size,
    }
