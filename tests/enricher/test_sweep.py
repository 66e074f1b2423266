"""The start-up sweep (enricher/sweep.py) against a real Kafka holding a transaction left open without
its abort marker, the state a self-fenced single-node broker leaves when it rolls back a timed-out
transaction and cannot find the partition's leader (seen in the suite after a 30 s freeze).

The state is built exactly: a transaction of ours is aborted normally, then, with the broker killed,
the abort marker is cut off the partition's log (and the producer-state snapshots removed, so the
restarted broker rebuilds them from the log): the coordinator has completed the abort, the partition
still holds the records open. Two transactional ids get that state, on two topics: the one that
sweeps before its next transaction must not see the stale record committed; the one that does not
sweep is the control, and shows the duplicate the sweep prevents.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from edgebridge.devbrokers.local import LocalBrokers
from enricher.sweep import sweep
from tests.enricher.conftest import read_all
from tests.waiting import wait_for

CONTROL = 0x20  # record batch attribute: a control batch (a transaction marker)


def _batches(segment: Path) -> list[tuple[int, int, bool]]:
    """(file position, base offset, is a control batch) of each record batch of a log segment."""
    data = segment.read_bytes()
    out, pos = [], 0
    while pos + 12 <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        # attributes: after base offset, length, partition leader epoch, magic and crc
        (attributes,) = struct.unpack_from(">h", data, pos + 21)
        out.append((pos, base, bool(attributes & CONTROL)))
        pos += 12 + length
    return out


def _leave_open(bootstrap: str, topic: str, txid: str) -> None:
    """A transaction of ``txid`` writes b"stale" to partition 0 and is aborted by the next life's
    ``init_transactions`` (markers written, epoch bumped)."""
    first = Producer({"bootstrap.servers": bootstrap, "transactional.id": txid})
    first.init_transactions(30)
    first.begin_transaction()
    first.produce(topic, b"stale", b"k", 0)
    first.flush(30)
    second = Producer({"bootstrap.servers": bootstrap, "transactional.id": txid})
    second.init_transactions(30)  # aborts the first life's transaction: an abort marker on partition 0


def _committed_values(bootstrap: str, topic: str) -> list[bytes]:
    return [m.value() for m in read_all(bootstrap, topic, timeout=10)]


def _open_end(bootstrap: str, topic: str) -> tuple[int, int]:
    """(last stable offset, high watermark) of partition 0."""
    ends = []
    for isolation in ("read_committed", "read_uncommitted"):
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ends",
                             "isolation.level": isolation})
        ends.append(consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
        consumer.close()
    return ends[0], ends[1]


def test_the_sweep_aborts_a_transaction_the_broker_left_open_and_without_it_the_stale_record_commits(
    private_brokers: Callable[..., LocalBrokers]
) -> None:
    local = private_brokers("kafka")
    kafka = local.kafka
    bootstrap = kafka.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for topic in ("swept", "unswept", "raw"):
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    _leave_open(bootstrap, "swept", "txid-swept")
    _leave_open(bootstrap, "unswept", "txid-unswept")

    kafka.kill()
    for topic in ("swept", "unswept"):
        folder = kafka.data_dir / f"{topic}-0"
        segment = folder / "00000000000000000000.log"
        batches = _batches(segment)
        # the fault: stale data, then its abort marker, which we cut off
        assert [control for (_, _, control) in batches] == [False, True], batches
        with open(segment, "r+b") as f:
            f.truncate(batches[1][0])
        for stale in [*folder.glob("*.snapshot"), *folder.glob("*.index"), *folder.glob("*.timeindex"),
                      *folder.glob("*.txnindex")]:
            stale.unlink()
    kafka.start()

    # proven: each partition holds the stale record open (high watermark above the last stable offset)
    for topic in ("swept", "unswept"):
        wait_for(lambda t=topic: _open_end(bootstrap, t) == (0, 1), 60, f"{topic}: an open transaction")

    for topic, sweeping in (("swept", True), ("unswept", False)):
        producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"txid-{topic}"})
        producer.init_transactions(60)
        if sweeping:
            consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "sweeper",
                                 "isolation.level": "read_committed"})
            assert sweep(producer, consumer, {topic: 1}, "raw", 30) == 1
            consumer.close()
        producer.begin_transaction()
        producer.produce(topic, b"fresh", b"k", 0)
        producer.commit_transaction(30)

    assert _committed_values(bootstrap, "swept") == [b"fresh"]
    # the control: without the sweep the next commit marker commits the stale record with it
    assert _committed_values(bootstrap, "unswept") == [b"stale", b"fresh"]
    assert _open_end(bootstrap, "swept")[0] == _open_end(bootstrap, "swept")[1]
