"""The transaction of the enricher and its commit order: the one place that decides what is committed.

Delivery guarantee: a raw record's outputs (processed event, alerts, dead letter), the dedup state it
changed and its consumed offset become visible to ``read_committed`` readers together or not at all.
A crash at any point leaves either the whole transaction or none of it, so the restarted (or the
taking-over) instance resumes from the committed offsets with the matching committed dedup state.

Commit order (:meth:`Checkpoint.commit`), every ``commit.interval_ms`` or ``commit.max_messages``:

1. Produce the dedup state of every device changed in this transaction to ``iot.enricher.state``
   (compacted; partition = the raw partition of the device) inside the transaction.
2. ``send_offsets_to_transaction``: the next offset of every raw partition consumed in this transaction,
   with the consumer's group metadata (so a zombie of an older group generation is fenced).
3. ``commit_transaction``: flushes every record of steps 1-2 and of the processing (processed, alerts,
   dead letters) and commits them atomically with the offsets.
4. Only after that, forget the dirty marks and the tracked positions.

Abort path (:meth:`Checkpoint.abort`): ``abort_transaction``; the caller then rewinds the consumer to the
committed offsets and reloads the dedup state of its partitions from the state topic, discarding
everything this instance did since the last commit.

Why a zombie cannot commit after a takeover. A *zombie* is an instance that lost its partitions
without knowing it (frozen by GC, swap or SIGSTOP past ``session.timeout.ms``) and then wakes up with a
transaction open. Two fences, one per kind of zombie:

- The same instance restarted (same ``transactional.id``): the new process's ``init_transactions`` bumps
  the producer epoch, aborts the old open transaction and fences the old producer (its next call fails
  as fenced: fatal, exit). Static membership (same ``group.instance.id``) fences its group member too.
- Another instance took the partitions over (KIP-447): step 2 sends the consumer's group metadata
  (generation, member id) *as of the call*, never a copy cached earlier, so a zombie sends the
  generation in which it owned the partitions. The new owner got them only in a later generation, so
  the group coordinator rejects the zombie's offsets (ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID /
  FENCED_INSTANCE_ID), librdkafka flags the transaction abortable, and the zombie aborts, outputs and
  state records included. The other order is safe too: if the zombie's offsets reached the
  coordinator first (step 2 done, step 3 pending), the new owner's ``committed()`` in its assign
  callback (``read_committed`` makes librdkafka ask for *stable* offsets, KIP-447 ``require_stable``)
  waits until that transaction is committed or aborted (at the latest by ``transaction.timeout.ms``),
  and only then reads the state topic up to its last stable offset. So the new owner always starts
  from offsets and state of the same committed transaction, and nothing the zombie does after the
  takeover can commit. ``tests/enricher/test_crash.py`` freezes an instance with SIGSTOP to check it.

Errors, by class (librdkafka's flags on ``KafkaError``): *retriable* -> the same call again (capped,
jittered); *txn_requires_abort* -> :class:`AbortNeeded` (abort, rewind, continue); *fatal* (a fenced
producer among them) -> :class:`FatalKafkaError`: the process exits non-zero and its supervisor
restarts it, whose ``init_transactions`` then fences and aborts what was left open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from edgebridge.errors import EdgeBridgeError
from edgebridge.retry import Backoff
from enricher.dedup import DedupTable
from enricher.metrics import EnricherMetrics

__all__ = ["AbortNeeded", "Checkpoint", "FatalKafkaError", "Headers", "classify", "kafka_call",
           "raise_classified"]

log = logging.getLogger(__name__)
T = TypeVar("T")
Headers = list[tuple[str, str | bytes | None]]  # what Producer.produce takes
RETRIABLE, ABORTABLE, FATAL = "retriable", "abortable", "fatal"


class AbortNeeded(EdgeBridgeError):
    """The current transaction cannot commit: abort it and rewind to the committed offsets."""


class FatalKafkaError(EdgeBridgeError):
    """The producer is fenced or in a fatal state: exit non-zero, let the supervisor restart us."""


def classify(error: KafkaError) -> str:
    if error.fatal() or error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                         KafkaError.INVALID_PRODUCER_EPOCH):
        return FATAL
    if error.txn_requires_abort():
        return ABORTABLE
    if error.retriable():
        return RETRIABLE
    # not flagged either way (a timeout of a call that did not reach the broker, a state error):
    # aborting is always safe, committing a transaction in doubt never is
    return ABORTABLE


def kafka_call(what: str, call: Callable[[], T], attempts: int = 8) -> T:
    """Run a transactional API call with the error policy above."""
    backoff = Backoff(initial=0.1, maximum=2.0)
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if classify(error) == RETRIABLE and attempt < attempts:
                log.warning("retriable kafka error",
                            extra={"call": what, "attempt": attempt, "error": str(error)})
                time.sleep(backoff.next_delay())
                continue
            raise_classified(what, exc)
    raise AssertionError("unreachable")


def raise_classified(what: str, exc: KafkaException) -> None:
    """Translate a librdkafka error once: :class:`FatalKafkaError` or :class:`AbortNeeded`."""
    error: KafkaError = exc.args[0]
    if classify(error) == FATAL:
        raise FatalKafkaError(f"{what}: {error}") from exc
    raise AbortNeeded(f"{what}: {error}") from exc


class Checkpoint:
    """The open transaction: what it consumed, and the commit order above."""

    def __init__(self, producer: Producer, consumer: Consumer, dedup: DedupTable, raw_topic: str,
                 state_topic: str, metrics: EnricherMetrics, interval_ms: int, max_messages: int) -> None:
        self.producer = producer
        self._produce = producer.produce
        self.consumer = consumer
        self.dedup = dedup
        self.raw_topic = raw_topic
        self.state_topic = state_topic
        self.metrics = metrics
        self.interval = interval_ms / 1000.0
        self.max_messages = max_messages
        self.open = False
        self.started = 0.0
        self.consumed = 0
        self.positions: dict[int, int] = {}  # raw partition -> next offset to consume
        self.pending: dict[str, int] = {}  # output -> records produced in this transaction
        self.pending_deadletters: dict[str, int] = {}
        # the processor's hooks: move what the steps counted into the metrics, or forget it
        self.on_commit: Callable[[], None] = lambda: None
        self.on_abort: Callable[[], None] = lambda: None

    # -- while processing -------------------------------------------------------------------------
    def track(self, partition: int, offset: int) -> None:
        """Record a consumed raw record; opens the transaction on the first one."""
        if not self.open:
            kafka_call("begin_transaction", self.producer.begin_transaction)
            self.open = True
            self.started = time.monotonic()
        self.positions[partition] = offset + 1
        self.consumed += 1

    def produce(self, output: str, topic: str, value: bytes, key: bytes | None,
                headers: Headers | None = None, partition: int | None = None) -> None:
        while True:
            try:
                # -1: librdkafka's "unassigned", the partitioner decides (keyword-free: a per-record cost)
                self._produce(topic, value, key, -1 if partition is None else partition, headers=headers)
                break
            except BufferError:
                # librdkafka's queue is full (bounded by queue.buffering.max.*): wait for deliveries
                self.producer.poll(0.05)
            except KafkaException as exc:
                raise_classified("produce", exc)
        pending = self.pending
        pending[output] = pending.get(output, 0) + 1

    def deadletter(self, reason: str) -> None:
        self.pending_deadletters[reason] = self.pending_deadletters.get(reason, 0) + 1

    def due(self) -> bool:
        return self.open and (self.consumed >= self.max_messages
                              or time.monotonic() - self.started >= self.interval)

    def remaining(self) -> float:
        """Seconds until the commit is due (for the consumer's poll timeout)."""
        if not self.open:
            return self.interval
        return max(0.0, self.started + self.interval - time.monotonic())

    # -- the commit order -----------------------------------------------------------------------------
    def commit(self) -> bool:
        """Steps 1-4 of the module docstring; ``False`` when nothing was open. Raises AbortNeeded/Fatal."""
        if not self.open:
            return False
        began = time.monotonic()
        # 1. dedup state of the devices changed in this transaction, to their raw partition's number
        for partition, deviceid, payload in self.dedup.dirty():
            self.produce("state", self.state_topic, payload, deviceid.encode(), partition=partition)
        # 2. the consumed offsets, fenced by the group generation
        offsets = [TopicPartition(self.raw_topic, p, o) for p, o in sorted(self.positions.items())]
        if offsets:
            metadata = self.consumer.consumer_group_metadata()
            kafka_call("send_offsets_to_transaction",
                       lambda: self.producer.send_offsets_to_transaction(offsets, metadata, 30))
        # 3. everything above and all outputs, atomically
        kafka_call("commit_transaction", lambda: self.producer.commit_transaction(30))
        # 4. committed: now, and only now, forget
        self.metrics.commit_seconds.observe(time.monotonic() - began)
        self.metrics.commits.inc()
        self.metrics.consumed.inc(self.consumed)
        for output, n in self.pending.items():
            self.metrics.produced.labels(output).inc(n)
        for reason, n in self.pending_deadletters.items():
            self.metrics.deadletters.labels(reason).inc(n)
        self.on_commit()
        self.dedup.clean()
        self._reset()
        return True

    def abort(self, cause: str) -> None:
        """Abort the open transaction (if any); the caller rewinds and reloads state."""
        if self.open:
            kafka_call("abort_transaction", lambda: self.producer.abort_transaction(30))
            self.metrics.aborts.labels(cause).inc()
            self.metrics.consumed.inc(self.consumed)
            self.metrics.replayed.inc(self.consumed)
        self.on_abort()
        self._reset()

    def _reset(self) -> None:
        self.open = False
        self.consumed = 0
        self.positions.clear()
        self.pending.clear()
        self.pending_deadletters.clear()
