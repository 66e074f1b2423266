"""A full disk, for real: the outbox on a small tmpfs (``mount -t tmpfs -o size=...``, so as root), filled
by its own writes and by a filler file.

With the free-disk guard (``min_free_bytes``) the outbox acts as full before the disk is: ``drop_oldest``
evicts and announces, ``reject_new`` refuses and announces. Without it SQLite meets ENOSPC itself: the
commit raises :class:`OutboxError` and keeps nothing, what was committed stays, and the outbox goes on
once there is room. The agent loop neither crashes nor stops draining through any of it.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import OutboxConfig
from edge_agent.outbox import CommitResult, Outbox, OutboxError
from edgebridge.devbrokers import LocalBrokers
from edgebridge.envelope import GAP_TYPE, Event, decode, new_reading
from tests.agent.conftest import Subscriber, agent_config, agent_running
from tests.conftest import IN_CI
from tests.waiting import wait_for

DEV = "dev-1"
MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``small_disk(bytes)``: a folder on a tmpfs of that size of this test's own."""
    mounted: list[Path] = []

    def make(size: int) -> Path:
        where = tmp_path / f"disk-{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            why = f"cannot mount a tmpfs (root needed): {done.stderr.strip()}"
            if IN_CI:
                pytest.fail(why, pytrace=False)
            pytest.skip(why)
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def free(where: Path) -> int:
    st = os.statvfs(where)
    return st.f_bavail * st.f_frsize


def fill(where: Path, leave: int = 0) -> Path:
    """A filler file that leaves about ``leave`` bytes free (0: until ENOSPC)."""
    filler = where / "filler"
    chunk = b"\0" * 65536
    with open(filler, "ab") as f:
        try:
            while free(where) > leave:
                f.write(chunk[: max(4096, min(len(chunk), free(where) - leave))])
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def readings(n: int, size: int = 1000) -> list[Event]:
    return [new_reading(DEV, 1, {"s": {"v": "x" * size}}) for _ in range(n)]


def rows(box: Outbox) -> dict[int, Event]:
    return {r.seq: decode(r.payload) for r in box.read(1, 10**9)}


def integrity(path: Path) -> list[Any]:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchall()
    finally:
        db.close()


class Committed:
    """What the commits returned: which seqs hold readings, which gap events announced what."""

    def __init__(self) -> None:
        self.seqs: set[int] = set()
        self.announced: set[int] = set()
        self.reasons: set[str] = set()
        self.last = 0

    def add(self, result: CommitResult) -> None:
        if result.first_seq:
            assert result.first_seq > self.last, "a seq reused"
            self.seqs |= set(range(result.first_seq, result.last_seq + 1))
        for gap in result.gaps:
            self.seqs.add(gap.seq)
            self.announced |= set(range(gap.data["first"], gap.data["last"] + 1))
            self.reasons.add(gap.data["reason"])
        self.last = max([self.last, result.last_seq, *(g.seq for g in result.gaps)])

    def check(self, box: Outbox) -> None:
        """Every committed seq is still in the outbox, or was announced by a gap event."""
        present = rows(box)
        for event in present.values():
            if event.type == GAP_TYPE:
                self.announced |= set(range(event.data["first"], event.data["last"] + 1))
        lost = self.seqs - present.keys() - self.announced
        assert not lost, f"{len(lost)} committed seqs gone unannounced, first {sorted(lost)[:10]}"
        assert not present.keys() & self.announced, "a seq both kept and announced lost"


# -- the outbox alone -------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["drop_oldest", "reject_new"])
def test_free_disk_guard_acts_before_the_disk_is_full(small_disk: Callable[[int], Path], policy: str) -> None:
    disk = small_disk(16 * MiB)
    fill(disk, leave=10 * MiB)
    config = OutboxConfig(min_free_bytes=6 * MiB, policy=policy)  # type: ignore[arg-type]
    done = Committed()
    with Outbox(disk / "outbox.db", DEV, config) as box:
        for _ in range(300):  # 6 MB of readings into ~4 MB above the reserve
            done.add(box.commit(readings(20)))
        assert box.stats.commit_failures == 0 and free(disk) > 0
        if policy == "drop_oldest":
            assert box.stats.evicted > 0 and done.reasons == {"evicted"}
        else:
            assert box.stats.rejected > 0 and done.reasons <= {"rejected"}
            # room comes back with the acks: the refused seqs are announced, new events accepted
            head = box.head()
            assert head is not None
            result = box.commit(readings(5), acked=[(head, box.last_seq)])
            done.add(result)
            assert [g.data["reason"] for g in result.gaps] == ["rejected"] and result.first_seq
            done.seqs -= set(range(head, result.gaps[0].seq))  # acked: gone by design
        done.check(box)
    assert integrity(disk / "outbox.db") == [("ok",)]


