"""Guarantee 1 under power cuts: the outbox on a file system that forgets everything not fsynced.

The file system (:mod:`simulators.powercut`, FUSE) is first shown to drop what it should and keep what
it should; then 100 cuts at seeded, reproducible points (the N-th mutating file operation) while a
child process commits to a real outbox (:mod:`tests.agent.outbox_writer`), each followed by reopening
the outbox on the remounted file system and judging it: ``PRAGMA integrity_check`` ok, never
quarantined, every seq the writer saw committed still there unless acked or announced by a gap, no seq
ever reused, one epoch throughout.
"""

from __future__ import annotations

import bisect
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import OutboxConfig
from edge_agent.outbox import Outbox
from edge_agent.outbox.seqfile import read_marks
from edgebridge.envelope import GAP_TYPE, decode, new_reading
from simulators.powercut import PowerCutFS, fuse_unavailable
from tests.conftest import IN_CI

DEV = "dev-1"
CUTS = 100
SEED = int(os.environ.get("EDGEBRIDGE_POWERCUT_SEED", "20240609"))
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[PowerCutFS]:
    why = fuse_unavailable()
    if why is not None:
        if IN_CI:
            pytest.fail(f"power-cut file system unavailable in CI: {why}", pytrace=False)
        pytest.skip(f"power-cut file system unavailable: {why}")
    with PowerCutFS(tmp_path / "store", tmp_path / "mnt") as mounted:
        yield mounted


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path: Path, data: bytes, *, sync: bool, mode: str = "wb") -> None:
    with open(path, mode) as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())


# -- the file system itself ------------------------------------------------------------------------


def test_unsynced_writes_are_dropped_synced_ones_kept(fs: PowerCutFS) -> None:
    mnt = fs.mountpoint
    write(mnt / "synced", b"durable", sync=True)
    write(mnt / "unsynced", b"volatile", sync=False)
    fsync_dir(mnt)  # both names are durable; only one content is
    write(mnt / "synced", b"XX", sync=False, mode="r+b")  # an overwrite and an append, never synced
    write(mnt / "synced", b" and more", sync=False, mode="ab")
    write(mnt / "later", b"synced data, unsynced name", sync=True)
    assert (mnt / "synced").read_bytes() == b"XXrable and more"
    report = fs.cut()
    assert report["dropped"] == 3  # writes: the unsynced one, the overwrite, the append
    fs.power_on()
    assert (mnt / "synced").read_bytes() == b"durable"
    assert (mnt / "unsynced").read_bytes() == b""
    assert not (mnt / "later").exists()
    assert sorted(os.listdir(mnt)) == ["synced", "unsynced"]


def test_fsync_keeps_writes_and_directory_fsync_keeps_names(fs: PowerCutFS) -> None:
    mnt = fs.mountpoint
    write(mnt / "a", b"one", sync=True)
    fsync_dir(mnt)
    write(mnt / "a.tmp", b"two", sync=True)
    os.replace(mnt / "a.tmp", mnt / "a")  # the sidecar's way: a rename, not yet durable
    write(mnt / "b", b"gone?", sync=True)
    fs.cut()
    fs.power_on()
    assert (mnt / "a").read_bytes() == b"one" and sorted(os.listdir(mnt)) == ["a"]
    write(mnt / "a.tmp", b"two", sync=True)
    os.replace(mnt / "a.tmp", mnt / "a")
    (mnt / "x").write_bytes(b"")
    fsync_dir(mnt)
    os.unlink(mnt / "x")  # an unlink not made durable comes back
    fs.cut()
    fs.power_on()
    assert (mnt / "a").read_bytes() == b"two" and sorted(os.listdir(mnt)) == ["a", "x"]


def test_cut_may_let_any_subset_of_volatile_writes_through(fs: PowerCutFS) -> None:
    mnt = fs.mountpoint
    write(mnt / "f", b"." * 8, sync=True)
    fsync_dir(mnt)
    with open(mnt / "f", "r+b") as f:
        for i in range(8):
            f.seek(i)
            f.write(b"#")
            f.flush()
    report = fs.cut(keep=0.5, seed=3)
    fs.power_on()
    content = (mnt / "f").read_bytes()
    assert report["kept"] + report["dropped"] == 8 and 0 < report["kept"] < 8
    assert content.count(b"#") == report["kept"] and len(content) == 8


