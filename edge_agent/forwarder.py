"""The forwarder: committed outbox rows to MQTT QoS 1, in seq order, through a bounded window.

Delivery guarantee (at least once). A row leaves the outbox only after the broker's PUBACK for the
message that carried it: :meth:`Forwarder.take_acked` hands the acked seq ranges to the next group
commit, which deletes them. After any reconnect (a new ``generation`` of the link) everything in flight
is forgotten and publishing restarts from the lowest seq still in the outbox, so whatever was in
flight is sent again: duplicates are possible (and allowed: the enricher dedups on (device id, seq)),
gaps are not. The same holds across a restart of the process.

Order. Strictly the outbox's seq order, on one connection, for backlog and live events alike: a
long backlog is not overtaken by live data (guarantee 3: order is kept up to Kafka). Live data is
not starved because draining is much faster than producing: with ``batch = true`` (or
``catchup_batch_after`` in single-event mode) a backlog leaves in batches of up to
``batch_max_events`` events, so live events wait behind it only for backlog / drain rate.

Wire shape. Single-event mode: one ``application/cloudevents+json`` event per message, with the event
id and seq as MQTT 5 user properties (``eventid``, ``seq``). Batch mode: a CloudEvents JSON batch
(``application/cloudevents-batch+json``) of up to ``batch_max_events`` events or ``batch_max_bytes``.
"""

from __future__ import annotations

import logging

from edge_agent.config import ForwarderConfig
from edge_agent.mqtt_link import MqttLink
from edge_agent.outbox import Outbox, Row
from edgebridge.envelope import BATCH_CONTENT_TYPE, CONTENT_TYPE

__all__ = ["Forwarder", "ForwarderStats"]

log = logging.getLogger(__name__)


class ForwarderStats:
    __slots__ = (
        "acked_events",
        "acked_messages",
        "published_events",
        "published_messages",
        "refused",
        "resends",
    )

    def __init__(self) -> None:
        self.published_messages = 0
        self.published_events = 0
        self.acked_messages = 0
        self.acked_events = 0
        self.refused = 0  # PUBACKs with a failure reason code (e.g. not authorised)
        self.resends = 0  # times the cursor went back to the lowest un-acked seq


class Forwarder:
    def __init__(self, link: MqttLink, config: ForwarderConfig, events_topic: str) -> None:
        self.link = link
        self.config = config
        self.topic = events_topic
        self.stats = ForwarderStats()
        self._generation = 0
        self._inflight: dict[int, tuple[int, int, int]] = {}  # mid -> (first seq, last seq, events)
        self._next_seq = 1
        self._acked: list[tuple[int, int]] = []

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def next_seq(self) -> int:
        """The seq the next publish starts from."""
        return self._next_seq

    def pump(self, outbox: Outbox) -> int:
        """Publish committed rows until the window is full or the outbox is caught up; return messages."""
        generation = self.link.generation
        if generation != self._generation:
            self._restart(outbox, generation)
        if self.link.current is None:
            return 0
        return self._fill_window(outbox)

    def _fill_window(self, outbox: Outbox) -> int:
        sent = 0
        window = self.config.window
        while len(self._inflight) < window:
            batch = self.config.batch or (
                self.config.catchup_batch_after > 0
                and outbox.last_seq - self._next_seq >= self.config.catchup_batch_after
            )
            want = self.config.batch_max_events if batch else 1
            free = window - len(self._inflight)
            rows = outbox.read(self._next_seq, want * free if batch else free)
            if not rows:
                break
            if batch:
                ok, count = self._send_batches(rows)
            else:
                ok, count = self._send_single(rows)
            sent += count
            if not ok:
                break
        return sent

    def _restart(self, outbox: Outbox, generation: int) -> None:
        if self._inflight:
            self.stats.resends += 1
        self._generation = generation
        self._inflight.clear()
        head = outbox.head()
        self._next_seq = head if head is not None else outbox.last_seq + 1

    def _send_single(self, rows: list[Row]) -> tuple[bool, int]:
        sent = 0
        for row in rows:
            user = [("eventid", row.eventid), ("seq", str(row.seq))]
            result = self.link.publish(self.topic, row.payload, user=user, content_type=CONTENT_TYPE)
            if result is None:
                return False, sent
            self._inflight[result[1]] = (row.seq, row.seq, 1)
            self._next_seq = row.seq + 1
            sent += 1
        self.stats.published_messages += sent
        self.stats.published_events += sent
        return True, sent

    def _send_batches(self, rows: list[Row]) -> tuple[bool, int]:
        max_events, max_bytes = self.config.batch_max_events, self.config.batch_max_bytes
        sent = 0
        i = 0
        while i < len(rows):
            chunk = [rows[i].payload]
            size = len(rows[i].payload) + 2
            j = i + 1
            while j < len(rows) and j - i < max_events and size + len(rows[j].payload) + 1 <= max_bytes:
                chunk.append(rows[j].payload)
                size += len(rows[j].payload) + 1
                j += 1
            payload = b"[" + b",".join(chunk) + b"]"
            result = self.link.publish(self.topic, payload, content_type=BATCH_CONTENT_TYPE)
            if result is None:
                return False, sent
            self._inflight[result[1]] = (rows[i].seq, rows[j - 1].seq, j - i)
            self._next_seq = rows[j - 1].seq + 1
            self.stats.published_messages += 1
            self.stats.published_events += j - i
            sent += 1
            i = j
        return True, sent

    def collect_acks(self) -> None:
        """Move PUBACKs from the link into the acked ranges of the next commit."""
        acks = self.link.acks
        while acks:
            generation, mid, ok = acks.popleft()
            if generation != self._generation:
                continue  # an earlier connection: its messages are being resent anyway
            entry = self._inflight.pop(mid, None)
            if entry is None:
                continue  # our own status message
            if not ok:
                # The broker refused the message (ACL, quota): keep the rows, reconnect, resend later.
                self.stats.refused += 1
                log.error(
                    "broker refused a message; reconnecting", extra={"first": entry[0], "last": entry[1]}
                )
                self.link.reconnect()
                continue
            first, last, events = entry
            self.stats.acked_messages += 1
            self.stats.acked_events += events
            if self._acked and self._acked[-1][1] + 1 == first:
                self._acked[-1] = (self._acked[-1][0], last)
            else:
                self._acked.append((first, last))

    def take_acked(self) -> list[tuple[int, int]]:
        acked, self._acked = self._acked, []
        return acked
