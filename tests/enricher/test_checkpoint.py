"""The pipelined commit of :class:`enricher.checkpoint.Checkpoint`, against a scripted producer.

A unit tier (no broker): the order of the transactional calls, the records held while a commit runs,
and what a failed commit does with them. The same paths run against the real Kafka in
``test_crash.py`` (kill -9 mid-transaction, a fenced zombie whose commit fails); here each
interleaving is forced, not hoped for.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from enricher.checkpoint import AbortNeeded, Checkpoint, FatalKafkaError
from enricher.dedup import DedupTable
from enricher.metrics import EnricherMetrics


class ScriptedProducer:
    """Records every call; ``commit_transaction`` waits for ``release`` and may raise ``fail_with``."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.release = threading.Event()
        self.release.set()
        self.committing = threading.Event()
        self.fail_with: KafkaError | None = None
        self.fail_produce: KafkaError | None = None  # raised by the next produce
        self.in_transaction = False

    def begin_transaction(self) -> None:
        assert not self.in_transaction, "begin_transaction inside a transaction"
        self.in_transaction = True
        self.calls.append(("begin",))

    def produce(self, topic: str, value: bytes, key: bytes | None, partition: int = -1,
                headers: Any = None) -> None:
        assert self.in_transaction, f"produce of {value!r} outside a transaction"
        assert not self.committing.is_set(), f"produce of {value!r} while the commit runs"
        if self.fail_produce is not None:
            raise KafkaException(self.fail_produce)
        self.calls.append(("produce", topic, value))

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
        self.calls.append(("offsets", tuple((tp.partition, tp.offset) for tp in offsets)))

    def commit_transaction(self, timeout: float) -> None:
        self.committing.set()
        assert self.release.wait(10)
        self.committing.clear()
        if self.fail_with is not None:
            self.calls.append(("commit failed",))
            raise KafkaException(self.fail_with)
        self.in_transaction = False
        self.calls.append(("commit",))

    def abort_transaction(self, timeout: float) -> None:
        self.in_transaction = False
        self.calls.append(("abort",))

    def poll(self, timeout: float) -> int:
        return 0


class Consumer:
    def consumer_group_metadata(self) -> object:
        return object()


@pytest.fixture
def rig() -> Any:
    producer = ScriptedProducer()
    metrics = EnricherMetrics()
    cp = Checkpoint(producer, Consumer(), DedupTable(), "raw", "state", metrics,  # type: ignore[arg-type]
                    interval_ms=100, max_messages=1000)
    yield cp, producer, metrics
    producer.release.set()
    cp.close()


def _batch(cp: Checkpoint, partition: int, offsets: range, topic: str = "out") -> None:
    """What the processor does with one consumed batch: start, produce one output per record, count."""
    cp.start()
    for offset in offsets:
        cp.produce("processed", topic, f"{partition}:{offset}".encode(), b"k")
    cp.consumed({partition: offsets[-1] + 1}, len(offsets))


def _commit_running(cp: Checkpoint, producer: ScriptedProducer, partition: int, offsets: range) -> None:
    """A batch, then its commit handed off and held inside ``commit_transaction`` until released."""
    _batch(cp, partition, offsets)
    producer.release.clear()
    cp.commit(wait=False)
    assert producer.committing.wait(5)