@pytest.mark.parametrize("first_to_fail", ["sqlite", "sidecar"])
def test_enospc_raises_outbox_error_keeps_everything_and_recovers(
    small_disk: Callable[[int], Path], first_to_fail: str
) -> None:
    disk = small_disk(8 * MiB)
    path = disk / "outbox.db"
    # seq_block=1: every commit rewrites the seq sidecar first, so on a disk with no byte left the
    # sidecar is what meets ENOSPC; with the default block SQLite does
    config = OutboxConfig(min_free_bytes=0, seq_block=1 if first_to_fail == "sidecar" else 100_000)
    done = Committed()
    with Outbox(path, DEV, config) as box:
        done.add(box.commit(readings(100)))
        filler = fill(disk, leave=0 if first_to_fail == "sidecar" else 2 * MiB)
        errors: list[OutboxError] = []
        for _ in range(200):
            try:
                done.add(box.commit(readings(50)))
            except OutboxError as exc:  # anything else fails the test
                errors.append(exc)
                if len(errors) == 3:
                    break
        assert errors, "the disk never filled up"
        cause = errors[0].__cause__
        if first_to_fail == "sidecar":
            assert isinstance(cause, OSError) and cause.errno == errno.ENOSPC
        else:
            assert isinstance(cause, sqlite3.Error) and "full" in str(cause)
        assert box.stats.commit_failures == len(errors)
        # nothing of a failed commit is kept, in the file or in memory
        assert box.stats.rows == len(rows(box)) and box.last_seq == done.last
        done.check(box)
    # a restart on the still-full disk opens (no crash loop), and cannot commit yet
    with Outbox(path, DEV, config) as box:
        with pytest.raises(OutboxError):
            box.commit(readings(50))
        filler.unlink()
        result = box.commit(readings(50))
        assert result.first_seq > done.last
        done.add(result)
        done.check(box)
    assert integrity(path) == [("ok",)]


# -- the agent loop ---------------------------------------------------------------------------------


def _received(sub: Subscriber) -> tuple[dict[int, dict[str, Any]], set[int]]:
    events = {e["seq"]: e for e in sub.events()}
    announced = {s for e in events.values() if e["type"] == GAP_TYPE
                 for s in range(e["data"]["first"], e["data"]["last"] + 1)}
    return events, announced


@pytest.mark.brokers
@pytest.mark.parametrize("case", ["drop_oldest", "reject_new", "no_guard"])
def test_agent_on_a_full_disk_keeps_running_and_draining(
    small_disk: Callable[[int], Path],
    private_brokers: Callable[..., LocalBrokers],
    mqtt_prefix: str,
    subscriber: Callable[..., Subscriber],
    case: str,
) -> None:
    """The disk fills up under a running agent. With the guard, while the broker is away (a backlog
    grows): the policy acts, and is announced once the broker is back. Without the guard, with the
    broker draining: commits fail and are retried. Either way the agent stays up, publishes what it has
    committed, and goes on when the disk has room again; every seq is delivered or announced."""
    disk = small_disk(16 * MiB)
    mosquitto = private_brokers("mosquitto").mosquitto
    sub = subscriber(f"{mqtt_prefix}/{DEV}/events", url=mosquitto.url, persistent=True)
    config = agent_config(disk, mosquitto.url, mqtt_prefix, DEV, **{
        "simulated.enabled": True, "simulated.interval": 0.001, "outbox.commit_every_ms": 50,
        "outbox.policy": "drop_oldest" if case == "no_guard" else case,
        "outbox.min_free_bytes": 0 if case == "no_guard" else 6 * MiB,
    })
    with agent_running(config) as agent:
        stats = lambda: agent.outbox.stats  # noqa: E731  (a failed commit puts back a copy of the counters)
        wait_for(lambda: len(sub.events()) >= 200, 30, "events before the disk fills")
        if case == "no_guard":
            filler = fill(disk, leave=0)
            wait_for(lambda: stats().commit_failures >= 1, 30, "a commit failing on ENOSPC")
        else:
            mosquitto.stop()
            filler = fill(disk, leave=8 * MiB)  # 2 MiB above the reserve: the backlog soon hits it
            wait_for(lambda: stats().evicted > 0 or stats().rejected > 0, 60, "the policy acting")
            mosquitto.start()
        # draining: everything committed so far reaches the broker, or is announced
        committed = stats().last_seq
        wait_for(lambda: set(range(1, committed + 1)) <= covered(sub), 60,
                 f"seqs up to {committed} delivered or announced with the disk full")
        filler.unlink()
        before = stats().last_seq
        wait_for(lambda: any(e["seq"] > before and e["type"] != GAP_TYPE for e in sub.events()), 30,
                 "new readings once the disk has room")
        last = stats().last_seq
        wait_for(lambda: set(range(1, last + 1)) <= covered(sub), 60,
                 f"every seq up to {last} delivered or announced")
    events = {e["seq"]: e for e in sub.events()}
    reasons = {e["data"]["reason"] for e in events.values() if e["type"] == GAP_TYPE}
    if case == "no_guard":
        assert stats().commit_failures >= 1 and reasons <= {"evicted"}
    else:
        assert stats().commit_failures == 0
        assert reasons == {"drop_oldest": {"evicted"}, "reject_new": {"rejected"}}[case]


def covered(sub: Subscriber) -> set[int]:
    """The seqs received, and those announced lost by the gap events received."""
    events = {e["seq"]: e for e in sub.events()}
    return set(events) | {s for e in events.values() if e["type"] == GAP_TYPE
                          for s in range(e["data"]["first"], e["data"]["last"] + 1)}