def test_armed_cut_lands_on_the_nth_operation_and_fails_everything_after(fs: PowerCutFS) -> None:
    mnt = fs.mountpoint
    fs.arm(after=3)
    fd = os.open(mnt / "f", os.O_CREAT | os.O_WRONLY)  # 1: create
    os.write(fd, b"a")  # 2
    os.fsync(fd)  # 3
    with pytest.raises(OSError) as err:
        os.write(fd, b"b")  # the 4th: the power is gone
    assert err.value.errno == 5  # EIO
    os.close(fd)
    assert fs.wait_cut(5) is not None
    fs.power_on()
    assert not (mnt / "f").exists()  # its data was synced, its name never was


# -- the outbox under 100 power cuts ---------------------------------------------------------------


class Ranges:
    """Disjoint sorted seq ranges: acked or announced by a gap, so allowed to be gone."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, first: int, last: int) -> None:
        i = bisect.bisect_left(self.ends, first - 1)
        j = bisect.bisect_right(self.starts, last + 1)
        if i < j:
            first, last = min(first, self.starts[i]), max(last, self.ends[j - 1])
        self.starts[i:j], self.ends[i:j] = [first], [last]

    def __contains__(self, seq: int) -> bool:
        i = bisect.bisect_right(self.starts, seq) - 1
        return i >= 0 and self.ends[i] >= seq


@dataclass
class Ledger:
    """What the writers said and what each reopening found; counts every breach of the guarantee."""

    epoch: str
    known: dict[int, str] = field(default_factory=dict)  # seq -> "RUN.i", "gap:a-b", "burnt", "probe"
    alive: set[int] = field(default_factory=set)  # committed seqs that must still be in the outbox
    explained: Ranges = field(default_factory=Ranges)  # acked or covered by a gap
    hi: int = 0  # every seq ever assigned is at most this
    failures: dict[str, list[str]] = field(default_factory=dict)
    committed: int = 0

    def fail(self, kind: str, what: str) -> None:
        self.failures.setdefault(kind, []).append(what)

    def assign(self, seq: int, identity: str) -> None:
        if self.known.get(seq, identity) != identity:
            self.fail("reused", f"seq {seq}: {self.known[seq]} then {identity}")
        self.known[seq] = identity
        if identity != "burnt":
            self.alive.add(seq)
            self.committed += 1

    def gap(self, seq: int, first: int, last: int) -> None:
        self.assign(seq, f"gap:{first}-{last}")
        self.explained.add(first, last)

    def report(self, run: int, line: dict[str, Any]) -> None:
        """One line of a writer's report (see :mod:`tests.agent.outbox_writer`)."""
        if "open" in line:
            if line["open"] != self.epoch:
                self.fail("epoch", f"run {run} opened epoch {line['open']}")
        elif "ack" in line:
            self.explained.add(*line["ack"])
        elif "c" in line:
            first, last = line["c"]
            events = range(first, last + 1) if first else range(0)
            burnt = range(line["hi"] - line["rej"] + 1, line["hi"] + 1)
            new = [*events, *(g[0] for g in line["gaps"]), *burnt]
            if new and min(new) <= self.hi:
                self.fail("reused", f"run {run}: commit assigned seq {min(new)} <= {self.hi}")
            for k, seq in enumerate(events):
                self.assign(seq, f"{line.get('name', run)}.{line['i0'] + k}")
            for seq, gfirst, glast in line["gaps"]:
                self.gap(seq, gfirst, glast)
            for seq in burnt:
                self.assign(seq, "burnt")
            self.hi = max(self.hi, line["hi"])

    def judge(self, cut: int, box: Outbox) -> None:
        """The reopened outbox against everything said so far."""
        present: dict[int, str] = {}
        for row in box.read(1, 10**9):
            event = decode(row.payload)
            if event.epoch != self.epoch:
                self.fail("epoch", f"cut {cut}: seq {row.seq} has epoch {event.epoch}")
            if event.type == GAP_TYPE:
                present[row.seq] = f"gap:{event.data['first']}-{event.data['last']}"
                self.explained.add(event.data["first"], event.data["last"])
            else:
                present[row.seq] = str(event.data["n"]["v"])
        for seq, identity in present.items():
            if seq not in self.known:  # committed, not yet reported when the power went
                self.assign(seq, identity)
            elif self.known[seq] != identity:
                self.fail("reused", f"cut {cut}: seq {seq} holds {identity}, was {self.known[seq]}")
        self.hi = max(self.hi, box.last_seq)
        for seq in sorted(self.alive - present.keys()):
            self.alive.discard(seq)
            if seq not in self.explained:
                self.fail("lost", f"cut {cut}: seq {seq} ({self.known[seq]}) committed, gone, never acked")


