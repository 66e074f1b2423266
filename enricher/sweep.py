"""The start-up sweep: abort, on every partition the enricher writes, whatever an earlier life of its
``transactional.id`` left open there without a marker.

Why. A transaction's outputs become visible or vanish through the markers its coordinator writes to
each partition it touched. A single-node Kafka can lose those markers: frozen past
``broker.session.timeout.ms`` (a VM paused, a swap storm), it fences itself when it wakes; if its
coordinator then rolls back a timed-out transaction of ours, it finds no leader for our partitions and
completes the abort without writing them ("Couldn't find leader endpoint ... can be skipped" in the
broker log). The partitions keep that transaction's records open under our producer id. Our next
transaction (same producer id, the epoch bumped by ``init_transactions``) then *joins* it on each such
partition, and its commit marker commits the stale records too: processed events of an aborted
transaction whose offsets were never committed, so the raw records are processed again and the
events appear twice in ``iot.events.processed``. Seen in the suite: 177 duplicates after a 30 s freeze
(``tests/e2e/test_receipts.py``, the Kafka-frozen test).

What. Before its first real transaction, the enricher opens one, writes one empty record (a key that
says what it is) to every partition of each topic it produces to, adds the group's offsets partition
(``send_offsets_to_transaction``), and aborts. An abort marker of ours closes, as aborted, whatever
our producer id had open on the partition, stale records included; with nothing open it only costs
the marker. ``read_committed`` readers (the enricher, the sinks, the audit) never see these records.
The cost: one round of produce and markers per start, a few ms per partition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from enricher.checkpoint import kafka_call, raise_classified

__all__ = ["SWEEP_KEY", "sweep"]

log = logging.getLogger(__name__)

SWEEP_KEY = b"edgebridge.enricher.sweep"  # the key of the aborted records, for a read_uncommitted reader


def sweep(producer: Producer, consumer: Consumer, partitions: Mapping[str, int], raw_topic: str,
          within: float) -> int:
    """Abort one transaction that touches every partition of ``partitions`` (topic -> count) and the
    group's offsets; returns the partitions swept. After ``init_transactions``, before anything else."""
    began = time.monotonic()
    kafka_call("begin_transaction", lambda _t: producer.begin_transaction(), within)
    swept = 0
    for topic, count in partitions.items():
        for partition in range(count):
            try:
                producer.produce(topic, b"", SWEEP_KEY, partition,
                                 headers=[("edgebridge-sweep", b"aborted at start")])
            except KafkaException as exc:
                raise_classified("produce", exc)
            swept += 1
    # the offsets partition of our group too (stale pending offsets would be committed the same way);
    # generation -1 (not joined yet): the commit itself may be refused, the partition is added anyway
    metadata = consumer.consumer_group_metadata()
    try:
        producer.send_offsets_to_transaction([TopicPartition(raw_topic, 0, 0)], metadata, within)
    except KafkaException as exc:
        log.debug("sweep: offsets not sent", extra={"error": str(exc.args[0])})
    kafka_call("abort_transaction", lambda t: producer.abort_transaction(t), within)
    log.info("start-up sweep: one aborted transaction over every partition we write", extra={
        "partitions": swept, "seconds": round(time.monotonic() - began, 3)})
    return swept
