"""The event envelope: CloudEvents 1.0, JSON structured mode, and the JSON batch format.

One event on the wire (``application/cloudevents+json``)::

    {"specversion": "1.0", "id": "0190...", "source": "/devices/pump-7", "type": "edgebridge.reading.v1",
     "time": "2024-05-01T12:00:00.123Z", "deviceid": "pump-7", "seq": 42,
     "bootid": "b1", "monotime": 81234, "clocksynced": true,
     "data": {"temperature": {"v": 21.5, "u": "Cel"}, "door": {"v": false}}}

A batch (``application/cloudevents-batch+json``) is a non-empty JSON array of such objects.

Attributes. ``specversion``, ``id``, ``source``, ``type``, ``time``, ``deviceid``, ``seq`` and ``data``
are required. ``source`` is always ``/devices/{deviceid}``, so :class:`Event` stores only the device id.
``seq`` is an integer in 1..2**63-1 (a JSON ``true`` is not 1). ``epoch`` (optional) names the life of the
device's outbox: drawn at random when an outbox is created, so a device whose state was lost (a new SD
card, a reinstall) starts seqs again at 1 in a new epoch, and everything downstream keys on (device, epoch,
seq); 1..64 of ``a-z0-9-``; an event without it belongs to the legacy epoch ``""`` (agents from before
epochs, and outboxes they created). ``time`` is RFC 3339 from the device
clock; ``clocksynced: false`` says that clock is not trusted yet (no NTP sync), and then ``bootid`` plus
``monotime`` (milliseconds of the monotonic clock since that boot, an integer up to 2**63-1: wider than the
CloudEvents 32-bit Integer, which would overflow after 25 days of uptime) order the events instead.
Every other attribute (``subject``, ``datacontenttype``, a vendor's extension) is kept unchanged in
``Event.extensions``: lowercase a-z0-9 names, string, integer or boolean values. A JSON ``null`` attribute
is read as absent, as the CloudEvents JSON format says; ``data_base64`` is refused.

Data, by type:

- ``edgebridge.reading.v1``: a non-empty object ``{name: {"v": value, "u": unit}}``. A name is 1..128
  printable characters. ``v`` is a finite number (no NaN or infinity), a string or a boolean; ``u`` is a
  unit symbol of 1..32 printable characters, SenML (RFC 8428) preferred but not enforced (the enricher
  normalises with :mod:`edgebridge.units`), and may be omitted for dimensionless values, strings and
  booleans. No other keys.
- ``edgebridge.gap.v1``: ``{"first": int, "last": int, "count": int, "reason": str}`` announcing that the
  ``seq`` range [first, last] was lost (``reason``: ``evicted``, ``quarantined``, ``rejected``, ...), with
  ``1 <= first <= last < seq`` (the gap itself comes later in the device's sequence) and ``count`` equal to
  ``last - first + 1``.
- ``edgebridge.reading.processed.v1`` and any other type admitted through ``known_types``: any JSON
  object. The enricher owns the processed schema and puts the enrichment inside ``data`` (extension
  attributes can only hold scalars).

Decoding is strict and total: whatever the input, it returns events or raises
:class:`~edgebridge.errors.EnvelopeError` whose ``reason`` is one of :data:`REASONS` (and whose ``index``
is the failing position in a batch), never another exception. The rules for hostile input:

- Size: a payload over ``max_bytes`` (default 256 KiB, the bridge's MQTT message limit) is refused
  unread, and a batch of more than ``max_items`` (default 4,096) items whole (``oversized``): a valid
  batch of 256 KiB holds fewer than 2,000 events, and each refused item would become a dead letter.
- Bytes: not UTF-8, not JSON, NaN, ``Infinity``, a number beyond a double (``1e400``), a lone
  surrogate escape: ``not_json``.
- Numbers: an integer literal outside -2**63..2**64-1 is read as the nearest double (orjson does so,
  as JavaScript would); where an integer is required (``seq``, ``monotime``, gap bounds, extensions)
  that double is refused, as a reading value it is a number. ``-0.0`` is a number like any other.
- Nesting: over 1,024 levels (orjson's limit) the payload is refused whole (``too_deep``). Readings
  and gaps are flat by schema (a nested value is ``bad_data``); free-form data (processed events, any
  type admitted by ``known_types=None``) nests at most 32 levels (``too_deep``): so whatever is
  accepted can be encoded again (orjson writes 255 levels at most) and walked by any consumer.
- Strings: names, ids, units and gap reasons are printable; free text (string readings, extension
  values, free-form data) may hold any character but NUL, which PostgreSQL refuses (``bad_data``,
  ``bad_attribute``).
- Duplicate keys in one object: refused (``duplicate_key``, checked once the schema passed): orjson
  keeps the last, another parser may keep the first, and the bridge forwards a single event's bytes
  verbatim. A cheap pre-check clears the agent's payloads; see :mod:`edgebridge._duplicates`.

Encoding trusts its input: events built by :func:`new_reading`, :func:`new_gap` or a decoder are
valid, and ``encode`` does not check them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from edgebridge import _validate as v
from edgebridge._duplicates import duplicate_keys, surely_unique
from edgebridge._stamps import new_event_id, new_event_ids, now_rfc3339, rfc3339_ms
from edgebridge._validate import is_deviceid, is_epoch
from edgebridge._validate_fast import fast_attributes
from edgebridge.errors import EnvelopeError

__all__ = [
    "BATCH_CONTENT_TYPE",
    "CONTENT_TYPE",
    "DEFAULT_KNOWN_TYPES",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ITEMS",
    "DEVICE_TYPES",
    "GAP_TYPE",
    "PROCESSED_TYPE",
    "READING_TYPE",
    "REASONS",
    "SPECVERSION",
    "Event",
    "Rejected",
    "decode",
    "decode_batch",
    "decode_message",
    "decode_message_partial",
    "encode",
    "encode_batch",
    "from_dict",
    "is_deviceid",
    "is_epoch",
    "new_event_id",
    "new_event_ids",
    "new_gap",
    "new_reading",
    "now_rfc3339",
    "parse_time",
    "rfc3339_ms",
    "seq_and_epoch",
    "to_dict",
]

SPECVERSION = v.SPECVERSION
READING_TYPE = "edgebridge.reading.v1"
GAP_TYPE = "edgebridge.gap.v1"
PROCESSED_TYPE = "edgebridge.reading.processed.v1"
CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
DEFAULT_MAX_BYTES = 256 * 1024
DEFAULT_MAX_ITEMS = 4096
DEFAULT_KNOWN_TYPES: frozenset[str] = frozenset({READING_TYPE, GAP_TYPE, PROCESSED_TYPE})
#: What a device may publish: readings and gap announcements (a processed event is the enricher's).
DEVICE_TYPES: frozenset[str] = frozenset({READING_TYPE, GAP_TYPE})

#: Every ``EnvelopeError.reason`` edgebridge raises: the dead-letter reason header and a metric label.
REASONS: frozenset[str] = frozenset(
    {
        "oversized",  # payload longer than max_bytes (refused unread), or a batch of over max_items
        "not_json",  # not UTF-8 JSON (also: an event that cannot be encoded)
        "too_deep",  # nested past orjson's 1,024 levels, or free-form data past 32
        "duplicate_key",  # one object holds a key twice
        "not_object",  # an event that is not a JSON object
        "not_batch",  # decode_batch given something other than a JSON array
        "empty_batch",  # a batch with no events
        "missing_attribute",  # a required attribute is absent (or null)
        "bad_attribute",  # wrong type, empty, too long or bad characters
        "bad_specversion",  # specversion is not "1.0"
        "bad_seq",  # seq not an integer in 1..2**63-1
        "bad_time",  # time not RFC 3339
        "source_mismatch",  # source is not /devices/{deviceid}
        "unknown_type",  # type not in known_types
        "bad_data",  # data does not match the schema of its type
        "device_mismatch",  # decode_message(deviceid=...): an event of another device (spoofing)
        "bad_topic",  # edgebridge.topics.parse_device_topic: not one of our device topics
        "bad_receipt",  # edgebridge.receipts.decode_receipt: not a receipt (counted by the agent)
    }
)

_NOT_EXTENSIONS = v.OWN_ATTRIBUTES | {"data_base64"}
_SOURCE_PREFIX = v.SOURCE_PREFIX


class Event(NamedTuple):
    """One event of one device; ``source`` is derived from ``deviceid``.

    Construct through :func:`new_reading`, :func:`new_gap` or a decoder, which validate; the constructor
    itself does not. A named tuple rather than a frozen dataclass because the decoder builds one per
    event on the bridge's hot path and a tuple is several times cheaper to make; it is immutable, compares
    by value, and ``event._replace(type=PROCESSED_TYPE, data=...)`` derives a new one. ``data`` and
    ``extensions`` are not copied: treat them as read-only.
    """

    id: str
    deviceid: str
    seq: int
    type: str
    time: str
    data: dict[str, Any]
    bootid: str | None = None
    monotime: int | None = None
    clocksynced: bool | None = None
    extensions: Mapping[str, Any] = v.NO_EXTENSIONS  # shared by all events, hence read-only
    epoch: str | None = None  # the outbox's epoch; None: a device from before epochs (legacy)

    @property
    def source(self) -> str:
        return _SOURCE_PREFIX + self.deviceid


_new_event = tuple.__new__


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event of a batch that :func:`decode_message_partial` refused, kept for the dead-letter topic."""

    index: int
    error: EnvelopeError
    payload: bytes  # the item re-encoded as JSON (the whole message when the item cannot be)
    seq: int = 0  # the item's seq and epoch when it has a usable one (the bridge still owes a receipt)
    epoch: str = ""


