"""The forwarder: committed outbox rows to MQTT QoS 1, and the two-stage acknowledgment that frees them.

Delivery guarantee (at least once, end to end). A row leaves the outbox only when a *receipt* says
Kafka holds it (:mod:`edgebridge.receipts`: the bridge publishes, per device and epoch, the seq ranges
Kafka confirmed). The broker's PUBACK is flow control only: it frees a slot of the window and starts
the row's receipt timer, but a broker that acknowledged a message can still lose it (no subscriber yet,
a crash inside its autosave interval, a full queue), so the row stays. Each message goes through::

    published --PUBACK--> awaiting receipt --receipt--> done (deleted at the next group commit)
        ^                       |
        +--- receipt_timeout ---+   (resent, oldest first; the timeout doubles per resend, capped)

- after a reconnect, what was published and not PUBACKed is sent again at once;
- a receipt also resets the grown timeouts of older rows to ``receipt_timeout``: the path works again,
  so what was lost during an outage is resent promptly instead of after the capped backoff;
- at most ``max_unreceipted`` events are published and not yet receipted: at the bound no new row is
  sent (resends still are), so during a Kafka outage the backlog stays on the device's disk and the
  broker holds a bounded amount;
- a receipt for another device, another epoch, or seqs above any assigned is counted and ignored;
- after a restart everything in the outbox counts as unsent and goes again.

Duplicates are possible (a resend of what Kafka had, whose receipt was late or lost) and allowed: the
enricher dedups on (device, epoch, seq). Gaps are not.

``receipts = "off"`` (a broker or bridge that cannot send receipts) keeps the weaker PUBACK semantics:
a row is deleted on its PUBACK, and whatever the broker then loses is lost.

Order. New rows go strictly in the outbox's seq order, on one connection, backlog and live alike;
resends of lost rows come later than the rows after them (the enricher marks them late, never drops
them). With ``batch = true`` (or ``catchup_batch_after`` in single-event mode) a backlog leaves in
batches of up to ``batch_max_events`` events.

Wire shape. Single-event mode: one ``application/cloudevents+json`` event per message, with the event
id and seq as MQTT 5 user properties (``eventid``, ``seq``). Batch mode: a CloudEvents JSON batch
(``application/cloudevents-batch+json``) of up to ``batch_max_events`` events or ``batch_max_bytes``.

State (all in memory, bounded by ``window`` and ``max_unreceipted``): ``_inflight`` (message id ->
its seq range, awaiting PUBACK), ``_awaiting`` (PUBACKed seq ranges with their receipt deadline,
merged when contiguous), ``_resend`` (ranges due to go again) and ``_done`` (ranges for the next
commit to delete).
"""

from __future__ import annotations

import collections
import logging
import random
import time

from edge_agent.config import ForwarderConfig
from edge_agent.mqtt_link import MqttLink
from edge_agent.outbox import Outbox, Row
from edgebridge.envelope import BATCH_CONTENT_TYPE, CONTENT_TYPE
from edgebridge.errors import EnvelopeError
from edgebridge.logs import rate_limited
from edgebridge.receipts import decode_receipt

__all__ = ["Forwarder", "ForwarderStats"]

log = logging.getLogger(__name__)

_SCAN_EVERY = 0.1  # seconds between scans of the receipt deadlines
_MERGE_WITHIN = 1.0  # PUBACKed ranges whose deadlines are this close merge into one (bounded state)


class ForwarderStats:
    __slots__ = (
        "acked_events",
        "acked_messages",
        "last_receipt",
        "published_events",
        "published_messages",
        "receipted_events",
        "receipts",
        "receipts_ignored",
        "refused",
        "resends",
        "resent_events",
    )

    def __init__(self) -> None:
        self.published_messages = 0
        self.published_events = 0
        self.acked_messages = 0
        self.acked_events = 0
        self.refused = 0  # PUBACKs with a failure reason code (e.g. not authorised)
        self.resends = 0  # times rows went again: a reconnect with messages in flight, a receipt timeout
        self.resent_events = 0
        self.receipts = 0  # receipts of ours, applied
        self.receipted_events = 0  # seqs they covered that we still held
        self.receipts_ignored = 0  # not ours: another device or epoch, malformed, or naming unknown seqs
        self.last_receipt = 0.0  # wall clock of the last receipt applied (0: none yet)