def writer_config(rng: random.Random) -> dict[str, Any]:
    """Mostly an unbounded outbox; sometimes a tiny bound, so that evictions or refusals happen."""
    return {
        "policy": rng.choice(["drop_oldest", "drop_oldest", "reject_new"]),
        "max_rows": rng.choice([5_000_000, 5_000_000, 30, 120]),
        "seq_block": rng.choice([1, 7, 100, 100_000]),  # 1: the sidecar is rewritten at every commit
        "min_free_bytes": 0,
    }


def test_outbox_survives_100_power_cuts(fs: PowerCutFS, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    path = fs.mountpoint / "outbox.db"
    report = tmp_path / "report.jsonl"  # outside the file system that loses power
    stderr = tmp_path / "writers.err"
    with Outbox(path, DEV) as box:
        ledger = Ledger(box.epoch)
    fs.sync()  # the outbox was created on a device that shut down cleanly
    offset = 0
    landed: Counter[str] = Counter()  # which operation each cut failed: "fsync /outbox.db-wal"...
    commits: list[int] = []  # commits each writer saw return before the power went
    integrity_failures = quarantined = 0
    started = time.monotonic()
    for cut in range(CUTS):
        config = writer_config(rng)
        keep, seed = rng.choice([0.0, 0.0, 0.5]), rng.getrandbits(32)
        if rng.random() < 0.2:  # inside the sidecar's write: tmp file, fsync, rename, fsync of the folder
            config["seq_block"] = rng.choice([1, 7])
            fs.arm(after=rng.randint(0, 40), keep=keep, seed=seed, only=r"\.seq|fsyncdir")
        else:
            fs.arm(after=rng.randint(0, 3000), keep=keep, seed=seed)
        with open(stderr, "ab") as err:
            writer = subprocess.Popen(
                [sys.executable, "-m", "tests.agent.outbox_writer", str(path), str(report), str(cut),
                 str(rng.getrandbits(32)), json.dumps(config)],
                cwd=ROOT, stderr=err,
            )
        try:
            happened = fs.wait_cut(60, alive=lambda w=writer: w.poll() is None)  # type: ignore[misc]
        finally:
            writer.kill()
            writer.wait(30)
        assert happened is not None, f"cut {cut}: the writer died before the power did; see {stderr}"
        landed[happened["at"]] += 1
        fs.power_on()

        with open(report, "rb") as f:
            f.seek(offset)
            lines = f.read().splitlines()
            offset = f.tell()
        facts = [json.loads(line) for line in lines]
        commits.append(sum("c" in fact for fact in facts))
        for fact in facts:
            ledger.report(cut, fact)
        with Outbox(path, DEV, OutboxConfig(min_free_bytes=0)) as box:
            if box.stats.quarantined or list(fs.mountpoint.glob("outbox.db.corrupt-*")):
                quarantined += 1
                ledger.fail("quarantined", f"cut {cut}")
            db = sqlite3.connect(path)
            try:
                check = db.execute("PRAGMA integrity_check").fetchall()
            finally:
                db.close()
            if check != [("ok",)]:
                integrity_failures += 1
                ledger.fail("integrity", f"cut {cut}: {check[:3]}")
            marks = read_marks(box.sidecar, DEV)
            if box.epoch != ledger.epoch or marks is None or marks.epoch != ledger.epoch:
                ledger.fail("epoch", f"cut {cut}: outbox {box.epoch}, sidecar {marks}")
            ledger.judge(cut, box)
            # the next seq is above every seq ever assigned, whatever the cut took
            probe = box.commit([new_reading(DEV, 1, {"n": {"v": f"probe.{cut}"}})])
            gaps = [[g.seq, g.data["first"], g.data["last"]] for g in probe.gaps]
            ledger.report(cut, {"c": [probe.first_seq, probe.last_seq], "name": "probe", "i0": cut,
                                "gaps": gaps, "rej": 0, "hi": box.last_seq})
    wall = time.monotonic() - started
    figures = {
        "seed": SEED, "cuts": CUTS, "integrity_failures": integrity_failures, "quarantined": quarantined,
        "lost": len(ledger.failures.get("lost", [])), "reused": len(ledger.failures.get("reused", [])),
        "epoch_changes": len(ledger.failures.get("epoch", [])), "committed_seqs": ledger.committed,
        "last_seq": ledger.hi, "commits_per_cut_median": sorted(commits)[len(commits) // 2],
        "cuts_without_commit": commits.count(0), "wall_s": round(wall, 1),
        "cut_at": dict(landed.most_common()),
    }
    (tmp_path / "figures.json").write_text(json.dumps(figures))
    print(f"\npower-cut figures: {json.dumps(figures)}")
    assert not ledger.failures, f"{figures}\n" + "\n".join(
        f"{kind}: {len(whats)}, first: {whats[:5]}" for kind, whats in ledger.failures.items()
    )
