"""The raw partitions an enricher owns, and what it does when the group moves them.

Rebalancing is cooperative-sticky. On revoke: commit the open transaction (its offsets and state still
belong to us), then forget the revoked partitions. On lost: abort (we may no longer commit for them), forget
them, rewind the rest. On assign: wait until the group's committed offsets are stable, restore the dedup
state of the new partitions from the state topic, then start at the committed offsets.

The callbacks run inside ``consumer.consume()``, where an exception would be lost in librdkafka: they
never raise. What the processing loop must do next is left in :attr:`Assignment.fatal` (raise it) and
:attr:`Assignment.needs_rewind` (call :meth:`Assignment.rewind`).
"""

from __future__ import annotations

import contextlib
import logging
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from enricher.checkpoint import AbortNeeded, Checkpoint, FatalKafkaError
from enricher.metrics import EnricherMetrics
from enricher.state import StateStore, StateTable

__all__ = ["Assignment"]

log = logging.getLogger(__name__)


class Assignment:
    """The assigned partitions of ``input_topic`` (:attr:`assigned`), their state in ``table`` and lag:
    the enricher's of ``iot.events.raw`` and its dedup state, the aggregator's of
    ``iot.events.processed`` and its window state."""

    def __init__(self, consumer: Consumer, input_topic: str, checkpoint: Checkpoint, table: StateTable,
                 state: StateStore, metrics: EnricherMetrics) -> None:
        self.consumer = consumer
        self.input_topic = input_topic
        self.checkpoint = checkpoint
        self.table = table
        self.state = state
        self.metrics = metrics
        self.assigned: set[int] = set()  # changed in place only: the loop may hold it
        self.needs_rewind = False
        self.fatal: BaseException | None = None
        self._next_lag = 0.0

    def subscribe(self) -> None:
        self.consumer.subscribe([self.input_topic], on_assign=self.on_assign, on_revoke=self.on_revoke,
                                on_lost=self.on_lost)

    def rewind(self) -> None:
        """Back to the committed offsets and the committed dedup state of every assigned partition."""
        self.needs_rewind = False
        if not self.assigned:
            return
        parts = [TopicPartition(self.input_topic, p) for p in sorted(self.assigned)]
        committed = self.consumer.committed(parts, timeout=self.state.timeout)
        for tp in committed:
            self.consumer.seek(TopicPartition(self.input_topic, tp.partition,
                                              tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
        self.table.drop_partitions(set(self.assigned))
        self.state.restore(self.table, self.assigned)

    # -- the group's callbacks ------------------------------------------------------------------------
    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        mine = {tp.partition for tp in partitions if tp.topic == self.input_topic}
        if not mine:
            return
        try:
            # offsets first: with require_stable this waits out a pending transactional offset commit of
            # the previous owner, so the state read next matches the offsets we will start from
            committed = consumer.committed(partitions, timeout=self.state.timeout)
        except KafkaException as exc:
            self.fatal = FatalKafkaError(
                f"the group's committed offsets of partitions {sorted(mine)} could not be read within "
                f"{self.state.timeout:g} s ({exc.args[0] if exc.args else exc}): a transaction of the "
                "previous owner is still open (it is aborted once its transaction.timeout.ms passes) or "
                "was left hanging (`kafka-transactions.sh find-hanging`, then `abort`); exiting so the "
                "next start tries again")
            return
        try:
            began = time.monotonic()
            devices, records = self.state.restore(self.table, mine)
        except Exception as exc:
            self.fatal = exc
            return
        self.assigned |= mine
        self.metrics.assigned.set(len(self.assigned))
        self.metrics.restored_devices.inc(devices)
        self.metrics.restored_records.inc(records)
        log.info("partitions assigned, dedup state restored", extra={
            "partitions": ",".join(map(str, sorted(mine))),
            "offsets": ",".join(f"{tp.partition}:{tp.offset}" for tp in committed),
            "devices": devices, "state_records": records,
            "seconds": round(time.monotonic() - began, 3)})

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions if tp.topic == self.input_topic}
        try:
            self.checkpoint.commit()
        except AbortNeeded as exc:
            self.checkpoint.abort("revoke")
            self.needs_rewind = True
            log.warning("commit on revoke failed, aborted", extra={"error": str(exc)})
        except FatalKafkaError as exc:
            self.fatal = exc
        self._forget(gone, "revoked")

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions if tp.topic == self.input_topic}
        try:
            self.checkpoint.abort("lost")
        except (AbortNeeded, FatalKafkaError) as exc:
            self.fatal = exc
        self.needs_rewind = True
        self._forget(gone, "lost")

    def _forget(self, gone: set[int], why: str) -> None:
        self.assigned -= gone
        dropped = self.table.drop_partitions(gone)
        self.metrics.assigned.set(len(self.assigned))
        for p in gone:
            with contextlib.suppress(KeyError):  # never reported
                self.metrics.lag.remove(str(p))
        log.info(f"partitions {why}",
                 extra={"partitions": ",".join(map(str, sorted(gone))), "devices": dropped})

    # -- lag ------------------------------------------------------------------------------------------
    def report_lag(self) -> None:
        """The lag gauge of each assigned partition, at most every 5 s."""
        now = time.monotonic()
        if now < self._next_lag or not self.assigned:
            return
        self._next_lag = now + 5.0
        try:
            for tp in self.consumer.position([TopicPartition(self.input_topic, p) for p in self.assigned]):
                # cached: the high watermark of the last fetch response, so that the lag report never
                # waits on a broker round trip inside the processing loop
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0:
                    self.metrics.lag.labels(str(tp.partition)).set(max(0, high - tp.offset))
        except Exception:  # lag is advisory; a slow broker must not stop processing
            log.debug("lag report failed", exc_info=True)