# --- building events: validates --------------------------------------------------------------------


def _build(
    deviceid: str,
    seq: int,
    type_: str,
    data: dict[str, Any],
    time: str | None,
    event_id: str | None,
    bootid: str | None,
    monotime: int | None,
    clocksynced: bool | None,
    epoch: str | None,
) -> Event:
    v.check_deviceid(deviceid, None)
    v.check_seq(seq, None)
    if time is None:
        time = now_rfc3339()
    else:
        v.parse_time(time)
    if event_id is None:
        event_id = new_event_id()
    else:
        v.check_text("id", event_id, v.MAX_ID_LEN, None)
    if bootid is not None:
        v.check_text("bootid", bootid, v.MAX_ID_LEN, None)
    if monotime is not None:
        v.check_monotime(monotime, None)
    if clocksynced is not None:
        v.check_clocksynced(clocksynced, None)
    if epoch is not None:
        v.check_epoch(epoch, None)
    return Event(event_id, deviceid, seq, type_, time, data, bootid, monotime, clocksynced, epoch=epoch)


def new_reading(
    deviceid: str,
    seq: int,
    data: dict[str, Any],
    *,
    time: str | None = None,
    event_id: str | None = None,
    bootid: str | None = None,
    monotime: int | None = None,
    clocksynced: bool | None = None,
    epoch: str | None = None,
) -> Event:
    """A validated ``edgebridge.reading.v1`` event; ``time`` defaults to now, ``event_id`` to a UUIDv7.

    Raises :class:`EnvelopeError` (``bad_data``, ``bad_seq``, ...) exactly as the decoder would refuse
    the event, so the agent can count and skip a bad sensor line before it reaches the outbox.
    """
    v.check_reading_data(data, None)
    return _build(deviceid, seq, READING_TYPE, data, time, event_id, bootid, monotime, clocksynced, epoch)


