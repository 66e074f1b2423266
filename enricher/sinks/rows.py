"""What a processed event becomes in a sink's table, and what cannot become a row.

:func:`row_of` decodes a record of ``iot.events.processed`` with the shared envelope decoder (so the
sink refuses exactly what the decoder refuses: NUL that PostgreSQL's ``jsonb`` would refuse, nesting,
duplicate keys, ...) and takes the row's columns from the processed ``data``. Three outcomes:

- a :class:`Row`;
- ``None``: a valid event that is not a processed reading (a gap event the enricher forwards, another
  type): nothing to write, the offset still moves on;
- an exception, whose record the sink quarantines with its reason: ``EnvelopeError`` (the decoder's
  reason) or :class:`BadRow` (``bad_row``: a processed event whose data cannot fill the columns).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from edgebridge import envelope
from edgebridge.deadletters import BAD_ROW
from edgebridge.envelope import PROCESSED_TYPE
from edgebridge.errors import EdgeBridgeError, EnvelopeError

__all__ = ["AGGREGATE_COLUMNS", "BAD_ROW", "COLUMNS", "MAX_BYTES", "AggregateRow", "BadRow", "Row",
           "aggregate_row_of", "row_of"]

# A processed event is a raw one plus the enrichment: allowed up to Kafka's default message size.
MAX_BYTES = 1024 * 1024


class BadRow(EdgeBridgeError):
    """A valid processed event whose data cannot fill a row (a site that is not text, ...)."""


class Row(NamedTuple):
    event_id: str
    device_id: str
    epoch: str  # "" for an event without one (the legacy epoch), as in the enricher
    seq: int
    time: str
    site: str | None
    location: str | None
    late: int
    flags: str  # JSON array
    readings: str  # JSON object
    derived: str  # JSON object
    processed_at: str | None


COLUMNS = Row._fields  # the insert names its columns: a migrated table has epoch last


def row_of(value: bytes) -> Row | None:
    """The row of a processed reading, ``None`` for another valid event; raises what to quarantine."""
    event = envelope.decode(value, max_bytes=MAX_BYTES, known_types=None)
    if event.type != PROCESSED_TYPE:
        return None
    data = event.data
    device = _typed(data, "device", dict, {})
    processtime = _typed(data, "processtime", str, None)
    if processtime is not None:
        try:
            envelope.parse_time(processtime)
        except EnvelopeError as exc:
            raise BadRow(f"processtime: {exc.detail}") from exc
    return Row(event.id, event.deviceid, event.epoch or "", event.seq, event.time,
               _typed(device, "site", str, None), _typed(device, "location", str, None),
               int(_typed(data, "late", bool, False)),
               orjson.dumps(_typed(data, "flags", list, [])).decode(),
               orjson.dumps(_typed(data, "readings", dict, {})).decode(),
               orjson.dumps(_typed(data, "derived", dict, {})).decode(),
               processtime)


def _typed(obj: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = obj.get(key)
    if value is None:
        return default
    if type(value) is not kind:
        raise BadRow(f"{key} must be {kind.__name__}, got {type(value).__name__}")
    return value


class AggregateRow(NamedTuple):
    """A record of ``iot.aggregates`` (:mod:`enricher.aggregates.table`): a window's latest figures, or
    a (device, measurement)'s too-late or ahead count (``kind`` ``too_late`` or ``ahead``: ``count``
    only)."""

    key: str  # the record's key: {device}/{measurement}/{window start}, .../too_late or .../ahead
    kind: str
    device_id: str
    measurement: str
    window_start: str | None
    window_end: str | None
    count_: int  # column "count" (a NamedTuple field must not shadow tuple.count)
    min: float | None
    max: float | None
    mean: float | None
    last: float | None
    last_time: str | None
    unit: str | None
    final: int | None


AGGREGATE_COLUMNS = tuple(f.rstrip("_") for f in AggregateRow._fields)
_NUMBER = (int, float)


def aggregate_row_of(key: bytes | None, value: bytes) -> AggregateRow:
    """The row of an aggregates record; raises :class:`BadRow` for what to quarantine."""
    if not key:
        raise BadRow("an aggregates record without a key")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadRow(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise BadRow("not a JSON object")
    kind = _typed(obj, "kind", str, None)
    count = _typed(obj, "count", int, None)
    device, measurement = _typed(obj, "deviceid", str, None), _typed(obj, "measurement", str, None)
    if kind not in ("window", "too_late", "ahead") or count is None or device is None or measurement is None:
        raise BadRow("kind (window, too_late or ahead), count, deviceid and measurement are required")
    if kind != "window":
        return AggregateRow(key.decode("utf-8", "replace"), kind, device, measurement, None, None, count,
                            None, None, None, None, None, None, None)
    low, high, mean, last = (_number(obj, name) for name in ("min", "max", "mean", "last"))
    return AggregateRow(key.decode("utf-8", "replace"), kind, device, measurement,
                        _typed(obj, "start", str, None), _typed(obj, "end", str, None), count,
                        low, high, mean, last, _typed(obj, "last_time", str, None),
                        _typed(obj, "unit", str, None), int(_typed(obj, "final", bool, False)))


def _number(obj: dict[str, Any], key: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        raise BadRow(f"{key} must be a number, got {type(value).__name__}")
    return value
