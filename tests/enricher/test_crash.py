"""kill -9 of the enricher mid-transaction, and a second instance taking over: still exactly once.

The evidence, beyond "each (device, seq) once":

- progress on every partition: each run commits on every raw partition before it is killed, so no
  partition can stall across restarts unnoticed;
- a kill landed mid-transaction: each kill waits until the broker holds outputs of an open transaction,
  and half a second after it the transaction is still open (then aborted by the next start: read
  uncommitted, ``iot.events.processed`` holds records that read committed never shows);
- the dedup state was restored from ``iot.enricher.state``, not rebuilt from the raw topic: every start
  resumes at the committed offsets, restores exactly the devices that have records below them, consumes
  exactly the records after them, and drops as duplicates exactly the tail records whose first copy was
  committed by an earlier run (which only restored state can know).
"""

from __future__ import annotations

import itertools
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from edgebridge.envelope import encode, new_reading
from edgebridge.topics import KafkaTopics
from enricher.sweep import SWEEP_KEY
from tests.conftest import BrokerAddresses
from tests.enricher.conftest import enricher_config, read_all, values, write_toml
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers

RESTORED = re.compile(r'msg="partitions assigned, dedup state restored" partitions=(\S+) offsets=(\S+) '
                      r"devices=(\d+)")
EVENT = re.compile(r'msg="partitions (assigned, dedup state restored|revoked|lost)" partitions=(\S+)')
COORDINATOR_MOVING = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                      KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._TIMED_OUT)
STOPPED = re.compile(r'msg="processor stopped" (.*)')


class Trickle:
    """Raw readings of ``devices`` produced at a steady pace on a thread until stopped, with duplicates
    (20 %, of this chunk and the previous one) and reordering inside a chunk: records keep flowing
    while an enricher is killed, so the kill lands mid-stream. The pause paces, it never synchronises."""

    def __init__(self, bootstrap: str, topic: str, devices: int, seed: int, seqs_per_chunk: int = 2,
                 pause: float = 0.02) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                  "linger.ms": 5})
        self.topic, self.devices, self.rng = topic, [f"dev-{d}" for d in range(devices)], random.Random(seed)
        self.seqs_per_chunk, self.pause = seqs_per_chunk, pause
        self.next_seq = 1
        self.produced = 0
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        previous: list[tuple[str, bytes]] = []
        try:
            while not self.stopping.is_set():
                seqs = range(self.next_seq, self.next_seq + self.seqs_per_chunk)
                chunk = [(d, encode(new_reading(d, s, {"t": {"v": s % 50, "u": "Cel"}})))
                         for s in seqs for d in self.devices]
                batch = chunk + self.rng.sample(previous + chunk, len(chunk) // 5)
                self.rng.shuffle(batch)
                for key, value in batch:
                    while True:
                        try:
                            self.producer.produce(self.topic, value, key.encode())
                            break
                        except BufferError:
                            self.producer.poll(0.05)
                self.producer.poll(0)
                previous = chunk
                self.next_seq += self.seqs_per_chunk
                self.produced += len(batch)
                self.stopping.wait(self.pause)
            assert self.producer.flush(30) == 0
        except BaseException as exc:
            self.error = exc

    @contextmanager
    def running(self) -> Iterator[Trickle]:
        self.thread.start()
        try:
            yield self
        finally:
            self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(60)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


@contextmanager
def group_offsets(bootstrap: str, group: str, topic: str,
                  partitions: int) -> Iterator[Callable[[], list[int]]]:
    """The group's committed offsets of ``topic`` (-1 for none). read_uncommitted: the offsets of a
    transaction still open (of a killed instance) are not waited for; they are not committed yet."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "isolation.level": "read_uncommitted"})  # never subscribes: not a group member
    parts = [TopicPartition(topic, p) for p in range(partitions)]

    def offsets() -> list[int]:
        # a new group's coordinator may move or still be loading: retriable errors, within a deadline
        deadline = time.monotonic() + 30
        while True:
            try:
                return [max(-1, tp.offset) for tp in consumer.committed(parts, timeout=30)]
            except KafkaException as exc:
                error = exc.args[0]
                moving = error.retriable() or error.code() in COORDINATOR_MOVING
                if not moving or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    try:
        yield offsets
    finally:
        consumer.close()


@contextmanager
def open_transaction_probe(bootstrap: str, topic: str, partitions: int) -> Iterator[Callable[[], bool]]:
    """A probe that says whether ``topic`` holds a transaction still open on the broker: on some
    partition the high watermark (read_uncommitted) is above the last stable offset (what a
    read_committed consumer's ListOffsets answers). Cheap enough to poll every few milliseconds."""
    clients = {iso: Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{iso}",
                              "isolation.level": iso}) for iso in ("read_committed", "read_uncommitted")}

    def high(iso: str, p: int) -> int:
        return int(clients[iso].get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=False)[1])

    try:
        yield lambda: any(high("read_uncommitted", p) > high("read_committed", p) for p in range(partitions))
    finally:
        for client in clients.values():
            client.close()