def new_gap(
    deviceid: str,
    seq: int,
    first: int,
    last: int,
    reason: str,
    *,
    time: str | None = None,
    event_id: str | None = None,
    bootid: str | None = None,
    monotime: int | None = None,
    clocksynced: bool | None = None,
    epoch: str | None = None,
) -> Event:
    """A validated ``edgebridge.gap.v1`` event: seqs ``first..last`` were lost; the gap itself is ``seq``."""
    v.check_seq(seq, None)
    count = last - first + 1 if v.is_int(first) and v.is_int(last) else 0
    data = {"first": first, "last": last, "count": count, "reason": reason}
    v.check_gap_data(data, seq, None)
    return _build(deviceid, seq, GAP_TYPE, data, time, event_id, bootid, monotime, clocksynced, epoch)


# --- encoding: trusts the event --------------------------------------------------------------------


def to_dict(event: Event) -> dict[str, Any]:
    """The structured-mode JSON object of ``event`` (``data`` is shared, not copied)."""
    obj: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": event.id,
        "source": _SOURCE_PREFIX + event.deviceid,
        "type": event.type,
        "time": event.time,
        "deviceid": event.deviceid,
        "seq": event.seq,
    }
    if event.epoch is not None:
        obj["epoch"] = event.epoch
    if event.bootid is not None:
        obj["bootid"] = event.bootid
    if event.monotime is not None:
        obj["monotime"] = event.monotime
    if event.clocksynced is not None:
        obj["clocksynced"] = event.clocksynced
    if event.extensions:
        for name, value in event.extensions.items():
            if name not in _NOT_EXTENSIONS:  # an extension never overrides the envelope
                obj[name] = value
    obj["data"] = event.data
    return obj


