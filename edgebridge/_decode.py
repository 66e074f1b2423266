"""The envelope's decoders (:mod:`edgebridge.envelope`, whose docstring states the schema and the rules
for hostile input): strict and total, whatever the input they return events or raise
:class:`~edgebridge.errors.EnvelopeError` with one of ``REASONS``. Import them from there."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from edgebridge import _validate as v
from edgebridge._duplicates import duplicate_keys, surely_unique
from edgebridge._event import (
    DEFAULT_KNOWN_TYPES,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ITEMS,
    GAP_TYPE,
    READING_TYPE,
    Event,
    Rejected,
)
from edgebridge._validate import is_epoch
from edgebridge._validate_fast import fast_attributes
from edgebridge.errors import EnvelopeError

_new_event = tuple.__new__



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