def open_outputs(bootstrap: str, topic: str) -> int:
    """Outputs the broker has that read_committed does not: in open or aborted transactions (the
    empty records of each start's sweep, aborted by design, not counted)."""
    def outputs(isolation: str) -> int:
        records = read_all(bootstrap, topic, timeout=10, isolation=isolation)
        return sum(1 for m in records if m.key() != SWEEP_KEY)

    return outputs("read_uncommitted") - outputs("read_committed")


def _owned(log: Path) -> set[str]:
    """The partitions an instance owns now, replayed from its log."""
    owned: set[str] = set()
    for m in EVENT.finditer(log.read_text()):
        parts = set(m[2].split(","))
        owned = owned | parts if m[1].startswith("assigned") else owned - parts
    return owned


def _assignments(log: Path) -> list[tuple[dict[int, int], int]]:
    """Each assignment of a run: ({partition: start offset (0 if none committed)}, devices restored)."""
    out = []
    for m in RESTORED.finditer(log.read_text()):
        starts = {int(p): max(0, int(o)) for p, o in (x.split(":") for x in m[2].split(","))}
        out.append((starts, int(m[3])))
    return out


def _totals(log: Path) -> dict[str, int]:
    m = STOPPED.search(log.read_text())
    assert m, log.read_text()[-3000:]
    return {k: int(v) for k, v in (pair.split("=") for pair in m[1].split())}


