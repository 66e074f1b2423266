"""Receipts, bridge side: which seqs of which device Kafka has confirmed, gathered and sent back.

Every delivery report of an event record (``iot.events.raw``), or of the dead letter that replaced one,
tells :meth:`ReceiptBook.confirm` its device, epoch and seq. The book coalesces them into ranges per
(device, epoch); every ``receipt_interval`` seconds :meth:`ReceiptBook.take` hands out everything
gathered as receipt messages (:mod:`edgebridge.receipts`), so a device gets at most one receipt per
interval per epoch, whatever its rate. What cannot be published now (MQTT down, paho's queue full) is
handed back with :meth:`ReceiptBook.give_back` and goes with the next interval.

Only a delivery report adds to the book: a receipt is never sent for what Kafka has not confirmed.

Bounded: the book holds what was confirmed since the last interval, and Kafka confirms only what the
bridge took within its window; kept ranges merge when contiguous (a device's records share a
partition, so they are confirmed in order and almost always extend the last range).
"""

from __future__ import annotations

import time

from edgebridge.receipts import MAX_RANGES, encode_receipt, merge_ranges
from edgebridge.topics import receipts_topic

__all__ = ["ReceiptBook"]


class ReceiptBook:
    def __init__(self, prefix: str, interval: float) -> None:
        self._prefix = prefix
        self._interval = interval
        self._due = time.monotonic() + interval
        # (device key as Kafka has it, epoch) -> ranges [first, last], in confirmation order
        self._pending: dict[tuple[bytes, str], list[list[int]]] = {}
        self._topics: dict[bytes, str] = {}

    def __len__(self) -> int:
        """(device, epoch) pairs with something to receipt."""
        return len(self._pending)

    def confirm(self, key: bytes, epoch: str, seq: int) -> None:
        """Kafka holds ``seq`` of device ``key`` (its UTF-8 id, the record key) in ``epoch``."""
        ranges = self._pending.get((key, epoch))
        if ranges is None:
            self._pending[(key, epoch)] = [[seq, seq]]
            return
        last = ranges[-1]
        if seq == last[1] + 1:
            last[1] = seq
        elif not last[0] <= seq <= last[1]:
            ranges.append([seq, seq])

    def take(self, now: float) -> list[tuple[str, bytes, tuple[bytes, str, list[tuple[int, int]]]]]:
        """When the interval has passed: ``(mqtt topic, payload, (key, epoch, ranges))`` for every
        receipt owed, and the book starts over; otherwise nothing."""
        if now < self._due or not self._pending:
            return []
        self._due = now + self._interval
        pending, self._pending = self._pending, {}
        out = []
        for (key, epoch), raw in pending.items():
            topic = self._topics.get(key)
            if topic is None:
                if len(self._topics) >= 100_000:
                    self._topics.clear()
                topic = self._topics[key] = receipts_topic(key.decode(), self._prefix)
            ranges = merge_ranges(raw)
            for i in range(0, len(ranges), MAX_RANGES):
                part = ranges[i : i + MAX_RANGES]
                out.append((topic, encode_receipt(key.decode(), epoch, part), (key, epoch, part)))
        return out

    def give_back(self, key: bytes, epoch: str, ranges: list[tuple[int, int]]) -> None:
        """A receipt that could not be published: send it with the next interval."""
        self._pending.setdefault((key, epoch), []).extend([a, b] for a, b in ranges)
