"""The types of the envelope (:mod:`edgebridge.envelope`, whose docstring is the schema): the event
types, the reason codes, :class:`Event` and :class:`Rejected`. Import them from there."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from edgebridge import _validate as v
from edgebridge.errors import ConfigError, EnvelopeError

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
#: A type a deployment adds through ``known_types``: dotted lowercase words ending in a version
#: (``com.example.vibration.v1``), so that a new version is a new name (docs/schema.md).
_TYPE_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*\.v[1-9][0-9]*")

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

_SOURCE_PREFIX = v.SOURCE_PREFIX


def device_types(configured: Iterable[str]) -> frozenset[str]:
    """The event types a bridge or an enricher admits from devices, from its ``known_types`` setting.

    Raises ConfigError (key ``known_types``) when the list drops a type the agent sends (every
    device's events would be dead-lettered), names the processed type (a device would forge the
    enricher's output) or holds a name that is not ``words.vN``. Every other type listed
    is carried through unchanged: the bridge forwards it, the enricher deduplicates it and passes it
    on to processed as it came, as it does a gap event (the policy: docs/schema.md).
    """
    types = frozenset(configured)
    missing = sorted(DEVICE_TYPES - types)
    if missing:
        raise ConfigError("known_types", f"must keep {', '.join(missing)}: the agent sends it, and "
                          "without it every device's events would be dead-lettered")
    if PROCESSED_TYPE in types:
        raise ConfigError("known_types", f"{PROCESSED_TYPE} is the enricher's output; a device may not "
                          "publish it")
    for name in sorted(types - DEVICE_TYPES):
        if len(name) > 128 or not _TYPE_NAME.fullmatch(name):
            raise ConfigError("known_types", f"{name!r} is not a type name of the form words.vN "
                              "(e.g. com.example.vibration.v1)")
    return types


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


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event of a batch that :func:`decode_message_partial` refused, kept for the dead-letter topic."""

    index: int
    error: EnvelopeError
    payload: bytes  # the item re-encoded as JSON (the whole message when the item cannot be)
    seq: int = 0  # the item's seq and epoch when it has a usable one (the bridge still owes a receipt)
    epoch: str = ""
