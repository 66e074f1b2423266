"""The transactional consume-process-produce loop the enricher and the aggregator share.

:class:`TransactionalLoop` is the part of :class:`enricher.processor.Processor` and
:class:`enricher.aggregates.aggregator.Aggregator` that is one and the same: waiting for Kafka to answer,
the start (partition checks, ``init_transactions``, the sweep of transactions a lost abort left open,
subscribe), the step loop (serve the clients, consume up to the next commit deadline, rewind after a
rebalance, settle the commit in flight, process, commit when due), the commit or abort at shutdown, the
abort and rewind, consumer errors, dead letters and the close. A fix to any of these (fencing, close
order, abort handling) lands here, for both.

What differs is a hook, filled in by each component: :meth:`_process` (the records of one consume),
:meth:`_check_partitions`, :meth:`_sweep_outputs`, :meth:`_before_subscribe` and :meth:`_started` (the
start), :meth:`_serve_waiting` and :meth:`_serve_turn` (the clients served besides the producer and the
state store), :meth:`_stopped` (the clean stop's log line), :meth:`_closers` (the close, the
producer's flush among them: its error after a fatal one must not hide that one). Log lines go to the
component's own logger (:attr:`TransactionalLoop.log`), so they keep their logger name and their rate
limits.

A subclass's ``__init__`` builds everything the loop uses: ``config``, ``topics``, ``input`` (the topic
consumed), ``within`` (``transaction.timeout.ms`` in seconds), ``metrics``, ``consumer`` (with
:meth:`_on_consumer_error` as its ``error_cb``), ``producer``, ``output``, ``state``, ``checkpoint``,
``assignment``, ``ready`` and ``progress``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import ClassVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from edgebridge.errors import ConfigError
from edgebridge.logs import rate_limited
from edgebridge.metrics import LoopProgress
from edgebridge.retry import StopEvent
from edgebridge.topics import KafkaTopics
from enricher.checkpoint import FATAL, AbortNeeded, Checkpoint, FatalKafkaError, classify, kafka_call
from enricher.config import EnricherConfig
from enricher.hang_watchdog import WATCHDOG
from enricher.metrics import EnricherMetrics
from enricher.output import Output
from enricher.rebalance import Assignment
from enricher.state import StateStore
from enricher.sweep import sweep

__all__ = ["CONSUME_BATCH", "TransactionalLoop"]

# records per consume() call: small enough that a commit falls due at most one batch late (a large
# batch stretches the commit interval under backlog), large enough that the call's own cost stays
# negligible (bench/RESULTS.md, Enricher)
CONSUME_BATCH = 500


class TransactionalLoop:
    """The shared loop; a subclass builds the clients in its ``__init__`` and fills in the hooks."""

    log: ClassVar[logging.Logger]  # the component's logger: its lines keep their logger name
    missing_topic_hint: ClassVar[str] = ""  # after "topic 'x' does not exist" in the ConfigError

    config: EnricherConfig
    topics: KafkaTopics
    input: str  # the topic consumed
    within: float  # transaction.timeout.ms, in seconds
    metrics: EnricherMetrics
    consumer: Consumer
    producer: Producer
    output: Output
    state: StateStore
    checkpoint: Checkpoint
    assignment: Assignment
    ready: threading.Event
    progress: LoopProgress

    # -- lifecycle ------------------------------------------------------------------------------------
    def run(self, stop: StopEvent) -> None:
        """Work until ``stop`` is set, then commit and close. Raises FatalKafkaError on fencing."""
        try:
            if not self._wait_for_kafka(stop):
                return
            self._start()
            while not stop.is_set():
                self._step()
            self._commit_or_abort("shutdown")
            self._stopped()
        finally:
            self.close()

    def _wait_for_kafka(self, stop: StopEvent) -> bool:
        """Until the cluster answers (``False``: stopped first). An instance that exited during a Kafka
        outage (a transaction it could not finish, see ``kafka_call``) and was restarted waits here,
        quietly and with flat memory, instead of exiting again and again until Kafka is back."""
        while not stop.is_set():
            try:
                self.consumer.list_topics(timeout=5)
                return True
            except KafkaException as exc:
                rate_limited(self.log, "waiting-for-kafka", 60.0).warning(
                    "waiting for kafka to answer", extra={"error": str(exc.args[0])})
                self._serve_waiting()
                stop.wait(1.0)
        return False

    def _start(self) -> None:
        parts = self._check_partitions()
        kafka_call("init_transactions", lambda t: self.producer.init_transactions(t), self.within + 60)
        # before our first transaction: abort whatever a lost abort left open on our partitions (sweep.py)
        sweep(self.producer, self.consumer, self._sweep_outputs(parts), self.input, self.within)
        self._before_subscribe()
        self.assignment.subscribe()
        self._started(parts)

    def _partitions(self, topic: str, key: str, required: bool = True) -> int:
        """The topic's partition count; 0 for a topic that does not exist unless ``required`` (then a
        ConfigError of config key ``key``)."""
        tmeta = self.consumer.list_topics(topic, timeout=10).topics.get(topic)
        if tmeta is None or tmeta.error is not None:
            if not required:
                return 0
            raise ConfigError(key, f"topic {topic!r} does not exist{self.missing_topic_hint}")
        return len(tmeta.partitions)

    def close(self) -> None:
        # a commit hung in librdkafka would hold the close too (the committer thread is joined)
        with WATCHDOG.guard("close", 30.0):
            for closing in self._closers():
                try:
                    closing()
                except Exception:  # closing after a fatal error: nothing left to save
                    self.log.debug("close failed", exc_info=True)

    # -- the loop ---------------------------------------------------------------------------------------
    def _step(self) -> None:
        self.progress.turn()
        # every client is served each turn, not only when it has work: their events and log lines
        # (edgebridge.kafka_log) would otherwise pile up in memory through a long outage
        self.producer.poll(0)
        self.state.serve()
        self._serve_turn()
        timeout = min(self.checkpoint.remaining(), 0.5)  # 0.5 s: how soon a stop is noticed when idle
        messages = self.consumer.consume(min(CONSUME_BATCH, self.config.commit.max_messages), timeout)
        assignment = self.assignment  # its callbacks ran inside consume()
        if assignment.fatal is not None:
            raise assignment.fatal
        if assignment.needs_rewind:
            # the batch is dropped for the rewind, but not an error in it that ends this consumer: a
            # session timed out (partitions lost) and then fenced as a static member come in one batch
            for msg in messages:
                if msg.error() is not None:
                    self._consume_error(msg)
            assignment.rewind()
            return
        try:
            self.checkpoint.settle()  # the commit in flight, if it returned: open the next transaction
            if messages:
                self._process(messages)
            if self.checkpoint.due():
                self.checkpoint.commit(wait=False)  # steps 2-4 go on while we process the next batch
        except AbortNeeded as exc:
            self._abort_and_rewind(str(exc))
        assignment.report_lag()

    def _consume_error(self, msg: Message) -> None:
        err = msg.error()
        if err is None or err.code() == KafkaError._PARTITION_EOF:
            return
        if classify(err) == FATAL:  # e.g. fenced as a static member: this consumer is in no group any more
            raise FatalKafkaError(f"consumer: {err}")
        self.log.warning("consume error", extra={"error": str(err)})

    def _on_consumer_error(self, err: KafkaError) -> None:
        """librdkafka's ``error_cb``, served inside ``consume()``. A fatal consumer error may come only
        this way: left unseen, the loop would turn on without partitions, healthy and idle, while the
        group's other members (if any) wait for this member's session to end."""
        if classify(err) == FATAL and self.assignment.fatal is None:
            self.assignment.fatal = FatalKafkaError(f"consumer: {err}")

    def _deadletter(self, msg: Message, reason: str, error: BaseException, step: str | None = None) -> None:
        """The input record to the dead letters, in the open transaction with the record's offset."""
        value, key, headers = self.output.deadletter(msg, reason, error, step)
        self.checkpoint.send(self.topics.deadletter, value, key, headers)
        self.checkpoint.deadletter(reason)

    # -- commit, abort, rewind ----------------------------------------------------------------------------
    def _commit_or_abort(self, cause: str) -> None:
        try:
            self.checkpoint.commit()
        except AbortNeeded as exc:
            self._abort_and_rewind(f"{cause}: {exc}")

    def _abort_and_rewind(self, cause: str) -> None:
        self.log.warning("transaction aborted, rewinding to committed offsets", extra={"cause": cause})
        self.checkpoint.abort("error")
        self.assignment.rewind()

    # -- hooks ------------------------------------------------------------------------------------------
    def _process(self, messages: list[Message]) -> None:
        """The records of one consume (errors among them go to :meth:`_consume_error`), in the
        checkpoint's transaction: ``checkpoint.start()`` before the first, ``checkpoint.consumed()``
        after the last, also when one raises."""
        raise NotImplementedError

    def _check_partitions(self) -> int:
        """The partition count of :attr:`input`, once the topics that must match it are checked
        (ConfigError if not)."""
        raise NotImplementedError

    def _sweep_outputs(self, parts: int) -> dict[str, int]:
        """The topics (and their partition counts) our transactions write, for :func:`enricher.sweep.sweep`
        (after ``init_transactions``)."""
        raise NotImplementedError

    def _before_subscribe(self) -> None:
        """What must be ready before partitions can be assigned (after the sweep)."""

    def _started(self, parts: int) -> None:
        """The start's log line."""
        raise NotImplementedError

    def _serve_waiting(self) -> None:
        """Each second while Kafka does not answer: every client served, as in the loop (their events
        would pile up in memory through a long outage). A subclass with more clients adds them."""
        self.producer.poll(0)
        self.consumer.poll(0)  # not subscribed yet: serves its events only
        self.state.serve()

    def _serve_turn(self) -> None:
        """Each turn of the loop, after the producer and the state store: other clients to serve."""

    def _stopped(self) -> None:
        """The clean stop's log line (after the shutdown's commit)."""
        raise NotImplementedError

    def _closers(self) -> Iterable[Callable[[], object]]:
        """What :meth:`close` closes, in order, each one's exception logged and swallowed."""
        raise NotImplementedError
