"""The transaction of the enricher and its commit order: the one place that decides what is committed.

Delivery guarantee: a raw record's outputs (processed event, alerts, dead letter), the dedup state it
changed and its consumed offset become visible to ``read_committed`` readers together or not at all.
A crash at any point leaves either the whole transaction or none of it, so the restarted (or the
taking-over) instance resumes from the committed offsets with the matching committed dedup state.

Commit order (:meth:`Checkpoint.commit`), every ``commit.interval_ms`` or ``commit.max_messages``:

1. Produce the dedup state of every device changed in this transaction to ``iot.enricher.state``
   (compacted; partition = the raw partition of the device) inside the transaction. [main thread]
   The aggregator (:mod:`enricher.aggregates`) uses the same checkpoint over its window table: its
   ``emit`` hook first produces the figures of every window changed in the transaction, so that
   outputs made from state, the state and the offsets share one transaction whoever calls the commit
   (the loop, a revoke, a shutdown).
2. ``send_offsets_to_transaction``: the next offset of every raw partition consumed in this transaction,
   with the consumer's group metadata taken at the hand-off (so a zombie of an older group generation
   is fenced). [committer thread]
3. ``commit_transaction``: flushes every record of steps 1-2 and of the processing (processed, alerts,
   dead letters) and commits them atomically with the offsets. [committer thread]
4. Only after that returns, count the transaction as committed (metrics, step counts), then open the
   next transaction and produce into it the records held while 2-3 ran. [main thread, ``settle``]

While 2-3 run, the main thread goes on consuming and processing; the producer is busy committing, so
those outputs are held in memory, not produced, and their offsets and dedup changes belong to the next
transaction. One commit at a time: the next hand-off waits for the previous commit's outcome.
Every record reaches Kafka through :meth:`Checkpoint.send`, which makes that choice: into the open
transaction now, or held for the next one.

Abort path (:meth:`Checkpoint.abort`): wait for a commit in flight (if it committed, it stays so),
``abort_transaction``, drop the held records; the caller then rewinds the consumer to the committed
offsets and reloads the dedup state of its partitions from the state topic, discarding everything this
instance did since the last commit.

Why a zombie cannot commit after a takeover. A *zombie* is an instance that lost its partitions
without knowing it (frozen by GC, swap or SIGSTOP past ``session.timeout.ms``) and then wakes up with a
transaction open. Two fences, one per kind of zombie:

- The same instance restarted (same ``transactional.id``): the new process's ``init_transactions`` bumps
  the producer epoch, aborts the old open transaction and fences the old producer (its next call fails
  as fenced: fatal, exit). Static membership (same ``group.instance.id``) fences its group member too.
- Another instance took the partitions over (KIP-447): step 2 sends the consumer's group metadata
  (generation, member id) *as of the hand-off* (taken just before the call), never an older copy, so a
  zombie sends the generation in which it owned the partitions. The new owner got them only in a later
  generation, so the group coordinator rejects the zombie's offsets (ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID
  / FENCED_INSTANCE_ID), librdkafka flags the transaction abortable, and the zombie aborts, outputs and
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

import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from edgebridge.errors import EdgeBridgeError
from edgebridge.logs import rate_limited
from edgebridge.retry import Backoff
from enricher.hang_watchdog import WATCHDOG
from enricher.metrics import EnricherMetrics
from enricher.steps import Stats

if TYPE_CHECKING:
    from enricher.state import StateTable  # which imports FatalKafkaError from here

__all__ = ["FATAL", "AbortNeeded", "Checkpoint", "FatalKafkaError", "Headers", "classify", "kafka_call",
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
    # _FATAL: the code of the error event that announces a fatal error (its own fatal() may be False)
    if error.fatal() or error.code() in (KafkaError._FATAL, KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                         KafkaError.INVALID_PRODUCER_EPOCH):
        return FATAL
    if error.txn_requires_abort():
        return ABORTABLE
    if error.retriable():
        return RETRIABLE
    # not flagged either way (a timeout of a call that did not reach the broker, a state error):
    # aborting is always safe, committing a transaction in doubt never is
    return ABORTABLE


def kafka_call(what: str, call: Callable[[float], T], within: float = 60.0) -> T:
    """Run a transactional API call with the error policy above; ``call`` gets the seconds it may block.

    A retriable error is retried (capped, jittered) for at most ``within`` seconds, the transaction
    timeout: past it the broker aborts the transaction anyway, so a call still failing then (Kafka
    away) is :class:`FatalKafkaError`: the process exits and its restart fences and aborts what was
    left open. That also bounds how long the processing loop can wait on a commit, well inside
    ``max.poll.interval.ms``, so the instance never silently drops out of its group while it waits.
    A call that blocks past its own timeout (a librdkafka bug) ends the process:
    :mod:`enricher.hang_watchdog`.
    """
    # Backoff, not tenacity's Retrying: each attempt's own timeout shrinks with the deadline, and the
    # wait is deliberately not interruptible by the stop signal (at most 2 s): a stop must still commit
    deadline = time.monotonic() + within
    backoff = Backoff(initial=0.1, maximum=2.0)
    attempt = 0
    while True:
        attempt += 1
        seconds = max(1.0, min(30.0, deadline - time.monotonic()))
        try:
            with WATCHDOG.guard(what, seconds):  # librdkafka may block past ``seconds``: see hang_watchdog
                return call(seconds)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if classify(error) != RETRIABLE:
                raise_classified(what, exc)
            left = deadline - time.monotonic()
            if left <= 0:
                raise FatalKafkaError(f"{what}: still failing after {within:.0f}s (attempt {attempt}): "
                                      f"{error}") from exc
            rate_limited(log, ("retriable", what), 10.0).warning(
                "retriable kafka error", extra={"call": what, "attempt": attempt, "error": str(error)})
            time.sleep(min(backoff.next_delay(), left))


def raise_classified(what: str, exc: KafkaException) -> None:
    """Translate a librdkafka error once: :class:`FatalKafkaError` or :class:`AbortNeeded`."""
    error: KafkaError = exc.args[0]
    if classify(error) == FATAL:
        raise FatalKafkaError(f"{what}: {error}") from exc
    raise AbortNeeded(f"{what}: {error}") from exc


@dataclass(slots=True)
class _Batch:
    """What one transaction consumed and produced: the counts its commit moves into the metrics."""

    consumed: int = 0
    started: float = 0.0
    positions: dict[int, int] = field(default_factory=dict)  # raw partition -> next offset to consume
    pending: dict[str, int] = field(default_factory=dict)  # output -> records produced
    deadletters: dict[str, int] = field(default_factory=dict)  # reason -> dead letters produced
    steps: Stats | None = None  # the pipeline's counts, taken at the hand-off


class Checkpoint:
    """The open transaction (what it consumed) and the commit order above, with one commit in flight.

    Pipelining: ``commit(wait=False)`` does step 1 on the calling thread, then hands steps 2-3 to a
    single committer thread (they block on broker round trips, which would otherwise stall the
    processing) and returns. The caller goes on processing; what it produces
    meanwhile is *held* in memory (the producer is busy committing, a produce now would fail) and
    produced into the next transaction as soon as the commit returns (:meth:`settle`, once per consume
    batch). A failed commit makes the held records worthless: :meth:`abort` drops them, and the
    rewind replays their raw records. At most one commit is in flight; the next hand-off waits for it.

    ``steps`` is what the pipeline counts: taken at the hand-off, it goes into the metrics with the
    commit, and an abort forgets it.
    """

    def __init__(self, producer: Producer, consumer: Consumer, table: StateTable, input_topic: str,
                 state_topic: str, metrics: EnricherMetrics, interval_ms: int, max_messages: int,
                 transaction_timeout: float = 60.0, steps: Stats | None = None,
                 emit: Callable[[Checkpoint], None] | None = None) -> None:
        self.producer = producer
        self._produce = producer.produce
        self.consumer = consumer
        self.table = table
        self.input_topic = input_topic
        self.state_topic = state_topic
        self.metrics = metrics
        self.steps = steps if steps is not None else Stats()
        self.emit = emit
        self.interval = interval_ms / 1000.0
        self.max_messages = max_messages
        self.within = transaction_timeout  # how long a transactional call may keep failing (kafka_call)
        self.open = False  # a transaction is open at the broker
        self.batch = _Batch()  # what was consumed since the last hand-off (open or held)
        self.held: list[tuple[str, bytes | None, bytes | None, int, Headers | None]] = []
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="enricher-commit")
        self._inflight: Future[None] | None = None
        self._inflight_batch = _Batch()
        self._failed = False  # a commit failed: the broker's transaction must be aborted

    # -- while processing -------------------------------------------------------------------------
    def start(self) -> None:
        """Before a consumed batch is processed: open a transaction, unless one is open or the previous
        one is still committing (then what the batch produces is held)."""
        if not self.batch.consumed:
            self.batch.started = time.monotonic()
        if not self.open and self._inflight is None:
            self._begin()

    def _begin(self) -> None:
        kafka_call("begin_transaction", lambda _t: self.producer.begin_transaction(), self.within)
        self.open = True

    def consumed(self, positions: dict[int, int], count: int, processed: int = 0, alerts: int = 0) -> None:
        """After the batch: the next offset per raw partition, and how many records it consumed and
        produced (the processed and alert records it sent; :meth:`deadletter` counts the others)."""
        batch = self.batch
        batch.positions.update(positions)
        batch.consumed += count
        if processed:
            batch.pending["processed"] = batch.pending.get("processed", 0) + processed
        if alerts:
            batch.pending["alerts"] = batch.pending.get("alerts", 0) + alerts

    def send(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None = None,
             partition: int = -1) -> None:
        """One record into the transaction: produced now when it is open, else held until the previous
        commit returns (:meth:`settle` produces it into the next one). After :meth:`start`. A ``value``
        of ``None`` is a tombstone (a state key deleted).

        ``partition`` -1 is librdkafka's "unassigned": the partitioner decides. Raises
        :class:`AbortNeeded` or :class:`FatalKafkaError` for Kafka's errors."""
        if not self.open:
            self.held.append((topic, value, key, partition, headers))
            return
        while True:
            try:
                self._produce(topic, value, key, partition, headers=headers)
                return
            except BufferError:
                # librdkafka's queue is full (bounded by queue.buffering.max.*): wait for deliveries
                self.producer.poll(0.05)
            except KafkaException as exc:
                raise_classified("produce", exc)

    def produce(self, output: str, topic: str, value: bytes | None, key: bytes | None,
                headers: Headers | None = None, partition: int = -1) -> None:
        """:meth:`send`, counted under ``output``."""
        self.send(topic, value, key, headers, partition)
        pending = self.batch.pending
        pending[output] = pending.get(output, 0) + 1

    def deadletter(self, reason: str) -> None:
        """A dead letter was sent (:meth:`send`): counted under its output and its reason."""
        pending, deadletters = self.batch.pending, self.batch.deadletters
        pending["deadletter"] = pending.get("deadletter", 0) + 1
        deadletters[reason] = deadletters.get(reason, 0) + 1

    def due(self) -> bool:
        batch = self.batch
        return bool(batch.consumed) and (batch.consumed >= self.max_messages
                                         or time.monotonic() - batch.started >= self.interval)

    def remaining(self) -> float:
        """Seconds until the commit is due (for the consumer's poll timeout)."""
        if not self.batch.consumed:
            return self.interval
        if self._inflight is not None:
            return 0.005  # held records wait for the commit to return: look again soon
        return max(0.0, self.batch.started + self.interval - time.monotonic())

    # -- the commit order -----------------------------------------------------------------------------
    def commit(self, wait: bool = True) -> bool:
        """Steps 1-4 of the module docstring; ``False`` when nothing was consumed since the last one.

        ``wait=False`` returns after step 1 and leaves steps 2-4 to the committer thread and the next
        :meth:`settle`. Raises AbortNeeded / FatalKafkaError (of this commit, or of the one before)."""
        self.settle(block=True)  # the previous commit's outcome first, and its held records produced
        if not self.open:
            return False
        began = time.monotonic()
        if self.emit is not None:  # 1a. outputs made from the state changed in this transaction
            self.emit(self)
        # 1. dedup state of the devices changed in this transaction, to their raw partition's number
        for partition, deviceid, payload in self.table.dirty():
            self.produce("state", self.state_topic, payload, deviceid.encode(), partition=partition)
        self.table.clean()  # later changes belong to the next transaction; an abort reloads them all
        # 2. the consumed offsets, fenced by the group generation as of now (never a cached copy)
        offsets = [TopicPartition(self.input_topic, p, o) for p, o in sorted(self.batch.positions.items())]
        metadata = self.consumer.consumer_group_metadata() if offsets else None
        self.batch.steps = self.steps.take()
        self._inflight_batch, self.batch = self.batch, _Batch()
        self.open = False
        self._inflight = self._committer.submit(self._finish, offsets, metadata, began)
        if wait:
            self.settle(block=True)
        return True

    def _finish(self, offsets: list[TopicPartition], metadata: object, began: float) -> None:
        """Steps 2 and 3, on the committer thread."""
        if offsets:
            kafka_call("send_offsets_to_transaction",
                       lambda t: self.producer.send_offsets_to_transaction(offsets, metadata, t), self.within)
        # 3. everything above and all outputs, atomically
        kafka_call("commit_transaction", lambda t: self.producer.commit_transaction(t), self.within)
        self.metrics.commit_seconds.observe(time.monotonic() - began)

    def settle(self, block: bool = False) -> None:
        """Take the outcome of the commit in flight, if it is done (or ``block``): step 4 on success,
        then open the next transaction for the held records. Raises what the commit raised."""
        inflight = self._inflight
        if inflight is None or not (block or inflight.done()):
            return
        self._inflight = None
        try:
            inflight.result()
        except AbortNeeded:
            self._failed = True  # the broker's transaction is still open, in an abortable state
            raise
        # 4. committed: now, and only now, count it
        done = self._inflight_batch
        self._inflight_batch = _Batch()
        self.metrics.commits.inc()
        self.metrics.consumed.inc(done.consumed)
        for output, n in done.pending.items():
            self.metrics.produced.labels(output).inc(n)
        for reason, n in done.deadletters.items():
            self.metrics.deadletters.labels(reason).inc(n)
        if done.steps is not None:
            self.metrics.steps_committed(done.steps, self.table.open_gaps())
        if self.batch.consumed:  # records processed while it committed: into a new transaction
            self._begin()
            held, self.held = self.held, []
            for topic, value, key, partition, headers in held:
                self.send(topic, value, key, headers, partition)

    def abort(self, cause: str) -> None:
        """Abort the open transaction and drop the held records; the caller rewinds and reloads state.

        A commit in flight is waited for first: if it committed, it stays committed."""
        if self._inflight is not None:
            with contextlib.suppress(AbortNeeded):  # _failed is set: aborted below
                self.settle(block=True)
        replayed = self.batch.consumed + (self._inflight_batch.consumed if self._failed else 0)
        if self.open or self._failed:
            kafka_call("abort_transaction", lambda t: self.producer.abort_transaction(t), self.within)
            self.metrics.aborts.labels(cause).inc()
        if replayed:
            self.metrics.consumed.inc(replayed)
            self.metrics.replayed.inc(replayed)
        self.steps.clear()
        self.open = self._failed = False
        self.batch, self._inflight_batch, self.held = _Batch(), _Batch(), []

    def close(self) -> None:
        self._committer.shutdown(wait=True)
