"""Receipts, bridge side: which seqs of which device Kafka has confirmed, gathered and sent back.

Every delivery report of an event record (``iot.events.raw``), or of the dead letter that replaced one,
tells :meth:`ReceiptBook.confirm` its device, epoch and seq. The book coalesces them into ranges per
(device, epoch); every ``receipt_interval`` seconds :meth:`ReceiptBook.take` hands out everything
gathered as receipt messages (:mod:`edgebridge.receipts`), so a device gets at most one receipt per
interval per epoch, whatever its rate. :meth:`ReceiptBook.due` hands out at most ``room`` receipts at
a time (the caller's bound on receipts not yet PUBACKed); the rest of an interval's wait in the book's
queue and go in later turns as PUBACKs make room, not an interval later. What cannot be published
(MQTT down) is handed back with :meth:`ReceiptBook.give_back`; at the next interval whatever still waits
is merged back into the ranges first, so the queue never holds more than one receipt per (device,
epoch) and range chunk.

Only a delivery report adds to the book: a receipt is never sent for what Kafka has not confirmed.

Bounded: the book holds what was confirmed since the last interval, and Kafka confirms only what the
bridge took within its window; kept ranges merge when contiguous (a device's records share a
partition, so they are confirmed in order and almost always extend the last range).
"""

from __future__ import annotations

import collections
import time

from edgebridge.receipts import MAX_RANGES, encode_receipt, merge_ranges
from edgebridge.topics import receipts_topic

__all__ = ["Receipt", "ReceiptBook"]

# (mqtt topic, payload, (device key, epoch, the ranges it covers))
Receipt = tuple[str, bytes, tuple[bytes, str, list[tuple[int, int]]]]


class ReceiptBook:
    def __init__(self, prefix: str, interval: float) -> None:
        self._prefix = prefix
        self._interval = interval
        self._due = time.monotonic() + interval
        # (device key as Kafka has it, epoch) -> ranges [first, last], in confirmation order
        self._pending: dict[tuple[bytes, str], list[list[int]]] = {}
        self._topics: dict[bytes, str] = {}
        self._queue: collections.deque[Receipt] = collections.deque()  # encoded, waiting for room
        self.deferred = 0  # receipts that waited a whole interval for room (merged back, sent later)

    def __len__(self) -> int:
        """(device, epoch) pairs with something to receipt, and receipts waiting for room."""
        return len(self._pending) + len(self._queue)

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

    def due(self, now: float, room: int) -> list[Receipt]:
        """Up to ``room`` receipts to publish now: ``(mqtt topic, payload, (key, epoch, ranges))``.
        When the interval has passed, everything confirmed since the last one joins the queue."""
        if now >= self._due and (self._pending or self._queue):
            self._due = now + self._interval
            self._encode()
        if room <= 0 or not self._queue:
            return []
        if room >= len(self._queue):
            out, self._queue = list(self._queue), collections.deque()
            return out
        return [self._queue.popleft() for _ in range(room)]

    @property
    def queued(self) -> int:
        """Receipts encoded and waiting for room."""
        return len(self._queue)

    def _encode(self) -> None:
        """Merge what still waits back into the ranges (one receipt per device and epoch, not one per
        interval), then encode everything into the queue and start the book over."""
        self.deferred += len(self._queue)
        for _, _, (key, epoch, ranges) in self._queue:
            self.give_back(key, epoch, ranges)
        self._queue.clear()
        pending, self._pending = self._pending, {}
        queue = self._queue
        for (key, epoch), raw in pending.items():
            topic = self._topics.get(key)
            if topic is None:
                if len(self._topics) >= 100_000:
                    self._topics.clear()
                topic = self._topics[key] = receipts_topic(key.decode(), self._prefix)
            ranges = merge_ranges(raw)
            for i in range(0, len(ranges), MAX_RANGES):
                part = ranges[i : i + MAX_RANGES]
                queue.append((topic, encode_receipt(key.decode(), epoch, part), (key, epoch, part)))

    def give_back(self, key: bytes, epoch: str, ranges: list[tuple[int, int]]) -> None:
        """A receipt that could not be published: send it with the next interval."""
        self._pending.setdefault((key, epoch), []).extend([a, b] for a, b in ranges)