def _sample(metrics: EnricherMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(f"edgebridge_enricher_{name}", labels) or 0.0


def test_records_of_a_running_commit_are_held_then_produced_into_the_next_transaction(rig: Any) -> None:
    cp, producer, metrics = rig
    _commit_running(cp, producer, 0, range(0, 3))
    _batch(cp, 0, range(3, 5))  # processed meanwhile: held, not produced
    assert [c[2] for c in producer.calls if c[0] == "produce"] == [b"0:0", b"0:1", b"0:2"]
    assert len(cp.held) == 2
    assert _sample(metrics, "consumed_total") == 0  # nothing counted before the commit returns
    cp.settle()  # still running: nothing happens
    assert len(cp.held) == 2
    producer.release.set()
    cp.settle(block=True)
    assert _sample(metrics, "consumed_total") == 3
    assert _sample(metrics, "produced_total", output="processed") == 3
    assert cp.held == [] and cp.open
    cp.commit()
    assert producer.calls == [
        ("begin",), ("produce", "out", b"0:0"), ("produce", "out", b"0:1"), ("produce", "out", b"0:2"),
        ("offsets", ((0, 3),)), ("commit",),
        ("begin",), ("produce", "out", b"0:3"), ("produce", "out", b"0:4"),
        ("offsets", ((0, 5),)), ("commit",),
    ]
    assert _sample(metrics, "consumed_total") == 5
    assert _sample(metrics, "commits_total") == 2


def test_send_waits_out_a_full_producer_queue_and_translates_a_produce_error(rig: Any) -> None:
    cp, producer, _ = rig
    full = [BufferError("queue full")] * 2
    produce = producer.produce

    def filling(*args: Any, **kwargs: Any) -> None:
        if full:
            raise full.pop()
        produce(*args, **kwargs)

    cp._produce = filling
    cp.start()
    cp.send("out", b"v", b"k")
    assert [c for c in producer.calls if c[0] == "produce"] == [("produce", "out", b"v")]
    producer.fail_produce = KafkaError(KafkaError._STATE, "in an abortable state", txn_requires_abort=True)
    with pytest.raises(AbortNeeded):
        cp.send("out", b"w", b"k")


def test_a_failed_commit_drops_the_held_records_and_aborts_once(rig: Any) -> None:
    cp, producer, metrics = rig
    producer.fail_with = KafkaError(KafkaError.CONCURRENT_TRANSACTIONS, "fenced generation",
                                    txn_requires_abort=True)
    _commit_running(cp, producer, 1, range(10, 14))
    _batch(cp, 1, range(14, 16))
    producer.release.set()
    with pytest.raises(AbortNeeded):
        cp.settle(block=True)
    cp.abort("error")  # what the processor does next, then it rewinds
    assert producer.calls[-2:] == [("commit failed",), ("abort",)]
    assert not any(c[0] == "produce" and c[2] in (b"1:14", b"1:15") for c in producer.calls)
    assert cp.held == [] and not cp.open
    # both transactions' records are replayed from the committed offsets; none was counted as committed
    assert _sample(metrics, "consumed_aborted_total") == 6
    assert _sample(metrics, "produced_total", output="processed") == 0
    assert _sample(metrics, "aborts_total", cause="error") == 1
    producer.fail_with = None
    _batch(cp, 1, range(10, 12))  # after the rewind: a new transaction as usual
    assert cp.commit()
    assert producer.calls[-1] == ("commit",)


def test_abort_while_a_commit_runs_keeps_what_it_committed(rig: Any) -> None:
    cp, producer, metrics = rig
    _commit_running(cp, producer, 0, range(0, 2))
    _batch(cp, 0, range(2, 4))
    threading.Timer(0.2, producer.release.set).start()
    cp.abort("lost")  # waits for the commit: it succeeded, so only the held records are given up
    assert _sample(metrics, "produced_total", output="processed") == 2
    assert _sample(metrics, "consumed_aborted_total") == 2
    assert producer.calls[-1] == ("abort",) and cp.held == []


def test_a_synchronous_commit_takes_the_held_records_too(rig: Any) -> None:
    cp, producer, metrics = rig
    _commit_running(cp, producer, 0, range(0, 2))
    _batch(cp, 1, range(0, 3))
    threading.Timer(0.2, producer.release.set).start()
    assert cp.commit()  # on revoke and at shutdown: nothing may stay held
    assert [c for c in producer.calls if c[0] in ("offsets", "commit")] == [
        ("offsets", ((0, 2),)), ("commit",), ("offsets", ((1, 3),)), ("commit",)]
    assert _sample(metrics, "produced_total", output="processed") == 5
    assert not cp.commit()  # nothing left


def test_a_fatal_commit_error_is_raised_from_settle(rig: Any) -> None:
    cp, producer, _ = rig
    _batch(cp, 0, range(0, 2))
    producer.fail_with = KafkaError(KafkaError._FENCED, "fenced", fatal=True)
    cp.commit(wait=False)
    with pytest.raises(FatalKafkaError):
        cp.settle(block=True)


def test_a_commit_kafka_keeps_refusing_is_fatal_within_the_transaction_timeout(rig: Any) -> None:
    """Kafka away mid-commit: retriable errors are retried only while the transaction can still commit
    (the broker aborts it after its timeout), then the process must exit and be restarted, well before
    max.poll.interval.ms would drop it from its group while the processing loop waits."""
    cp, producer, _ = rig
    cp.within = 1.0
    _batch(cp, 0, range(0, 2))
    producer.fail_with = KafkaError(KafkaError._TIMED_OUT, "broker away", retriable=True)
    began = time.monotonic()
    cp.commit(wait=False)
    with pytest.raises(FatalKafkaError, match="still failing after 1s"):
        cp.settle(block=True)
    assert time.monotonic() - began < 5
    assert producer.calls.count(("commit failed",)) >= 2  # retried, then given up


_VALUE = (b'{"specversion":"1.0","id":"e1","source":"/devices/d1","type":"edgebridge.reading.v1",'
          b'"time":"2026-11-26T12:00:00Z","deviceid":"d1","seq":%d,"data":{"t":{"v":1.5,"u":"Cel"}}}')


@pytest.fixture
def processor() -> Any:
    """The enricher's processor with its clients pointed nowhere and a scripted producer in the
    checkpoint: its processing loop, run on hand-made records."""
    from edgebridge.config import load_config
    from enricher.config import EnricherConfig
    from enricher.processor import Processor

    config = load_config(EnricherConfig, None, env={}, overrides={
        "kafka.bootstrap": "127.0.0.1:9", "metrics.enabled": False})
    proc = Processor(config)
    producer = ScriptedProducer()
    proc.checkpoint.producer = producer  # type: ignore[assignment]
    proc.checkpoint._produce = producer.produce
    proc.assignment.assigned.add(0)
    yield proc, producer
    proc.close()


def _records(topic: str, partition: int, offsets: range) -> list[Any]:
    from confluent_kafka import Message

    return [Message(topic=topic, partition=partition, offset=o, key=b"d1", value=_VALUE % (o + 1),
                    timestamp=(1, 1_795_700_000_000)) for o in offsets]


def test_the_processor_opens_a_transaction_only_for_records_of_its_partitions(processor: Any) -> None:
    """Records fetched before a revoke (a partition no longer ours) are skipped without opening a
    transaction: an empty one would sit open until transaction.timeout.ms aborted it."""
    proc, producer = processor
    raw = proc.config.topics.raw
    stray = _records(raw, 1, range(3))
    proc._process(stray)
    assert producer.calls == [] and not proc.checkpoint.open
    proc._process([*stray, *_records(raw, 0, range(0, 1))])
    assert [c[0] for c in producer.calls] == ["begin", "produce"]
    assert proc.checkpoint.batch.positions == {0: 1} and proc.checkpoint.batch.consumed == 1


def test_a_produce_error_mid_batch_still_counts_what_the_batch_consumed(processor: Any) -> None:
    proc, producer = processor
    raw = proc.config.topics.raw
    proc._process(_records(raw, 0, range(0, 2)))
    producer.fail_produce = KafkaError(KafkaError._STATE, "in an abortable state", txn_requires_abort=True)
    with pytest.raises(AbortNeeded):
        proc._process(_records(raw, 0, range(2, 5)))  # the first produce of this batch fails
    assert proc.checkpoint.batch.consumed == 3 and proc.checkpoint.batch.positions == {0: 3}
    producer.fail_produce = None
    proc.checkpoint.abort("error")  # what the processor does next: all 3 are replayed
    assert _sample(proc.metrics, "consumed_aborted_total") == 3


def test_offsets_unreadable_at_assignment_end_the_run_with_what_to_do(processor: Any) -> None:
    """A hanging transaction keeps the group's offsets unstable for good: committed() times out on every
    assignment. The processor stops with a FatalKafkaError naming the cause and the tool, not a
    traceback of a bare timeout."""
    from confluent_kafka import KafkaException, TopicPartition

    from enricher.checkpoint import FatalKafkaError

    proc, _ = processor

    class Unstable:
        def committed(self, partitions: list[Any], timeout: float) -> list[Any]:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to get committed offsets"))

    proc.assignment.on_assign(Unstable(), [TopicPartition(proc.config.topics.raw, 3)])
    fatal = proc.assignment.fatal
    assert isinstance(fatal, FatalKafkaError)
    assert "[3]" in str(fatal) and "find-hanging" in str(fatal)
    assert 3 not in proc.assignment.assigned


def test_a_fatal_consumer_error_in_a_batch_dropped_for_a_rewind_still_ends_the_run(processor: Any) -> None:
    """Seen on the three-node cluster (tests/e2e/test_scaleout.py): the group coordinator's node killed,
    the session timed out (partitions lost: rewind) and librdkafka, rejoining, was fenced as a static
    member, all within one consume(). The batch is dropped for the rewind; the fatal error in it must
    still end the run, or the replica turns on healthy with no partition, for good."""
    from enricher.checkpoint import FatalKafkaError

    proc, _ = processor

    class Fenced:
        def error(self) -> KafkaError:
            return KafkaError(KafkaError._FATAL, "Static consumer fenced by other consumer")

    class OneBatch:
        def consume(self, num_messages: int, timeout: float) -> list[Any]:
            return [Fenced()]

    real, proc.consumer = proc.consumer, OneBatch()
    proc.assignment.assigned.clear()  # all lost: the rewind itself has nothing to do
    proc.assignment.needs_rewind = True
    try:
        with pytest.raises(FatalKafkaError, match="fenced"):
            proc._step()
    finally:
        proc.consumer = real  # the fixture closes it
