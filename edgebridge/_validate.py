"""Field checks behind :mod:`edgebridge.envelope`: each one either returns or raises ``EnvelopeError``.

Private: import the codec from :mod:`edgebridge.envelope`. These run once per event on the bridge's hot
path, so they are exact-type, length and membership tests (no regular expressions), with a slower
``isinstance`` path only for what the fast path refuses (a ``str`` subclass from Python code is fine).

Two tiers. :func:`edgebridge._validate_fast.fast_attributes` and the fast loop of
:func:`check_reading_data` accept only the common valid shape and never raise; whatever they do not
accept goes to the detailed checks, which either accept it too or raise the precise reason. So the fast
tier may refuse a valid event (it costs time, not correctness) but must never accept one the detailed
checks refuse: the property tests in ``tests/test_envelope.py`` hold them to that.

Strings. Names, ids, units and gap reasons are printable (``str.isprintable``: no control character, no
NUL, no lone surrogate). Free text (a string reading, an extension attribute's value, any string of
free-form data) may hold any character but NUL (U+0000): PostgreSQL's ``jsonb`` and ``text`` refuse it,
and C consumers would cut the string there. So a ``\\u0000`` that orjson decodes is refused here, by the
decoder, not by a sink much later.

Nesting. Readings and gaps are flat by schema (a measurement's value is a scalar: anything else is
``bad_data`` at the first level it appears). Free-form data (processed events, types admitted with
``known_types=None``) may nest up to :data:`MAX_DATA_DEPTH` levels (``too_deep`` beyond): far below
orjson's own limits (1,024 levels to read, 255 to write) and Python's recursion limit, so whatever the
decoder accepts can be encoded again and walked recursively by any consumer.

Error details never fail: :func:`show` is a bounded ``reprlib`` rendering, so a value nested a thousand
levels deep, or an integer of 10,000 digits handed in from Python, gives a short text, not an exception.

Strings that repeat from event to event (device ids, bootids, measurement names, units) are checked
once and remembered in small bounded sets. Validity is a pure function of the string, so the sets are
shared by every caller and thread: a race or an eviction costs a recheck, never a different answer.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from datetime import datetime
from math import isfinite
from types import MappingProxyType
from typing import Any, NoReturn, TypeAlias, TypeGuard

from edgebridge.errors import EnvelopeError

SPECVERSION = "1.0"
SOURCE_PREFIX = "/devices/"
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type", "time", "deviceid", "seq", "data")
OPTIONAL_ATTRIBUTES = ("bootid", "monotime", "clocksynced", "epoch")
OWN_ATTRIBUTES = frozenset(REQUIRED_ATTRIBUTES + OPTIONAL_ATTRIBUTES)
MAX_SEQ = 2**63 - 1
MAX_DEVICEID_LEN = 128
MAX_ID_LEN = 256  # id and bootid
MAX_NAME_LEN = 128  # a measurement name
MAX_UNIT_LEN = 32
MAX_REASON_LEN = 64  # a gap reason
MAX_EXT_NAME_LEN = 64  # CloudEvents says SHOULD stay within 20; we only refuse the absurd
MAX_EPOCH_LEN = 64
MAX_DATA_DEPTH = 32  # free-form data: ``data`` itself is level 1
# What orjson can write: a reading value outside this range could be built in Python but not encoded.
_MIN_INT, _MAX_INT = -(2**63), 2**64 - 1
_EXT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_EPOCH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_ABSENT: Any = object()
NO_EXTENSIONS: Mapping[str, Any] = MappingProxyType({})

# Strings already found valid: device id -> its source, and sets per limit. Emptied when full, so a
# stream of distinct ids (a fleet, or an attacker) costs rechecks, not memory.
_SEEN_LIMIT = 4096
_seen_sources: dict[str, str] = {}
_seen_ids: set[str] = set()  # bootids (event ids are unique, not worth remembering)
_seen_names: set[str] = set()
_seen_units: set[str] = set()


def fail(reason: str, detail: str, index: int | None) -> NoReturn:
    raise EnvelopeError(reason, detail, index)


_short = reprlib.Repr()
_short.maxlevel, _short.maxstring, _short.maxother, _short.maxlong = 3, 60, 60, 40


def show(value: object) -> str:
    """A short repr for error details (they end up in dead-letter headers and logs); never raises."""
    try:
        text = _short.repr(value)
    except Exception:  # a str() of an int past 4,300 digits, a broken __repr__ in an object from Python
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def is_deviceid(value: object) -> TypeGuard[str]:
    """The one device-id rule: 1..128 printable chars, no whitespace, no ``/``, ``+``, ``#``, not ``.``
    or ``..``.

    The id becomes an MQTT topic level, a Kafka key, a registry key and, on a device, may name a file
    or directory; so wildcards, separators, the path names ``.`` and ``..`` and anything invisible are
    refused. ``str.isprintable`` already excludes NUL, control characters, lone surrogates and every
    whitespace except the plain space, which is tested separately. The agent's configuration, the
    topic builders and parser (so the bridge's routes), the registry and the ``devices`` command all
    call this function.
    """
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_DEVICEID_LEN
        and value.isprintable()
        and " " not in value
        and "/" not in value
        and "+" not in value
        and "#" not in value
        and value != "."
        and value != ".."
    )


def check_deviceid(value: object, index: int | None) -> str:
    if not is_deviceid(value):
        fail("bad_attribute", f"deviceid {show(value)} is not a valid device id", index)
    return value


def is_text(value: object, limit: int) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= limit and value.isprintable()


def check_text(name: str, value: object, limit: int, index: int | None) -> str:
    """A non-empty printable string of at most ``limit`` characters (``id``, ``bootid``, ...)."""
    if not is_text(value, limit):
        fail("bad_attribute", f"{name} must be a non-empty printable string of at most {limit} chars", index)
    return value


def is_int(value: object) -> TypeGuard[int]:
    """An integer that is not a bool (``True`` must never pass for ``seq`` 1)."""
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


def check_seq(value: object, index: int | None) -> int:
    if not is_int(value):
        fail("bad_seq", f"seq must be an integer, got {show(value)}", index)
    if not 1 <= value <= MAX_SEQ:
        fail("bad_seq", f"seq {show(value)} is outside 1..2**63-1", index)
    return value


def parse_time(value: object, index: int | None = None) -> datetime:
    """Parse an RFC 3339 timestamp into an aware ``datetime``; raise ``bad_time`` otherwise.

    ``YYYY-MM-DDTHH:MM:SS[.1-9 digits](Z|+HH:MM|-HH:MM)``, ``t`` and ``z`` allowed in lowercase.
    The separators are checked here, the digits and ranges by ``datetime.fromisoformat`` (which on its
    own would also take ISO 8601 forms that RFC 3339 does not). A leap second (``:60``) is read as
    ``:59``, since ``datetime`` cannot hold it.
    """
    if not isinstance(value, str):
        fail("bad_time", f"time must be a string, got {show(value)}", index)
    size = len(value)
    if size < 20 or value[4] != "-" or value[7] != "-" or value[13] != ":" or value[16] != ":":
        fail("bad_time", f"time {show(value)} is not RFC 3339", index)
    last, sep = value[-1], value[10]
    if last == "Z" or last == "z":
        end = size - 1
    elif size >= 25 and value[-3] == ":" and (value[-6] == "+" or value[-6] == "-"):
        end = size - 6
    else:
        fail("bad_time", f"time {show(value)} has no Z or +HH:MM offset", index)
    if end != 19:
        fraction = value[20:end]
        if value[19] != "." or not 0 < len(fraction) <= 9 or not (fraction.isdigit() and fraction.isascii()):
            fail("bad_time", f"time {show(value)} is not RFC 3339", index)
    text = value
    if sep != "T":
        if sep != "t":
            fail("bad_time", f"time {show(value)} is not RFC 3339", index)
        text = value.upper()
    elif last == "z":
        text = value.upper()
    if text[17] == "6" and text[18] == "0":
        text = text[:17] + "59" + text[19:]
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        fail("bad_time", f"time {show(value)} is not a valid date and time", index)


def is_epoch(value: object) -> TypeGuard[str]:
    """An outbox epoch: 1..64 of lowercase a-z, 0-9 and ``-`` (the agent draws 16 hex digits)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_EPOCH_LEN and _EPOCH_CHARS.issuperset(value)


def check_epoch(value: object, index: int | None) -> str:
    if not is_epoch(value):
        fail("bad_attribute", f"epoch {show(value)} is not 1..64 of a-z, 0-9 and -", index)
    return value


def check_monotime(value: object, index: int | None) -> int:
    if not is_int(value) or not 0 <= value <= MAX_SEQ:
        fail("bad_attribute", f"monotime must be an integer in 0..2**63-1, got {show(value)}", index)
    return value


def check_clocksynced(value: object, index: int | None) -> bool:
    if type(value) is not bool:
        fail("bad_attribute", f"clocksynced must be a boolean, got {show(value)}", index)
    return value


def check_extension(name: object, value: object, index: int | None) -> None:
    """Another CloudEvents attribute, passed through: a lowercase alphanumeric name, a scalar value."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_EXT_NAME_LEN or not _EXT_CHARS.issuperset(name):
        fail("bad_attribute", f"attribute name {show(name)} is not lowercase a-z0-9", index)
    if name == "datacontenttype" and (not isinstance(value, str) or "json" not in value):
        fail("bad_attribute", f"datacontenttype {show(value)} is not JSON", index)
    if isinstance(value, bool):
        return
    if isinstance(value, str):
        if "\0" in value:
            fail("bad_attribute", f"attribute {name} holds a NUL character", index)
        return
    if not is_int(value) or not _MIN_INT <= value <= MAX_SEQ:
        fail("bad_attribute", f"attribute {name} must be a string, integer or boolean", index)


def check_reading_data(data: object, index: int | None) -> int:
    """``{name: {"v": number|string|bool, "u": unit}}``, at least one measurement, ``"u"`` optional.

    Returns how many keys ``data`` holds at both levels (names, ``v``, ``u``): the duplicate-key
    pre-check of :mod:`edgebridge._duplicates` needs it, and it costs one addition per unit here.
    """
    if not isinstance(data, dict) or not data:
        fail("bad_data", "reading data must be a non-empty object", index)
    names, units = _seen_names, _seen_units
    with_unit = 0
    for name, measurement in data.items():
        # Fast path: exact JSON types, as orjson produces them. Anything else gets the full check.
        # (A remembered name is a str: a key of another type is never in ``names``.)
        if (
            type(measurement) is dict
            and (name in names or (type(name) is str and learn_text(names, name, MAX_NAME_LEN)))
        ):
            value = measurement.get("v", _ABSENT)
            kind = type(value)
            if kind is float:
                ok = value - value == 0.0  # false for inf and nan
            elif kind is int:
                ok = _MIN_INT <= value <= _MAX_INT
            elif kind is str:
                ok = "\0" not in value
            else:
                ok = kind is bool
            if ok:
                size = len(measurement)
                if size == 1:
                    continue
                if size == 2:
                    unit = measurement.get("u")
                    if type(unit) is str and (unit in units or learn_text(units, unit, MAX_UNIT_LEN)):
                        with_unit += 1
                        continue
        _check_measurement(name, measurement, index)
        with_unit += len(measurement) - 1  # checked: "v", and "u" or not
    return 2 * len(data) + with_unit


def learn_text(seen: set[str], value: str, limit: int) -> bool:
    """:func:`is_text` for an exact ``str``, remembering a valid one in ``seen``."""
    if 0 < len(value) <= limit and value.isprintable():
        if len(seen) >= _SEEN_LIMIT:
            seen.clear()
        seen.add(value)
        return True
    return False


def _check_measurement(name: object, measurement: object, index: int | None) -> None:
    if not is_text(name, MAX_NAME_LEN):
        fail("bad_data", f"measurement name {show(name)} is not a short printable string", index)
    if not isinstance(measurement, dict) or "v" not in measurement:
        fail("bad_data", f"measurement {name!r} must be an object with a 'v'", index)
    if not measurement.keys() <= {"v", "u"}:
        fail("bad_data", f"measurement {name!r} has keys other than 'v' and 'u'", index)
    unit = measurement.get("u", _ABSENT)
    if unit is not _ABSENT and not is_text(unit, MAX_UNIT_LEN):
        fail("bad_data", f"measurement {name!r}: 'u' must be a unit symbol, got {show(unit)}", index)
    value = measurement["v"]
    if isinstance(value, bool):  # before int: it is an int subclass
        return
    if isinstance(value, str):
        if "\0" in value:
            fail("bad_data", f"measurement {name!r}: a string value holds a NUL character", index)
        return
    if isinstance(value, float):
        if not isfinite(value):
            fail("bad_data", f"measurement {name!r}: value {value} is not finite", index)
    elif isinstance(value, int):
        if not _MIN_INT <= value <= _MAX_INT:
            fail("bad_data", f"measurement {name!r}: integer {show(value)} is out of 64-bit range", index)
    else:
        fail("bad_data", f"measurement {name!r}: 'v' must be a number, string or boolean", index)


def check_gap_data(data: object, seq: int, index: int | None) -> dict[str, Any]:
    """``{"first", "last", "count", "reason"}``: ``1 <= first <= last < seq``, ``count == last-first+1``."""
    if not isinstance(data, dict) or len(data) != 4:
        fail("bad_data", "gap data must be an object with first, last, count and reason", index)
    try:
        first, last, count, reason = data["first"], data["last"], data["count"], data["reason"]
    except KeyError:
        fail("bad_data", "gap data must be an object with first, last, count and reason", index)
    for name, value in (("first", first), ("last", last), ("count", count)):
        if not is_int(value) or not 1 <= value <= MAX_SEQ:
            fail("bad_data", f"gap {name} must be an integer in 1..2**63-1, got {show(value)}", index)
    if not first <= last < seq:
        fail("bad_data", f"gap range [{first}, {last}] must be ordered and before the gap's seq {seq}", index)
    if count != last - first + 1:
        fail("bad_data", f"gap count {count} does not match [{first}, {last}]", index)
    if not is_text(reason, MAX_REASON_LEN):
        fail("bad_data", f"gap reason {show(reason)} must be a short printable string", index)
    return data


def check_object_data(data: object, index: int | None) -> int:
    """Free-form data: a JSON object at most :data:`MAX_DATA_DEPTH` deep, no NUL in a key or string,
    only JSON values (finite floats, integers orjson can write).

    Returns how many keys and colons inside strings it holds (the duplicate-key pre-check's count).
    Iterative, so no depth handed in from Python can exhaust the stack before the limit is seen.
    """
    if not isinstance(data, dict):
        fail("bad_data", "data must be a JSON object", index)
    counted = 0
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > MAX_DATA_DEPTH:
                fail("too_deep", f"data nests deeper than {MAX_DATA_DEPTH} levels", index)
            counted += len(node)
            for key, value in node.items():
                if not isinstance(key, str) or "\0" in key:
                    fail("bad_data", f"data key {show(key)} is not a string without NUL", index)
                counted += key.count(":")
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            if depth > MAX_DATA_DEPTH:
                fail("too_deep", f"data nests deeper than {MAX_DATA_DEPTH} levels", index)
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            if "\0" in node:
                fail("bad_data", "a string in data holds a NUL character", index)
            counted += node.count(":")
        elif isinstance(node, float):
            if not isfinite(node):
                fail("bad_data", f"data holds a non-finite number {node}", index)
        elif isinstance(node, int) and not isinstance(node, bool):
            if not _MIN_INT <= node <= _MAX_INT:
                fail("bad_data", f"data holds an integer out of 64-bit range {show(node)}", index)
        elif node is not None and not isinstance(node, bool):
            fail("bad_data", f"data holds a {type(node).__name__}, not a JSON value", index)
    return counted


def _check_extensions(obj: dict[Any, Any], index: int | None) -> Mapping[str, Any]:
    extensions: dict[str, Any] = {}
    for name, value in obj.items():
        if value is None or name in OWN_ATTRIBUTES:
            continue
        if name == "data_base64":
            fail("bad_data", "binary data (data_base64) is not accepted", index)
        check_extension(name, value, index)
        extensions[name] = value
    return extensions or NO_EXTENSIONS  # only optional attributes given as null


# id, deviceid, seq, type, time, data, bootid, monotime, clocksynced, extensions, epoch: Event's fields.
Attributes: TypeAlias = tuple[
    str, str, int, str, str, Any, str | None, int | None, bool | None, Mapping[str, Any], str | None
]


def check_attributes(obj: object, index: int | None, known_types: frozenset[str] | None) -> Attributes:
    """Check everything but ``data`` (whose schema depends on the type) and return the Event fields.

    A required attribute that is ``null`` counts as missing; an optional one as absent.
    """
    if not isinstance(obj, dict):
        fail("not_object", f"an event is a JSON object, got {type(obj).__name__}", index)
    try:
        specversion, event_id, source, type_ = obj["specversion"], obj["id"], obj["source"], obj["type"]
        time, deviceid, seq, data = obj["time"], obj["deviceid"], obj["seq"], obj["data"]
    except KeyError:
        missing = next(name for name in REQUIRED_ATTRIBUTES if name not in obj)
        fail("missing_attribute", f"{missing} is required", index)
    if None in (specversion, event_id, source, type_, time, deviceid, seq, data):
        missing = next(name for name in REQUIRED_ATTRIBUTES if obj[name] is None)
        fail("missing_attribute", f"{missing} is required", index)
    if specversion != SPECVERSION:
        fail("bad_specversion", f"specversion {show(specversion)} is not 1.0", index)
    if type(event_id) is not str or not 0 < len(event_id) <= MAX_ID_LEN or not event_id.isprintable():
        check_text("id", event_id, MAX_ID_LEN, index)
    if not is_deviceid(deviceid):
        fail("bad_attribute", f"deviceid {show(deviceid)} is not a valid device id", index)
    if source != SOURCE_PREFIX + deviceid:
        if not isinstance(source, str):
            fail("bad_attribute", f"source must be a string, got {show(source)}", index)
        fail("source_mismatch", f"source {show(source)} is not {SOURCE_PREFIX}{deviceid}", index)
    if not isinstance(type_, str) or not type_:
        fail("bad_attribute", f"type must be a non-empty string, got {show(type_)}", index)
    if known_types is not None and type_ not in known_types:
        fail("unknown_type", f"type {show(type_)} is not accepted here", index)
    parse_time(time, index)
    if type(seq) is not int or not 0 < seq <= MAX_SEQ:
        check_seq(seq, index)

    bootid = monotime = clocksynced = epoch = None
    extensions: Mapping[str, Any] = NO_EXTENSIONS
    extra = len(obj) - len(REQUIRED_ATTRIBUTES)
    if extra:
        bootid, monotime, clocksynced = obj.get("bootid"), obj.get("monotime"), obj.get("clocksynced")
        epoch = obj.get("epoch")
        if epoch is not None:
            extra -= 1
            check_epoch(epoch, index)
        if bootid is not None:
            extra -= 1
            if type(bootid) is not str or not 0 < len(bootid) <= MAX_ID_LEN or not bootid.isprintable():
                check_text("bootid", bootid, MAX_ID_LEN, index)
        if monotime is not None:
            extra -= 1
            if type(monotime) is not int or not 0 <= monotime <= MAX_SEQ:
                check_monotime(monotime, index)
        if clocksynced is not None:
            extra -= 1
            check_clocksynced(clocksynced, index)
        if extra:  # other attributes, or optional ones given as null
            extensions = _check_extensions(obj, index)
    return event_id, deviceid, seq, type_, time, data, bootid, monotime, clocksynced, extensions, epoch
