"""``edgebridge replay`` interrupted half-way: SIGKILL mid-run, then SIGTERM mid-run, then to the end.

The replay runs as its own process on real Kafka, with transactions of at most 50 records so that the
replay takes many of them. Each interruption is proven: the replay's progress (its group's committed
offsets, which commit with its transactions) says part is done and part is not; after the kill a
separate read_committed reader finds the target topic holding committed records and fewer than all;
the exit status is -9 (SIGKILL) or 0 with ``stopped:`` (SIGTERM). Between the kill and the next run, a
process of the replay's transactional id sends offsets to a transaction and dies before committing it
(the window a SIGKILL hits only sometimes), which leaves the group's offsets pending: the next run must
still resume at once (it used to time out reading them). Then the last run resumes from the
committed offsets and the target holds each (device, epoch, seq) exactly once, and the live topics hold
what they held before.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from edgebridge.envelope import new_reading
from edgebridge.topics import KafkaTopics
from enricher.replay import replay_config
from tests.conftest import BrokerAddresses
from tests.enricher.conftest import enricher_config, produce, read_all, values, write_toml
from tests.enricher.replay_process import Replay

pytestmark = pytest.mark.brokers

DEVICES, SEQS, EPOCH = 20, 400, "5e1f00d2c3b4a697"
ZOMBIE = {"zombie": True}
# a replay process that dies with its transaction open and its offsets sent: its record (dev-0, seq 1,
# a duplicate) and its offsets (the group's committed ones) must never become visible
DIE_MID_COMMIT = """
import os, sys
from confluent_kafka import Consumer, Producer, TopicPartition
bs, txn, group, raw, to, value = sys.argv[1:]
consumer = Consumer({"bootstrap.servers": bs, "group.id": group, "isolation.level": "read_committed"})
producer = Producer({"bootstrap.servers": bs, "transactional.id": txn, "transaction.timeout.ms": 60000})
producer.init_transactions(60)  # first: aborts what the killed run left open, its offsets with it
parts = sorted(consumer.list_topics(raw, timeout=15).topics[raw].partitions)
offsets = consumer.committed([TopicPartition(raw, p) for p in parts], timeout=15)
producer.begin_transaction()
producer.produce(to, value.encode(), b"dev-0")
producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 60)
producer.flush(30)
os.kill(os.getpid(), 9)
"""


def _die_mid_commit(bs: str, txn: str, group: str, raw: str, to: str) -> None:
    value = orjson.dumps({"deviceid": "dev-0", "epoch": EPOCH, "seq": 1, "data": ZOMBIE}).decode()
    died = subprocess.run([sys.executable, "-c", DIE_MID_COMMIT, bs, txn, group, raw, to, value],
                          capture_output=True, text=True, timeout=120)
    assert died.returncode == -signal.SIGKILL, died.stderr


def _committed(bs: str, group: str, topic: str, timeout: float) -> list[TopicPartition]:
    consumer = Consumer({"bootstrap.servers": bs, "group.id": group, "isolation.level": "read_committed"})
    try:
        parts = sorted(consumer.list_topics(topic, timeout=15).topics[topic].partitions)
        return consumer.committed([TopicPartition(topic, p) for p in parts], timeout=timeout)
    finally:
        consumer.close()


def test_a_replay_killed_then_stopped_mid_run_resumes_and_writes_each_event_once(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str],
    tmp_path: Path,
) -> None:
    topics = make_topics(2)
    bs = brokers.kafka_bootstrap
    produce(bs, topics.devices, [(f"dev-{d}", b'{"site": "plant-a"}') for d in range(DEVICES)])
    events = [(f"dev-{d}", new_reading(f"dev-{d}", s, {"temperature": {"v": 20.5, "u": "Cel"}},
                                       time="2026-12-05T10:00:00.000Z", epoch=EPOCH))
              for s in range(1, SEQS + 1) for d in range(DEVICES)]
    resends = events[::7]  # lost PUBACKs: the raw topic holds these twice, the replay must not
    produce(bs, topics.raw, events + resends)  # type: ignore[arg-type]
    total_raw = len(events) + len(resends)
    # the live topics' contents before: the replay must leave every one of them as it is
    produce(bs, topics.processed, [("dev-0", b"live record, not the replay's")])
    live = {t: sorted((m.partition(), m.offset(), m.value()) for m in read_all(bs, t))
            for t in (topics.processed, topics.alerts, topics.deadletter, topics.enricher_state)}

    # the default transaction timeout of a deployment (a minute), not the tests' short one: a killed
    # replay leaves its transaction open until the next run fences it, or until this timeout
    config = enricher_config(brokers, topics, consumer_group(), **{
        "commit.max_messages": 50, "commit.interval_ms": 100, "commit.transaction_timeout_ms": 60000})
    to = f"{topics.processed}.v2"
    cmd = [sys.executable, "-m", "edgebridge", "replay", "--to", to, "--every", "0.2",
           "--config", str(write_toml(tmp_path / "enricher.toml", config))]
    runs: list[Replay] = []
    try:
        # 1. SIGKILL once some transactions are committed and most of the raw topic is not processed
        runs.append(first := Replay(cmd, tmp_path / "replay-1.log"))
        done1, total = first.wait_progress(lambda done, total: 200 <= done < total // 2, timeout=180)
        first.proc.send_signal(signal.SIGKILL)
        assert first.finish(30) == -signal.SIGKILL, first.text()
        assert total == total_raw, first.text()
        committed = read_all(bs, to, timeout=30)
        assert 0 < len(committed) < len(events), (len(committed), first.text())
        # a kill between sending the offsets to the transaction and committing it, made certain: a
        # process of the replay's transactional id sends the offsets and a duplicate, then dies
        replay = replay_config(config, to, to)
        _die_mid_commit(bs, replay.transactional_id, replay.group_id, topics.raw, to)
        with pytest.raises(KafkaException, match="Timed out"):  # the offsets are pending: not stable
            _committed(bs, replay.group_id, topics.raw, timeout=3)

        # 2. resume, then SIGTERM before the end: a clean stop after a last commit, exit 0
        runs.append(second := Replay(cmd, tmp_path / "replay-2.log"))
        _, left = second.wait_progress(lambda done, left: 0 < done < left, timeout=180)
        second.proc.send_signal(signal.SIGTERM)
        assert second.finish(120) == 0, second.text()
        assert f"resuming {topics.raw} -> {to}: " in second.text(), second.text()
        assert second.text().rstrip().splitlines()[-1].startswith("stopped:"), second.text()
        assert left < total_raw - done1 + 50, second.text()  # resumed from the first run's commits
        stopped_at = read_all(bs, to, timeout=30)
        assert len(committed) < len(stopped_at) < len(events), (len(stopped_at), second.text())

        # 3. resume to the end
        runs.append(third := Replay(cmd, tmp_path / "replay-3.log"))
        assert third.finish(240) == 0, third.text()
        assert third.text().rstrip().splitlines()[-1].startswith("done:"), third.text()
    finally:
        for run in runs:
            run.kill()

    replayed = values(read_all(bs, to, len(events), timeout=60))
    counts = Counter((e["deviceid"], e.get("epoch"), e["seq"]) for e in replayed)
    assert counts == Counter((f"dev-{d}", EPOCH, s) for d in range(DEVICES) for s in range(1, SEQS + 1))
    assert not any(e.get("data") == ZOMBIE for e in replayed)
    for topic, before in live.items():
        assert sorted((m.partition(), m.offset(), m.value()) for m in read_all(bs, topic)) == before, topic
