"""Per (device, epoch) accounting of events: what arrived, what twice, what is missing, what is explained.

The arithmetic of guarantees 1 and 2, in one place for ``edgebridge audit``, ``edgebridge simulate
audit`` and the demo. For every device and every epoch of it (one life of its outbox: a device whose
state dir is wiped starts a new epoch with seqs from 1 again; events without the attribute are the
legacy epoch ``""``), each seq from the first expected one up to the highest must be present or inside
a range announced by an ``edgebridge.gap.v1`` event of that epoch; a seq present more than once is a
duplicate (allowed in ``iot.events.raw``, at-least-once upstream; a failure in ``iot.events.processed``).

Streaming, in bounded memory: an epoch keeps its counts, its first and last event time and two
:class:`~edgebridge.ops.seqset.SeqSet` (seen, announced), whose size grows with the holes, not the events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson

from edgebridge._validate import MAX_SEQ
from edgebridge.envelope import GAP_TYPE, parse_time, rfc3339_ms
from edgebridge.errors import EnvelopeError
from edgebridge.ops.seqset import SeqSet, uncovered

__all__ = ["DeviceAudit", "EpochTally", "EventKey", "Tally", "audit_records", "decode"]

Ranges = list[tuple[int, int]]
_CANONICAL_TIME_LENGTH = len("2026-12-06T01:50:12.345Z")  # what the agent writes: compared as text


def _time_key(text: object) -> str | None:
    """An event's ``time`` as text that sorts in time order: ours as is, another RFC 3339 form turned
    into ours, anything else ``None`` (left out of first/last rather than failing the audit)."""
    if not isinstance(text, str):
        return None
    if len(text) == _CANONICAL_TIME_LENGTH and text[-1] == "Z":
        return text
    try:
        when = parse_time(text)  # the envelope's rule: what its decoder accepted, nothing looser
    except EnvelopeError:
        return None
    return rfc3339_ms(int(when.timestamp() * 1000))


class EventKey(NamedTuple):
    """What the audit reads of an event: whose, which life, which seq, when, and a gap's range."""

    device: str
    epoch: str
    seq: int
    time: str | None
    gap: tuple[int, int] | None  # an edgebridge.gap.v1's first..last


def decode(value: bytes | None) -> EventKey | None:
    """The :class:`EventKey` of a record's value; ``None`` for anything that is not an event of ours."""
    try:
        event = orjson.loads(value or b"")
        device, seq, epoch = event["deviceid"], event["seq"], event.get("epoch") or ""
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
    # the envelope's bounds on seq (what the bridge accepts): a SeqSet holds 64-bit seqs
    if not (isinstance(device, str) and type(seq) is int and 1 <= seq <= MAX_SEQ and isinstance(epoch, str)):
        return None
    gap = None
    if event.get("type") == GAP_TYPE:
        data = event.get("data")
        first, last = (data.get("first"), data.get("last")) if isinstance(data, dict) else (None, None)
        if type(first) is int and type(last) is int and 1 <= first <= last <= MAX_SEQ:
            gap = (first, last)
    return EventKey(device, epoch, seq, _time_key(event.get("time")), gap)


@dataclass(slots=True)
class EpochTally:
    """One epoch of one device, as it streams by."""

    device: str
    epoch: str
    events: int = 0
    duplicates: int = 0
    seen: SeqSet = field(default_factory=SeqSet)
    announced: SeqSet = field(default_factory=SeqSet)  # what gap events said was lost
    first_time: str | None = None
    last_time: str | None = None

    def add(self, seq: int, time: str | None = None) -> bool:
        """One event; False when its seq was already there (a duplicate)."""
        self.events += 1
        new = self.seen.add(seq)
        if not new:
            self.duplicates += 1
        if time is not None:
            if self.first_time is None or time < self.first_time:
                self.first_time = time
            if self.last_time is None or time > self.last_time:
                self.last_time = time
        return new

    def announce(self, first: int, last: int) -> None:
        self.announced.add_range(first, last)

    def missing(self, low: int = 1, high: int | None = None) -> Ranges:
        """The unexplained holes of ``low..high`` (default: up to the highest seq seen or announced)."""
        top = max(self.seen.high, self.announced.high) if high is None else high
        return uncovered(low, top, self.seen, self.announced)