def encode(event: Event) -> bytes:
    """One event as ``application/cloudevents+json`` bytes."""
    return _dumps(to_dict(event))


def encode_batch(events: Iterable[Event]) -> bytes:
    """A non-empty batch as ``application/cloudevents-batch+json`` bytes (a JSON array)."""
    items = [to_dict(event) for event in events]
    if not items:
        raise EnvelopeError("empty_batch", "a batch holds at least one event")
    return _dumps(items)


def _dumps(obj: object) -> bytes:
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError as exc:  # only reachable with an event built around the validators
        raise EnvelopeError("not_json", f"cannot encode: {exc}") from exc


# --- decoding: strict and total --------------------------------------------------------------------


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp as an aware ``datetime``; ``EnvelopeError("bad_time")`` otherwise."""
    return v.parse_time(value)


def from_dict(
    obj: object, *, index: int | None = None, known_types: frozenset[str] | None = DEFAULT_KNOWN_TYPES
) -> Event:
    """Validate one parsed JSON value as an event; ``known_types=None`` admits any ``type``.

    A parsed value has no duplicate keys left to see: only the ``decode*`` functions, which have the
    text, refuse those.
    """
    return _event(obj, index, known_types)[0]


def _event(obj: object, index: int | None, known_types: frozenset[str] | None) -> tuple[Event, int]:
    """The event, and the colons its text holds at least (keys, and those of ``time``): see
    :mod:`edgebridge._duplicates`."""
    # The fast tier takes the common valid shape; the detailed checks take the rest and say what is wrong.
    fields = fast_attributes(obj, known_types) or v.check_attributes(obj, index, known_types)
    type_, data = fields[3], fields[5]
    if type_ == READING_TYPE:
        keys = v.check_reading_data(data, index)
    elif type_ == GAP_TYPE:
        v.check_gap_data(data, fields[2], index)
        keys = 4
    else:
        keys = v.check_object_data(data, index)
    # Event._make without its length check: fields has 11. obj is a dict: the checks above said so.
    return _new_event(Event, fields), keys + len(obj) + 2  # type: ignore[arg-type]


def _from_topic(
    item: object, index: int | None, known_types: frozenset[str] | None, deviceid: str | None
) -> tuple[Event, int]:
    found = _event(item, index, known_types)
    if deviceid is not None and found[0].deviceid != deviceid:
        detail = f"event of {found[0].deviceid!r} published as {deviceid!r}"
        raise EnvelopeError("device_mismatch", detail, index)
    return found


def _load(payload: bytes | bytearray | memoryview | str, max_bytes: int) -> object:
    size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
    if size > max_bytes:
        raise EnvelopeError("oversized", f"{size} bytes, the limit is {max_bytes}")
    try:
        return orjson.loads(payload)
    except Exception as exc:  # JSONDecodeError, or TypeError for a non-contiguous buffer
        if "depth" in str(exc):  # orjson's own limit, 1,024 levels ("depth limit exceeded")
            raise EnvelopeError("too_deep", str(exc)) from exc
        raise EnvelopeError("not_json", str(exc)) from exc


def _items(parsed: object, max_items: int) -> list[Any]:
    """A batch's items: a non-empty JSON array of at most ``max_items``."""
    if not isinstance(parsed, list):
        raise EnvelopeError("not_batch", f"a batch is a JSON array, got {type(parsed).__name__}")
    if not parsed:
        raise EnvelopeError("empty_batch", "a batch holds at least one event")
    if len(parsed) > max_items:
        raise EnvelopeError("oversized", f"{len(parsed)} items, the limit is {max_items}")
    return parsed