class Forwarder:
    def __init__(self, link: MqttLink, config: ForwarderConfig, events_topic: str, deviceid: str) -> None:
        self.link = link
        self.config = config
        self.topic = events_topic
        self.deviceid = deviceid
        self.stats = ForwarderStats()
        self.receipts = config.receipts == "on"
        self._generation = 0
        self._next_seq = 1
        # Every range published and not receipted is in exactly one of these three (its seqs counted
        # in _unreceipted), as a list [first, last, ...]:
        # mid -> [first, last, events (-1: receipted before its PUBACK), resends so far, since]
        self._inflight: dict[int, list[float]] = {}
        # PUBACKed: [first, last, deadline, resends so far, since], in PUBACK order
        self._awaiting: collections.deque[list[float]] = collections.deque()
        # due to go again: [first, last, resends so far, since]
        self._resend: collections.deque[list[float]] = collections.deque()
        self._unreceipted = 0
        self._done: list[tuple[int, int]] = []
        self._scan_at = 0.0

    # -- what the agent loop reads -------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        """Messages published and not yet PUBACKed."""
        return len(self._inflight)

    @property
    def unreceipted(self) -> int:
        """Seqs published and not yet receipted (a range's holes included): at most ``max_unreceipted``."""
        return self._unreceipted

    @property
    def blocked(self) -> bool:
        """No new row may go: the window is full, or ``max_unreceipted`` seqs await their receipt."""
        return len(self._inflight) >= self.config.window or self._unreceipted >= self.config.max_unreceipted

    @property
    def next_seq(self) -> int:
        """The seq the next new publish starts from."""
        return self._next_seq

    def start_from(self, outbox: Outbox) -> None:
        """Start at the lowest seq still in the outbox: after a restart everything there counts as unsent."""
        head = outbox.head()
        self._next_seq = head if head is not None else outbox.last_seq + 1

    def oldest_unreceipted_age(self, now: float) -> float | None:
        """Seconds since the oldest seq not yet receipted was first published (``None``: none is)."""
        since = [e[4] for e in self._awaiting] + [e[3] for e in self._resend]
        since += [e[4] for e in self._inflight.values() if e[2] >= 0]
        return max(0.0, now - min(since)) if since else None

    # -- the ack cycle ---------------------------------------------------------------------------------

    def collect(self, outbox: Outbox) -> None:
        """Take the link's PUBACKs and receipts: PUBACKed rows start waiting for their receipt (or, with
        receipts off, are done); receipted rows are done."""
        acks = self.link.acks
        if acks:
            now = time.monotonic()
            while acks:
                generation, mid, ok = acks.popleft()
                if generation == self._generation:
                    self._puback(mid, ok, now)
        receipts = self.link.receipts
        while receipts:
            self._receipt(receipts.popleft(), outbox)

    @property
    def has_done(self) -> bool:
        """Receipted ranges wait for :meth:`take_done` (the agent's next commit deletes them)."""
        return bool(self._done)

    def take_done(self) -> list[tuple[int, int]]:
        """The seq ranges the next group commit deletes (receipted; PUBACKed with receipts off)."""
        done, self._done = self._done, []
        return done

    def _puback(self, mid: int, ok: bool, now: float) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return  # our own status message, or a command reply
        first, last, events, resends, since = entry
        if events < 0:
            return  # receipted before its PUBACK: settled already
        if not ok:
            # The broker refused the message (ACL, quota): keep the rows, reconnect, send them again.
            self.stats.refused += 1
            log.error("broker refused a message; reconnecting", extra={"first": first, "last": last})
            self._resend.append([first, last, resends, since])
            self.link.reconnect()
            return
        self.stats.acked_messages += 1
        self.stats.acked_events += int(events)
        if not self.receipts:
            self._unreceipted -= int(last - first) + 1
            self._finish(int(first), int(last))
            return
        deadline = now + self._timeout(int(resends))
        tail = self._awaiting[-1] if self._awaiting else None
        if (tail is not None and tail[1] + 1 == first and tail[3] == resends
                and deadline - tail[2] < _MERGE_WITHIN):
            tail[1] = last  # contiguous and due together: one range (the state stays a few entries)
        else:
            self._awaiting.append([first, last, deadline, resends, since])

    def _finish(self, first: int, last: int) -> None:
        done = self._done
        if done and done[-1][1] + 1 == first:
            done[-1] = (done[-1][0], last)
        else:
            done.append((first, last))

    def _receipt(self, payload: bytes, outbox: Outbox) -> None:
        try:
            receipt = decode_receipt(payload)
        except EnvelopeError as exc:
            self.stats.receipts_ignored += 1
            rate_limited(log, "bad-receipt", 60.0).warning("malformed receipt ignored",
                                                           extra={"error": str(exc)})
            return
        if receipt.deviceid != self.deviceid or receipt.epoch != outbox.epoch:
            self.stats.receipts_ignored += 1
            rate_limited(log, "foreign-receipt", 60.0).warning(
                "receipt of another device or epoch ignored",
                extra={"device": receipt.deviceid, "epoch": receipt.epoch, "ours": outbox.epoch})
            return
        top = outbox.last_seq
        if receipt.ranges[-1][1] > top:
            self.stats.receipts_ignored += 1  # seqs never assigned: ignored; the rest of it applies
            rate_limited(log, "unknown-seqs", 60.0).warning(
                "receipt names seqs never assigned; those are ignored",
                extra={"last": receipt.ranges[-1][1], "last_seq": top})
        covered = 0
        for first, last in receipt.ranges:
            if first > top:
                break
            last = min(last, top)
            covered += self._settle(first, last)
            self._finish(first, last)  # rows published by an earlier run are in Kafka too: delete them
        self.stats.receipts += 1
        self.stats.receipted_events += covered
        self.stats.last_receipt = time.time()
        # The path works again: ranges whose timeout grew during an outage are due soon, not in minutes.
        soon = time.monotonic() + self.config.receipt_timeout
        for entry in self._awaiting:
            if entry[2] > soon:
                entry[2] = soon

    def _settle(self, first: int, last: int) -> int:
        """Take ``first..last`` out of every range still tracked; return the seqs taken."""
        removed = 0
        for queue in (self._awaiting, self._resend):
            if not queue or not any(e[0] <= last and e[1] >= first for e in queue):
                continue
            kept: collections.deque[list[float]] = collections.deque()
            for entry in queue:
                a, b = entry[0], entry[1]
                if b < first or a > last:
                    kept.append(entry)
                    continue
                removed += int(min(b, last) - max(a, first)) + 1
                if a < first:
                    kept.append([a, first - 1, *entry[2:]])
                if b > last:
                    kept.append([last + 1, b, *entry[2:]])
            queue.clear()
            queue.extend(kept)
        for entry in self._inflight.values():
            if first <= entry[0] and entry[1] <= last and entry[2] >= 0:
                removed += int(entry[1] - entry[0]) + 1
                entry[2] = -1
        self._unreceipted -= removed
        return removed

    def _timeout(self, resends: int) -> float:
        c = self.config
        jitter = 1.0 + 0.25 * random.random()  # resends of many devices after one outage spread out
        return min(c.receipt_timeout * 2**resends, c.receipt_timeout_max) * jitter

    # -- publishing ------------------------------------------------------------------------------------

    def pump(self, outbox: Outbox) -> int:
        """Resend what is due, then publish new committed rows while the window and the bound allow;
        return the messages published."""
        generation = self.link.generation
        if generation != self._generation:
            self._reconnected(generation)
        if self.link.current is None:
            return 0
        now = time.monotonic()
        if self._awaiting and now >= self._scan_at:
            self._scan_at = now + _SCAN_EVERY
            self._expire(now)
        sent = self._send_resends(outbox, now) if self._resend else 0
        if not self._resend:
            sent += self._fill_window(outbox, now)
        return sent

    def _reconnected(self, generation: int) -> None:
        """A new connection: what was published and not PUBACKed goes again, first."""
        self._generation = generation
        if not self._inflight:
            return
        self.stats.resends += 1
        for first, last, events, resends, since in sorted(self._inflight.values()):
            if events >= 0:
                self._resend.append([first, last, resends, since])
        self._inflight.clear()

    def _expire(self, now: float) -> None:
        """Ranges whose receipt is overdue go to the resend queue, oldest first."""
        if not any(e[2] <= now for e in self._awaiting):
            return
        due = sorted(e for e in self._awaiting if e[2] <= now)
        self._awaiting = collections.deque(e for e in self._awaiting if e[2] > now)
        self.stats.resends += 1
        for first, last, _deadline, resends, since in due:
            self._resend.append([first, last, resends + 1, since])
        rate_limited(log, "receipt-timeout", 30.0).warning(
            "no receipt in time: sending again", extra={"first": int(due[0][0]), "ranges": len(due)})

    def _send_resends(self, outbox: Outbox, now: float) -> int:
        sent = 0
        window = self.config.window
        per = self.config.batch_max_events if self.config.batch else 1
        while self._resend and len(self._inflight) < window:
            entry = self._resend[0]
            first, last = int(entry[0]), int(entry[1])
            resends, since = int(entry[2]), entry[3]
            limit = min(last - first + 1, per * (window - len(self._inflight)))
            rows = [r for r in outbox.read(first, limit) if r.seq <= last]
            if not rows:  # deleted meanwhile (evicted, or receipted): nothing of it is left to send
                self._resend.popleft()
                self._unreceipted -= last - first + 1
                continue
            ok, count, span = self._send(rows, resends, since)
            sent += count
            if count:
                upto = self._last_published()
                self.stats.resent_events += upto - first + 1
                # [first, last] became the published ranges (span seqs) plus what is left of it
                left = last - upto if upto < last else 0
                self._unreceipted += span + left - (last - first + 1)
                if left:
                    entry[0] = upto + 1
                else:
                    self._resend.popleft()
            if not ok:
                break
        return sent

    def _fill_window(self, outbox: Outbox, now: float) -> int:
        sent = 0
        window, bound = self.config.window, self.config.max_unreceipted
        while len(self._inflight) < window and self._unreceipted < bound:
            batch = self.config.batch or (
                self.config.catchup_batch_after > 0
                and outbox.last_seq - self._next_seq >= self.config.catchup_batch_after
            )
            free = window - len(self._inflight)
            want = min((self.config.batch_max_events if batch else 1) * free, bound - self._unreceipted)
            rows = outbox.read(self._next_seq, want)
            if not rows:
                break
            ok, count, span = self._send(rows, 0, now, batch)
            sent += count
            if count:
                self._unreceipted += span
                self._next_seq = self._last_published() + 1
            if not ok:
                break
        return sent

    def _last_published(self) -> int:
        """The last seq of the latest message published (dicts keep insertion order)."""
        return int(next(reversed(self._inflight.values()))[1])

    def _send(
        self, rows: list[Row], resends: int, since: float, batch: bool | None = None
    ) -> tuple[bool, int, int]:
        """Publish ``rows`` in order (batches, or one per message); ``(all sent, messages, seqs spanned
        by the messages published)``; each published message is in ``_inflight``."""
        if batch if batch is not None else self.config.batch:
            return self._send_batches(rows, resends, since)
        return self._send_single(rows, resends, since)

    def _send_single(self, rows: list[Row], resends: int, since: float) -> tuple[bool, int, int]:
        sent = 0
        inflight, publish, topic = self._inflight, self.link.publish, self.topic
        for row in rows:
            user = [("eventid", row.eventid), ("seq", str(row.seq))]
            result = publish(topic, row.payload, user=user, content_type=CONTENT_TYPE)
            if result is None:
                break
            inflight[result[1]] = [row.seq, row.seq, 1, resends, since]
            sent += 1
        self.stats.published_messages += sent
        self.stats.published_events += sent
        return sent == len(rows), sent, sent

    def _send_batches(self, rows: list[Row], resends: int, since: float) -> tuple[bool, int, int]:
        max_events, max_bytes = self.config.batch_max_events, self.config.batch_max_bytes
        sent = span = 0
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
                return False, sent, span
            first, last = rows[i].seq, rows[j - 1].seq
            self._inflight[result[1]] = [first, last, j - i, resends, since]
            span += last - first + 1
            self.stats.published_messages += 1
            self.stats.published_events += j - i
            sent += 1
            i = j
        return True, sent, span
