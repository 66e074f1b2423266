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

__all__ = ["BAD_ROW", "COLUMNS", "MAX_BYTES", "BadRow", "Row", "row_of"]

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
