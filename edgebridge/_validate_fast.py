"""The fast tier of the envelope's attribute checks: the common valid shape in one pass, never raising.

Private, like :mod:`edgebridge._validate`, whose docstring states the contract of the two tiers:
:func:`fast_attributes` may refuse a valid event (the detailed
:func:`~edgebridge._validate.check_attributes` then decides) but must never accept one the detailed
checks refuse; ``tests/test_envelope.py`` holds it to that with property tests. It shares the
remembered-string sets of :mod:`edgebridge._validate`.
"""

from __future__ import annotations

from datetime import datetime

from edgebridge._validate import (
    _SEEN_LIMIT,
    MAX_ID_LEN,
    MAX_SEQ,
    NO_EXTENSIONS,
    REQUIRED_ATTRIBUTES,
    SOURCE_PREFIX,
    SPECVERSION,
    Attributes,
    _seen_ids,
    _seen_sources,
    is_deviceid,
    is_epoch,
    learn_text,
)

__all__ = ["fast_attributes", "is_common_time"]


def fast_attributes(obj: object, known_types: frozenset[str] | None) -> Attributes | None:
    """:func:`check_attributes` for the common valid shape, in one pass; ``None`` for anything else.

    The shape: a ``dict`` of exact JSON types, no extension attribute, no ``null``, and ``time`` as
    ``YYYY-MM-DDTHH:MM:SS[.fff]Z``. Never raises: on ``None`` the caller runs :func:`check_attributes`,
    which accepts the event after all or says why not.
    """
    if type(obj) is not dict:
        return None
    try:
        specversion, event_id, source, type_ = obj["specversion"], obj["id"], obj["source"], obj["type"]
        time, deviceid, seq, data = obj["time"], obj["deviceid"], obj["seq"], obj["data"]
    except KeyError:
        return None
    if (
        data is None
        or specversion != SPECVERSION
        or type(event_id) is not str
        or not 0 < len(event_id) <= MAX_ID_LEN
        or not event_id.isprintable()
        or type(type_) is not str
        or not type_
        or (known_types is not None and type_ not in known_types)
        or type(seq) is not int
        or not 0 < seq <= MAX_SEQ
        or type(deviceid) is not str
        or type(time) is not str
    ):
        return None
    expected = _seen_sources.get(deviceid)
    if expected is None:
        if not is_deviceid(deviceid):
            return None
        if len(_seen_sources) >= _SEEN_LIMIT:
            _seen_sources.clear()
        expected = _seen_sources[deviceid] = SOURCE_PREFIX + deviceid
    if source != expected or not is_common_time(time):
        return None

    extra = len(obj) - len(REQUIRED_ATTRIBUTES)
    if not extra:
        return event_id, deviceid, seq, type_, time, data, None, None, None, NO_EXTENSIONS, None
    bootid, monotime, clocksynced = obj.get("bootid"), obj.get("monotime"), obj.get("clocksynced")
    epoch = obj.get("epoch")
    if epoch is not None:
        if not is_epoch(epoch):
            return None
        extra -= 1
    if bootid is not None:
        if type(bootid) is not str or not (bootid in _seen_ids or learn_text(_seen_ids, bootid, MAX_ID_LEN)):
            return None
        extra -= 1
    if monotime is not None:
        if type(monotime) is not int or not 0 <= monotime <= MAX_SEQ:
            return None
        extra -= 1
    if clocksynced is not None:
        if type(clocksynced) is not bool:
            return None
        extra -= 1
    if extra:  # extension attributes, or optional ones given as null
        return None
    return event_id, deviceid, seq, type_, time, data, bootid, monotime, clocksynced, NO_EXTENSIONS, epoch


_fromisoformat = datetime.fromisoformat
_COMMON_ENDS = frozenset(["Z", *(f".{ms:03d}Z" for ms in range(1000))])  # what follows the seconds


def is_common_time(value: str) -> bool:
    """``YYYY-MM-DDTHH:MM:SSZ`` or ``YYYY-MM-DDTHH:MM:SS.fffZ`` that :func:`parse_time` accepts.

    The separator and fraction checks of :func:`parse_time` made with one slice and one set lookup,
    then the same ``fromisoformat`` call. False for every other form (offsets, lowercase, other
    fraction lengths, a leap second) even when valid: :func:`parse_time` decides those.
    """
    if value[4:19:3] != "--T::" or value[19:] not in _COMMON_ENDS:
        return False
    try:
        _fromisoformat(value)
    except ValueError:
        return False
    return True
