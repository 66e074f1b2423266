"""The outbox on its own (no broker): seq, group commit, bound and gaps, quarantine, migrations."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import orjson
import pytest

from edge_agent.config import OutboxConfig
from edge_agent.outbox import Outbox, read_status
from edgebridge.envelope import GAP_TYPE, Event, decode, new_reading
from edgebridge.errors import EnvelopeError

DEV = "dev-1"


def readings(n: int, start: int = 0) -> list[Event]:
    return [new_reading(DEV, 1, {"n": {"v": start + i}}) for i in range(n)]


def all_rows(box: Outbox) -> list[Event]:
    return [decode(r.payload) for r in box.read(1, 10**9)]


def test_seq_strictly_increasing_never_reused_after_drain_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, DEV) as box:
        r1 = box.commit(readings(5))
        assert (r1.first_seq, r1.last_seq) == (1, 5)
        box.commit(acked=[(1, 5)])  # drained empty
        assert box.stats.rows == 0
        r2 = box.commit(readings(3))
        assert (r2.first_seq, r2.last_seq) == (6, 8)
    with Outbox(path, DEV) as box:
        box.commit(acked=[(6, 8)])
        r3 = box.commit(readings(2))
        assert (r3.first_seq, r3.last_seq) == (9, 10)
        assert [e.seq for e in all_rows(box)] == [9, 10]
        assert [e.data["n"]["v"] for e in all_rows(box)] == [0, 1]
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_migrations").fetchall() == [(1,), (2,)]
    finally:
        db.close()


def test_uncommitted_seqs_are_not_published_and_may_be_reassigned(tmp_path: Path) -> None:
    """A failed transaction rolls the counter back with it: nothing with those seqs left the outbox."""
    path = tmp_path / "outbox.db"
    with Outbox(path, DEV) as box:
        box.commit(readings(2))
        bad = Event("x", DEV, 1, "edgebridge.reading.v1", "2024-01-01T00:00:00Z", {"n": {"v": object()}})
        with pytest.raises(EnvelopeError):  # cannot be encoded: the whole commit fails
            box.commit([*readings(1), bad])
        assert box.last_seq == 2 and box.stats.rows == 2
        assert box.commit(readings(1)).first_seq == 3


def test_drop_oldest_evicts_exact_range_and_announces_gap(tmp_path: Path) -> None:
    config = OutboxConfig(max_rows=10, min_free_bytes=0)
    with Outbox(tmp_path / "o.db", DEV, config) as box:
        box.commit(readings(8))  # seqs 1..8
        result = box.commit(readings(5, start=8))  # seqs 9..13 -> 13 rows, 10 allowed incl. one gap
        assert box.stats.rows == 10
        assert [(g.data["first"], g.data["last"], g.data["reason"]) for g in result.gaps] == [
            (1, 4, "evicted")
        ]
        rows = all_rows(box)
        assert [e.seq for e in rows] == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
        assert rows[-1].type == GAP_TYPE and rows[-1].data["count"] == 4
        assert box.stats.evicted == 4
        result = box.commit(readings(5, start=13))  # 15..19, gap 20
        assert [(g.seq, g.data["first"], g.data["last"]) for g in result.gaps] == [(20, 5, 10)]
        # the gap 14 is evicted now: the next gap covers its range (1..4) too, or it would be a silent hole
        result = box.commit(readings(5, start=18))  # 21..25, gap 26
        assert [(g.seq, g.data["first"], g.data["last"]) for g in result.gaps] == [(26, 1, 16)]
        assert box.stats.rows == 10
        assert read_status(tmp_path / "o.db")["evicted"] == 16


def test_drop_oldest_by_bytes(tmp_path: Path) -> None:
    config = OutboxConfig(max_bytes=64 * 1024, min_free_bytes=0)
    with Outbox(tmp_path / "o.db", DEV, config) as box:
        big = [new_reading(DEV, 1, {"s": {"v": "x" * 1000}}) for _ in range(100)]
        result = box.commit(big)
        assert box.stats.bytes <= 64 * 1024
        (gap,) = result.gaps
        first, last = gap.data["first"], gap.data["last"]
        assert first == 1
        assert [e.seq for e in all_rows(box)] == [*range(last + 1, 101), 101]
        assert box.stats.evicted == last


def test_reject_new_burns_seqs_and_announces_them_when_room_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = OutboxConfig(max_rows=10, policy="reject_new", min_free_bytes=0)
    caplog.set_level(logging.WARNING, logger="edge_agent.outbox")
    with Outbox(tmp_path / "o.db", DEV, config) as box:
        r = box.commit(readings(12))
        assert (r.first_seq, r.last_seq, r.rejected) == (1, 9, 3)  # one row kept for the gap
        assert box.stats.rejected == 3 and box.stats.rows == 9
        # the kept row takes the gap at once (seq 13); the new event is refused again (seq 14)
        r = box.commit(readings(1))
        assert [(g.seq, g.data["first"], g.data["last"]) for g in r.gaps] == [(13, 10, 12)]
        assert r.rejected == 1 and box.stats.rows == 10
        r = box.commit(readings(1), acked=[(1, 5)])
        assert [(g.seq, g.data["first"], g.data["last"], g.data["reason"]) for g in r.gaps] == [
            (15, 14, 14, "rejected")
        ]
        assert (r.first_seq, r.last_seq) == (16, 16)
        assert [e.seq for e in all_rows(box)] == [6, 7, 8, 9, 13, 15, 16]
    # the overflow policy is logged when it starts and when it ends, not once per refusing commit
    assert [(r.getMessage(), getattr(r, "first", None), getattr(r, "rejected_total", None))
            for r in caplog.records] == [
        ("outbox full: refusing new events (reject_new) until acks make room", 10, None),
        ("outbox accepting new events again", None, 4),
    ]


def test_free_disk_guard_acts_as_full(tmp_path: Path) -> None:
    free = {"bytes": 10**12}
    config = OutboxConfig(min_free_bytes=1_000_000)
    with Outbox(tmp_path / "o.db", DEV, config, free_bytes=lambda _p: free["bytes"]) as box:
        box.commit(readings(50))
        before = box.stats.bytes
        free["bytes"] = 1_000_000  # no room above the reserve: nothing may grow
        result = box.commit(readings(10, start=50))
        assert box.stats.evicted >= 10 and result.gaps
        assert box.stats.bytes <= before


@pytest.mark.parametrize("where", ["header", "pages"])
def test_corrupt_outbox_quarantined_with_gap_for_lost_range(tmp_path: Path, where: str) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, DEV, OutboxConfig(seq_block=1000)) as box:
        box.commit([new_reading(DEV, 1, {"s": {"v": "y" * 500}}) for _ in range(200)])
        box.commit(acked=[(1, 50)])
        first_epoch = box.epoch
    size = path.stat().st_size
    with open(path, "r+b") as f:
        if where == "header":
            f.write(b"garbage!" * 16)
        else:
            f.seek(4096 * 2)
            f.write(orjson.dumps(list(range(3000)))[: size - 4096 * 3])
    with Outbox(path, DEV, OutboxConfig(seq_block=1000)) as box:
        corrupt = list(tmp_path.glob("outbox.db.corrupt-*"))
        assert len(corrupt) == 1 and corrupt[0].stat().st_size == size  # kept, never deleted
        (gap,) = all_rows(box)
        # acked mark 50 (written at close), reserved 200 + 1000 (sidecar)
        assert (gap.seq, gap.data["first"], gap.data["last"], gap.data["reason"]) == (
            1201,
            51,
            1200,
            "quarantined",
        )
        assert box.commit(readings(1)).first_seq == 1202
        assert box.stats.quarantined == 1
        assert gap.epoch == box.epoch == first_epoch  # the sidecar survived: the same device life


def test_reads_from_recent_rows_match_the_database(tmp_path: Path) -> None:
    """The in-memory recent rows serve the forwarder exactly what a SELECT would, through acks (also
    out of order), evictions with gaps, a rolled-back commit and commits that keep nothing."""
    path = tmp_path / "outbox.db"

    def check(box: Outbox) -> None:
        db = sqlite3.connect(path)
        try:
            for start in range(1, box.last_seq + 3):
                for limit in (1, 7, 10**6):
                    want = db.execute(
                        "SELECT seq, eventid, type, payload FROM outbox WHERE seq >= ? ORDER BY seq LIMIT ?",
                        (start, limit),
                    ).fetchall()
                    assert [tuple(r) for r in box.read(start, limit)] == want, (start, limit)
        finally:
            db.close()

    with Outbox(path, DEV, OutboxConfig(max_rows=30, min_free_bytes=0, commit_every_events=8)) as box:
        box.commit(readings(10))
        check(box)
        box.commit(readings(5), acked=[(3, 4), (7, 7)])  # acks out of order leave holes
        check(box)
        box.commit(readings(40))  # past the bound: evictions and a gap event
        check(box)
        bad = Event("x", DEV, 1, "edgebridge.reading.v1", "2024-01-01T00:00:00Z", {"n": {"v": object()}})
        with pytest.raises(EnvelopeError):
            box.commit([*readings(2), bad])
        check(box)
        box.commit(readings(3), keep_recent=False)
        check(box)
        box.commit(readings(4), acked=[(box.last_seq - 6, box.last_seq - 5)])
        check(box)


# -- epochs -----------------------------------------------------------------------------------------


def test_epoch_drawn_at_creation_carried_by_every_event_and_kept_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, DEV, OutboxConfig(max_rows=12)) as box:
        epoch = box.epoch
        assert len(epoch) == 16 and int(epoch, 16) >= 0
        box.commit(readings(20))  # 8 evicted: a gap event
        events = all_rows(box)
        assert {e.epoch for e in events} == {epoch}
        assert any(e.type == GAP_TYPE for e in events)
    with Outbox(path, DEV) as box:
        assert box.epoch == epoch
        box.commit(readings(1))
        assert all_rows(box)[-1].epoch == epoch
    assert read_status(path)["epoch"] == epoch


def test_state_wiped_new_epoch_and_seqs_from_one(tmp_path: Path) -> None:
    """A replaced SD card: outbox and sidecar gone. Seqs start again at 1, so the epoch must differ."""
    state = tmp_path / "state"
    with Outbox(state / "outbox.db", DEV) as box:
        box.commit(readings(5))
        old = box.epoch
    for f in list(state.iterdir()):
        f.unlink()
    with Outbox(state / "outbox.db", DEV) as box:
        assert box.commit(readings(2)).first_seq == 1
        assert box.epoch != old and {e.epoch for e in all_rows(box)} == {box.epoch}


def test_outbox_file_lost_but_sidecar_kept_continues_the_epoch(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, DEV, OutboxConfig(seq_block=100)) as box:
        box.commit(readings(5))
        epoch = box.epoch
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with Outbox(path, DEV, OutboxConfig(seq_block=100)) as box:
        (gap,) = all_rows(box)
        assert (gap.epoch, gap.data["first"], gap.data["reason"]) == (epoch, 1, "missing")
        assert box.epoch == epoch and box.commit(readings(1)).first_seq > gap.seq


def test_schema_1_outbox_migrates_keeping_the_legacy_epoch(tmp_path: Path) -> None:
    """An outbox written before epochs: its events went out without one, so it goes on without one."""
    from edge_agent.outbox.migrations import MIGRATIONS

    path = tmp_path / "outbox.db"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in filter(str.strip, MIGRATIONS[0][1].split(";")):
        db.execute(statement)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)")
    db.execute("INSERT INTO schema_migrations VALUES (1, datetime('now'))")
    db.execute("INSERT INTO seqs VALUES (?, 7)", (DEV,))
    db.execute("INSERT INTO outbox VALUES (7, 'e7', 'edgebridge.reading.v1', 0, 2, ?)",
               (orjson.dumps({"old": True}),))
    db.close()
    with Outbox(path, DEV) as box:
        assert box.epoch == "" and box.stats.rows == 1
        assert box.commit(readings(1)).first_seq == 8
        assert decode(box.read(8, 1)[0].payload).epoch is None
    assert read_status(path)["epoch"] == ""


def test_the_outbox_modules_import_each_other_in_one_direction() -> None:
    """No import cycle inside ``edge_agent/outbox/`` (type-only imports included): each module can be
    read and changed knowing only those it imports."""
    import ast

    import edge_agent.outbox as package

    folder = Path(package.__file__).parent
    imports: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        if path.stem == "__init__":
            continue
        found = imports.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "edge_agent.outbox":
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edge_agent.outbox."):
                found.add((node.module or "").rsplit(".", 1)[1])
    assert "seqfile" in imports and "rows" in imports

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(name == target or (name not in seen and reaches(name, target, seen | {name}))
                   for name in imports.get(start, ()))

    assert [name for name in sorted(imports) if reaches(name, name, set())] == []