class Raw:
    """The raw topic as it ended up: per partition, the (device, seq) at each offset."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.parts: dict[int, list[tuple[str, int]]] = {}
        for msg in sorted(read_all(bootstrap, topic), key=lambda m: (m.partition(), m.offset())):
            event = orjson.loads(msg.value())
            assert msg.offset() == len(self.parts.setdefault(msg.partition(), []))  # no gaps, no markers
            self.parts[msg.partition()].append((event["deviceid"], event["seq"]))

    def distinct(self) -> set[tuple[str, int]]:
        return {k for recs in self.parts.values() for k in recs}

    def devices_below(self, starts: dict[int, int]) -> int:
        """Devices with a record below the start offsets: the ones whose state a restore must find."""
        return len({d for p, o in starts.items() for d, _ in self.parts.get(p, [])[:o]})

    def distinct_below(self, starts: dict[int, int]) -> set[tuple[str, int]]:
        return {k for p, o in starts.items() for k in self.parts.get(p, [])[:o]}

    def after(self, starts: dict[int, int]) -> int:
        return sum(len(self.parts.get(p, [])) - o for p, o in starts.items())

    def duplicates_after(self, starts: dict[int, int]) -> int:
        """Records at or after the start offsets whose (device, seq) came before (below or earlier)."""
        dups = 0
        for p, o in starts.items():
            seen = set(self.parts.get(p, [])[:o])
            for key in self.parts.get(p, [])[o:]:
                dups += key in seen
                seen.add(key)
        return dups


def test_kill_9_repeatedly_mid_stream_still_exactly_once_and_state_restored(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str],
    spawn_enricher: Callable[..., subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    topics = make_topics(2)
    bs = brokers.kafka_bootstrap
    group = consumer_group()
    # transactions of 300 ms: the outputs reach the broker after the producer's 50 ms linger, so for
    # most of each transaction the broker holds records of it that a kill leaves open
    config = write_toml(tmp_path / "enricher.toml", enricher_config(
        brokers, topics, group, **{"commit.interval_ms": 300, "commit.max_messages": 100000}))
    min_rounds, max_rounds = 4, 8
    mid_transaction = 0
    rounds = 0
    with group_offsets(bs, group, topics.raw, 2) as committed, \
            open_transaction_probe(bs, topics.processed, 2) as open_transaction, \
            Trickle(bs, topics.raw, devices=8, seed=11).running() as trickle:
        while rounds < min_rounds or (mid_transaction == 0 and rounds < max_rounds):
            before = committed()
            proc = spawn_enricher(config, f"round{rounds}")
            # every partition commits progress in every run (a partition stuck for rounds is a bug)
            wait_for(lambda: all(a > b for a, b in zip(committed(), before, strict=True)),  # noqa: B023
                     60, f"progress on every partition in round {rounds}")
            wait_for(open_transaction, 10, f"a transaction with outputs on the broker in round {rounds}",
                     every=0.005)
            proc.send_signal(signal.SIGKILL)  # records are still flowing: the trickle never paused
            assert proc.wait(30) == -signal.SIGKILL
            rounds += 1
            # still open once a commit caught in flight has had time to write its markers: the kill
            # left this transaction open (the next start aborts it; its timeout is 10 s)
            time.sleep(0.5)
            mid_transaction += open_transaction()
        trickle.stop()
        raw = Raw(bs, topics.raw)
        total = len(raw.distinct())
        final = spawn_enricher(config, "final")
        read_all(bs, topics.processed, total, timeout=120)
        final.send_signal(signal.SIGTERM)
        assert final.wait(60) == 0  # SIGTERM: commit, close, exit 0
        ends = committed()
    got = values(read_all(bs, topics.processed))
    keys = Counter((e["deviceid"], e["seq"]) for e in got)
    assert len(keys) == total and set(keys.values()) == {1}
    assert set(keys) == raw.distinct()
    assert ends == [len(raw.parts[0]), len(raw.parts[1])]
    assert mid_transaction >= 1
    assert open_outputs(bs, topics.processed) > 0  # what the kills left open was aborted, never shown
    # every start resumed where the previous run committed, with the state of exactly the devices below
    runs = [_assignments(tmp_path / f"round{r}-{r}.log") for r in range(rounds)]
    runs.append(_assignments(tmp_path / f"final-{rounds}.log"))
    starts = []
    for run in runs:
        assert len(run) == 1 and sorted(run[0][0]) == [0, 1], run  # one instance: both partitions at once
        (offsets, devices), = run
        assert devices == raw.devices_below(offsets), (offsets, devices)
        starts.append(offsets)
    for earlier, later in itertools.pairwise(starts):
        assert all(later[p] > earlier[p] for p in (0, 1)), starts  # progress on every partition
    # the final run consumed only what came after the committed offsets (nothing re-read from the
    # start), and dropped as duplicates exactly the records seen before, committed or not
    last = starts[-1]
    totals = _totals(tmp_path / f"final-{rounds}.log")
    assert totals["consumed"] - totals["consumed_aborted"] == raw.after(last), (totals, last)
    assert totals["duplicates"] == raw.duplicates_after(last), (totals, last)
    assert totals["processed"] == total - len(raw.distinct_below(last)), totals
    assert totals["restored_devices"] == 8


def test_two_instances_one_killed_the_other_takes_over_exactly_once(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str],
    spawn_enricher: Callable[..., subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    topics = make_topics(4)
    bs = brokers.kafka_bootstrap
    group = consumer_group()
    over: dict[str, Any] = {"commit.interval_ms": 50, "commit.max_messages": 200}
    conf_a = write_toml(tmp_path / "a.toml", enricher_config(brokers, topics, group, "a", **over))
    conf_b = write_toml(tmp_path / "b.toml", enricher_config(brokers, topics, group, "b", **over))
    log_a, log_b = tmp_path / "a-0.log", tmp_path / "b-1.log"
    every = {"0", "1", "2", "3"}
    with group_offsets(bs, group, topics.raw, 4) as committed, \
            Trickle(bs, topics.raw, devices=16, seed=5, seqs_per_chunk=1).running() as trickle:
        a = spawn_enricher(conf_a, "a")
        wait_for(lambda: _owned(log_a) == every, 60, "a owning every partition")
        wait_for(lambda: min(committed()) >= 0, 60, "a committing on every partition")
        b = spawn_enricher(conf_b, "b")
        # b gets its share from a (cooperative: a commits and revokes, b restores what a committed)
        wait_for(lambda: _owned(log_a) and _owned(log_b) and _owned(log_a) | _owned(log_b) == every, 60,
                 "both instances owning partitions")
        before_kill = _owned(log_b)
        snapshot = committed()
        wait_for(lambda: all(x > y for x, y in zip(committed(), snapshot, strict=True)), 60,
                 "progress on every partition with two instances")
        a.send_signal(signal.SIGKILL)
        assert a.wait(30) == -signal.SIGKILL
        # a's partitions come to b after a's session timeout; a's open transaction is aborted by the
        # transaction timeout before b can read stable offsets and state
        wait_for(lambda: _owned(log_b) == every, 60, "takeover")
        trickle.stop()
        raw = Raw(bs, topics.raw)
        total = len(raw.distinct())
        read_all(bs, topics.processed, total, timeout=120)
        b.send_signal(signal.SIGTERM)
        assert b.wait(60) == 0
    got = values(read_all(bs, topics.processed))
    keys = Counter((e["deviceid"], e["seq"]) for e in got)
    assert len(got) == total and len(keys) == total and set(keys) == raw.distinct()
    assert before_kill and before_kill != every
    # b never gave a partition back, so its consumption is exactly, per assignment, what came after the
    # offsets it started from; each restore found the devices with records below those offsets
    text = log_b.read_text().split('msg="processor stopped"')[0]  # the revoke of close() comes after
    assert "partitions revoked" not in text and "partitions lost" not in text, text[-3000:]
    assignments = _assignments(log_b)
    assert len(assignments) == 2, assignments  # its share from a, then a's after the kill
    for offsets, devices in assignments:
        assert devices == raw.devices_below(offsets), (offsets, devices)
    taken_over = assignments[1][0]
    assert sorted(taken_over) == sorted(int(p) for p in every - before_kill)
    assert all(o > 0 for o in taken_over.values()), taken_over  # resumed from a's commits
    totals = _totals(log_b)
    consumed = sum(raw.after(offsets) for offsets, _ in assignments)
    assert totals["consumed"] - totals["consumed_aborted"] == consumed, (totals, assignments)
    assert totals["restored_devices"] == sum(devices for _, devices in assignments)


def test_frozen_instance_wakes_after_takeover_and_commits_nothing(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str],
    spawn_enricher: Callable[..., subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    """A zombie: SIGSTOP freezes a with a transaction open (outputs already at the broker) past its session
    timeout; b takes its partitions over and commits; SIGCONT wakes a, whose transaction still carries the
    old group generation: it must abort (KIP-447 fencing: the coordinator refuses its offsets, or a learns
    it lost the partitions first), never commit, and the output stays exactly once."""
    topics = make_topics(2)
    bs = brokers.kafka_bootstrap
    group = consumer_group()
    # a commits every 2 s: its transaction is open nearly all the time. 20 s of transaction timeout
    # usually outlast the takeover, so what fences a is the group generation; on a slow machine (or if
    # a froze with its offsets sent, which b's committed() then waits out) the coordinator aborts it
    # first and a wakes fenced: exit 1, the supervisor's restart. Both are the contract.
    conf_a = write_toml(tmp_path / "a.toml", enricher_config(
        brokers, topics, group, "a", **{"commit.interval_ms": 2000, "commit.max_messages": 100000,
                                        "commit.transaction_timeout_ms": 20000}))
    conf_b = write_toml(tmp_path / "b.toml", enricher_config(
        brokers, topics, group, "b", **{"commit.interval_ms": 50, "commit.max_messages": 200}))
    log_a, log_b = tmp_path / "a-0.log", tmp_path / "b-1.log"
    every = {"0", "1"}

    with group_offsets(bs, group, topics.raw, 2) as committed, \
            Trickle(bs, topics.raw, devices=8, seed=3).running() as trickle:
        a = spawn_enricher(conf_a, "a")
        wait_for(lambda: _owned(log_a) == every and min(committed()) >= 0, 60, "a committing")
        # freeze a while its transaction has outputs at the broker; a is the only writer so far, so
        # records that read uncommitted sees and read committed does not are a's open transaction
        for _attempt in range(5):
            a.send_signal(signal.SIGSTOP)
            if open_outputs(bs, topics.processed) > 0:
                break
            a.send_signal(signal.SIGCONT)
            wait_for(lambda: open_outputs(bs, topics.processed) > 0, 30, "a transaction of a with outputs")
        else:
            raise AssertionError("a was never frozen with an open transaction")
        frozen_at = committed()
        try:
            # b joins; the frozen a misses its heartbeats and is removed after its session timeout
            b = spawn_enricher(conf_b, "b")
            wait_for(lambda: _owned(log_b) == every, 60, "b taking a's partitions over")
            wait_for(lambda: all(x > y for x, y in zip(committed(), frozen_at, strict=True)), 60,
                     "b committing on every partition")
        finally:
            a.send_signal(signal.SIGCONT)
        noticed = r"partitions lost|transaction aborted|fatal kafka error"
        wait_for(lambda: re.search(noticed, log_a.read_text()), 60, "a noticing it lost the partitions")
        trickle.stop()
        raw = Raw(bs, topics.raw)
        total = len(raw.distinct())
        read_all(bs, topics.processed, total, timeout=120)
        b.send_signal(signal.SIGTERM)
        a.send_signal(signal.SIGTERM)
        assert b.wait(60) == 0
        assert a.wait(60) in (0, 1), log_a.read_text()[-3000:]
    got = values(read_all(bs, topics.processed))
    keys = Counter((e["deviceid"], e["seq"]) for e in got)
    # had a's frozen transaction committed, the records b processed again would be here twice
    assert len(got) == total and len(keys) == total and set(keys) == raw.distinct()
    assert re.search(r"ILLEGAL_GENERATION|UNKNOWN_MEMBER_ID|FENCED_INSTANCE_ID|partitions lost|fenced",
                     log_a.read_text())