def _refuse_duplicates(payload: bytes | bytearray | memoryview | str, accounted: int) -> None:
    """Raise ``duplicate_key`` for the first item holding one. The decoders inline the pre-check of
    :func:`surely_unique` for ``bytes`` (one colon count; ``0x5C in payload``, a backslash, is a bare
    ``memchr``, faster than ``find``), and call this only when it fails: a call costs as much as the
    check."""
    if not surely_unique(payload, accounted):
        for index, key in duplicate_keys(payload).items():
            raise EnvelopeError("duplicate_key", f"key {key[:80]!r} appears twice in one object", index)


def decode(
    payload: bytes | bytearray | memoryview | str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    known_types: frozenset[str] | None = DEFAULT_KNOWN_TYPES,
) -> Event:
    """One structured-mode event."""
    event, accounted = _event(_load(payload, max_bytes), None, known_types)
    if type(payload) is not bytes or payload.count(b":") != accounted or 0x5C in payload:
        _refuse_duplicates(payload, accounted)
    return event


def decode_batch(
    payload: bytes | bytearray | memoryview | str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    known_types: frozenset[str] | None = DEFAULT_KNOWN_TYPES,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> list[Event]:
    """A JSON batch; the first bad item fails the whole batch (``EnvelopeError.index`` says which).
    Duplicate keys are looked for once every item passed the schema."""
    events: list[Event] = []
    accounted = 0
    for i, item in enumerate(_items(_load(payload, max_bytes), max_items)):
        event, keys = _event(item, i, known_types)
        events.append(event)
        accounted += keys
    if type(payload) is not bytes or payload.count(b":") != accounted or 0x5C in payload:
        _refuse_duplicates(payload, accounted)
    return events


def decode_message(
    payload: bytes | bytearray | memoryview | str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    known_types: frozenset[str] | None = DEFAULT_KNOWN_TYPES,
    deviceid: str | None = None,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> list[Event]:
    """An MQTT payload: one event or a batch, all or nothing.

    With ``deviceid`` (the device of the topic it arrived on) every event must belong to that device,
    else ``device_mismatch``: a device publishes only under its own id.
    """
    parsed = _load(payload, max_bytes)
    if not isinstance(parsed, list):
        event, accounted = _from_topic(parsed, None, known_types, deviceid)
        if type(payload) is not bytes or payload.count(b":") != accounted or 0x5C in payload:
            _refuse_duplicates(payload, accounted)
        return [event]
    events: list[Event] = []
    accounted = 0
    for i, item in enumerate(_items(parsed, max_items)):
        event, keys = _from_topic(item, i, known_types, deviceid)
        events.append(event)
        accounted += keys
    if type(payload) is not bytes or payload.count(b":") != accounted or 0x5C in payload:
        _refuse_duplicates(payload, accounted)
    return events


def decode_message_partial(
    payload: bytes | bytearray | memoryview | str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    known_types: frozenset[str] | None = DEFAULT_KNOWN_TYPES,
    deviceid: str | None = None,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> tuple[list[Event], list[Rejected]]:
    """Like :func:`decode_message`, but one bad item of a batch does not sink the others.

    Returns the good events in order and the refused items with their errors, for the dead-letter
    topic. What spoils the whole payload (``oversized``, ``not_json``, ``too_deep``, ``empty_batch``,
    a bad single event) still raises. An item refused for a duplicate key keeps the whole payload
    (re-encoding it would show only the last of the two values).
    """
    parsed = _load(payload, max_bytes)
    if not isinstance(parsed, list):
        event, accounted = _from_topic(parsed, None, known_types, deviceid)
        if type(payload) is not bytes or payload.count(b":") != accounted or 0x5C in payload:
            _refuse_duplicates(payload, accounted)
        return [event], []
    good: list[Event] = []
    bad: list[Rejected] = []
    accounted = 0
    for i, item in enumerate(_items(parsed, max_items)):
        try:
            event, keys = _from_topic(item, i, known_types, deviceid)
        except EnvelopeError as exc:
            bad.append(Rejected(i, exc, _item_payload(item, payload), *seq_and_epoch(item)))
            continue
        good.append(event)
        accounted += keys
    if good and (type(payload) is not bytes or payload.count(b":") != accounted
                 or 0x5C in payload) and not surely_unique(payload, accounted):
        duplicated = duplicate_keys(payload)
        if duplicated:
            return _without_duplicates(payload, good, bad, duplicated)
    return good, bad


def _without_duplicates(
    payload: bytes | bytearray | memoryview | str, good: list[Event], bad: list[Rejected],
    duplicated: dict[int | None, str],
) -> tuple[list[Event], list[Rejected]]:
    """``decode_message_partial``'s good events minus those with a duplicate key, which join the bad."""
    refused = {rejected.index for rejected in bad}
    indices = (i for i in range(len(good) + len(bad)) if i not in refused)
    kept: list[Event] = []
    for i, event in zip(indices, good, strict=False):
        key = duplicated.get(i)
        if key is None:
            kept.append(event)
        else:
            error = EnvelopeError("duplicate_key", f"key {key[:80]!r} appears twice in one object", i)
            bad.append(Rejected(i, error, _whole(payload), event.seq, event.epoch or ""))
    bad.sort(key=lambda rejected: rejected.index)
    return kept, bad


def _item_payload(item: object, payload: bytes | bytearray | memoryview | str) -> bytes:
    """A refused item as JSON for its dead letter; the whole message when it cannot be re-encoded."""
    try:
        return orjson.dumps(item)
    except (orjson.JSONEncodeError, TypeError):  # nested past orjson's writing limit (255 levels)
        return _whole(payload)


def _whole(payload: bytes | bytearray | memoryview | str) -> bytes:
    return payload.encode() if isinstance(payload, str) else bytes(payload)


def seq_and_epoch(obj: object) -> tuple[int, str]:
    """``(seq, epoch)`` of something shaped like an event, ``(0, "")`` when it has no usable seq: what a
    receipt for a refused event can name (its epoch ``""`` when absent, as for any legacy event)."""
    if not isinstance(obj, dict):
        return 0, ""
    seq, epoch = obj.get("seq"), obj.get("epoch")
    if type(seq) is not int or not 1 <= seq <= v.MAX_SEQ:
        return 0, ""
    if epoch is None:
        return seq, ""
    return (seq, epoch) if is_epoch(epoch) else (0, "")
