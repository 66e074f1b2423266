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

This module builds and encodes; the decoders are in :mod:`edgebridge._decode`, the types and reason
codes in :mod:`edgebridge._event`. Import every public name from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from edgebridge import _validate as v
from edgebridge._decode import (
    decode,
    decode_batch,
    decode_message,
    decode_message_partial,
    from_dict,
    parse_time,
    seq_and_epoch,
)
from edgebridge._event import (
    BATCH_CONTENT_TYPE,
    CONTENT_TYPE,
    DEFAULT_KNOWN_TYPES,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ITEMS,
    DEVICE_TYPES,
    GAP_TYPE,
    PROCESSED_TYPE,
    READING_TYPE,
    REASONS,
    SPECVERSION,
    Event,
    Rejected,
    device_types,
)
from edgebridge._stamps import new_event_id, new_event_ids, now_rfc3339, rfc3339_ms
from edgebridge._validate import is_deviceid, is_epoch
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
    "device_types",
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

_NOT_EXTENSIONS = v.OWN_ATTRIBUTES | {"data_base64"}
_SOURCE_PREFIX = v.SOURCE_PREFIX

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