@dataclass
class DeviceAudit:
    """What the audit says of one epoch of one device (``epoch`` ``""``: events without the attribute)."""

    device: str
    epoch: str = ""
    records: int = 0
    distinct: int = 0
    duplicates: int = 0
    max_seq: int = 0
    announced: Ranges = field(default_factory=list)  # gap ranges, inclusive
    missing: Ranges = field(default_factory=list)  # unexplained holes, inclusive
    first_time: str | None = None
    last_time: str | None = None

    @property
    def complete(self) -> bool:
        return not self.missing


class Tally:
    """Every (device, epoch) of a stream of event payloads, by device then by its lives in order."""

    def __init__(self) -> None:
        self.epochs: dict[tuple[str, str], EpochTally] = {}
        self.latest: dict[str, str] = {}  # device -> the epoch of its last record: its current life
        self.records = 0
        self.undecodable = 0  # not an event of ours (not JSON, no deviceid or seq): counted, skipped

    def add_value(self, value: bytes | None) -> EpochTally | None:
        """One record's value (a single event, as the bridge and the enricher write them)."""
        self.records += 1
        event = decode(value)
        if event is None:
            self.undecodable += 1
            return None
        tally = self.add(event.device, event.epoch, event.seq, event.time)
        if event.gap is not None:
            tally.announce(*event.gap)
        return tally

    def add(self, device: str, epoch: str, seq: int, time: str | None = None) -> EpochTally:
        key = (device, epoch)
        tally = self.epochs.get(key)
        if tally is None:
            tally = self.epochs[key] = EpochTally(device, epoch)
        tally.add(seq, time)
        self.latest[device] = epoch
        return tally

    def report(self, expected_max: Mapping[str, int] | None = None, from_one: bool = True) -> dict[
            tuple[str, str], DeviceAudit]:
        """:class:`DeviceAudit` per (device, epoch), by device then its epochs in the order of their first
        record (a device's records share a partition, so that is the order of its lives).

        ``from_one``: holes are counted from seq 1 (the whole topic was read); otherwise from each
        epoch's lowest seq (a time range or an offset starts in the middle of every device's life).
        ``expected_max`` names the last seq each device is known to have produced in its latest epoch (the
        epoch of its last record): short of it, the tail is missing; a device with no record at all is
        reported under the legacy epoch ``""``.
        """
        order = {key: i for i, key in enumerate(self.epochs)}
        expected = {(d, self.latest.get(d, "")): n for d, n in (expected_max or {}).items()}
        out = {}
        for key in sorted(set(self.epochs) | set(expected), key=lambda k: (k[0], order.get(k, len(order)))):
            tally = self.epochs.get(key) or EpochTally(*key)
            top = max(tally.seen.high, tally.announced.high, expected.get(key, 0))
            low = 1 if from_one else min(x for x in (tally.seen.low, tally.announced.low, top) if x)
            out[key] = DeviceAudit(
                device=key[0], epoch=key[1], records=tally.events, distinct=len(tally.seen),
                duplicates=tally.duplicates, max_seq=top, announced=tally.announced.ranges(),
                missing=tally.missing(low, top) if top else [], first_time=tally.first_time,
                last_time=tally.last_time,
            )
        return out


def audit_records(values: Iterable[bytes], expected_max: Mapping[str, int] | None = None) -> dict[
        tuple[str, str], DeviceAudit]:
    """:meth:`Tally.report` of event payloads read whole (the demo's, the tests')."""
    tally = Tally()
    for value in values:
        tally.add_value(value)
    return tally.report(expected_max)
