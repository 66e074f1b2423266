"""Restoring keyed state from a compacted state topic on partition assignment: the enricher's dedup state
(``iot.enricher.state``), the aggregator's windows (``iot.aggregates.state``).

Raw partition ``p`` owns state partition ``p`` (see :mod:`enricher.dedup`), so a restore reads only the
state partitions of the raw partitions just assigned, from the beginning to their end, ``read_committed``:
the state of every committed transaction, none of an aborted or open one. Compaction keeps that to about
one record per device.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from edgebridge.kafka_ids import ENRICHER_STATE_READER_GROUP
from enricher.checkpoint import FatalKafkaError

__all__ = ["STATE_READER_GROUP", "StateStore", "StateTable"]

log = logging.getLogger(__name__)
# the group.id librdkafka requires of this reader (assigned, never committed): kafka_acls grants it
STATE_READER_GROUP = ENRICHER_STATE_READER_GROUP


class StateTable(Protocol):
    """Per-key state of the assigned partitions, written in the transactions (:mod:`enricher.checkpoint`)
    and restored from the state topic: :class:`enricher.dedup.DedupTable`,
    :class:`enricher.aggregates.table.WindowTable`."""

    def dirty(self) -> Sequence[tuple[int, str, bytes | None]]:
        """(state partition, key, state bytes) of every key changed since :meth:`clean`; ``None``: the key
        is deleted (a tombstone, e.g. an idle device the aggregator forgot)."""
        ...

    def clean(self) -> None: ...

    def load(self, partition: int, key: str, payload: bytes | None, record_ms: int = 0) -> None:
        """Restore one state record (``None``: a tombstone); ``record_ms``: its Kafka timestamp."""
        ...

    def drop_partitions(self, partitions: set[int]) -> int:
        """Forget the keys of ``partitions`` (revoked, lost, or before a restore); returns how many."""
        ...

    def open_gaps(self) -> int:
        """The open seq gaps the table knows of, for the gauge after a commit (0 where there are none)."""
        ...


class StateStore:
    def __init__(self, consumer_config: Mapping[str, Any], topic: str, timeout: float,
                 group: str = STATE_READER_GROUP) -> None:
        self.topic = topic
        self.timeout = timeout
        self._consumer = Consumer({
            **consumer_config,
            "group.id": group,  # never used to commit
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,  # reading to the end: do not let the broker sit on an empty fetch
            "isolation.level": "read_committed",
        })

    def partitions(self) -> int:
        meta = self._consumer.list_topics(self.topic, timeout=10)
        tmeta = meta.topics.get(self.topic)
        if tmeta is None or tmeta.error is not None:
            return 0
        return len(tmeta.partitions)

    def restore(self, table: StateTable, partitions: Iterable[int]) -> tuple[int, int]:
        """Load the state of ``partitions`` into ``table``; returns (keys, records read)."""
        wanted = sorted(set(partitions))
        if not wanted:
            return 0, 0
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in wanted])
        pending = set(wanted)
        devices: set[str] = set()
        records = 0
        deadline = time.monotonic() + self.timeout
        try:
            while pending:
                if time.monotonic() > deadline:
                    raise FatalKafkaError(f"state partitions {sorted(pending)} of {self.topic} not read to "
                                          f"their end in {self.timeout:.0f}s")
                # a short wait: consume() returns early only with a full batch, and the end is near
                for msg in self._consumer.consume(5000, 0.05):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            pending.discard(msg.partition())
                        else:
                            log.warning("state read error", extra={"error": str(err)})
                        continue
                    key = msg.key()
                    if key is None:
                        continue
                    deviceid = key.decode()
                    _, record_ms = msg.timestamp()  # a state record before epochs: when it was last seen
                    table.load(msg.partition() or 0, deviceid, msg.value(), max(record_ms, 0))
                    records += 1
                    if msg.value() is None:
                        devices.discard(deviceid)
                    else:
                        devices.add(deviceid)
        finally:
            self._consumer.unassign()
        return len(devices), records

    def serve(self) -> None:
        """Serve the idle consumer's events (its log lines, see edgebridge.kafka_log) between restores."""
        self._consumer.poll(0)

    def close(self) -> None:
        self._consumer.close()
