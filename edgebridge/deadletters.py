"""The dead-letter contract: one header schema for whatever lands in ``iot.events.deadletter``.

Every component that refuses a record builds its headers here, so a consumer of the dead-letter topic
reads one schema whichever component wrote it. The sinks keep theirs in a table of their own database
(:mod:`enricher.sinks.quarantine`) with the same reason codes.

A dead letter's value is the original bytes (cut at the component's limit, the original size then in
``dlq_truncated``); its key is the device id when one is known. Its headers, UTF-8 text, are (the
table with examples is ``docs/deadletters.md``):

==========================  =========================================================================
``dlq_reason``              a code of :data:`REASONS`
``dlq_error_class``         the class of the error (``EnvelopeError``, ``ValueError``, ``KafkaError``)
``dlq_error``               the error's text, at most :data:`MAX_ERROR_CHARS` characters
``dlq_component``           ``bridge`` or ``enricher``
``dlq_time``                when it was refused, RFC 3339 UTC with milliseconds (the bridge: received)
``dlq_original_topic``      the Kafka record it was, where there is one (the enricher's input) ...
``dlq_original_partition``  ... its partition ...
``dlq_original_offset``     ... and its offset
``dlq_mqtt_topic``          the MQTT topic it arrived on, where there is one (the bridge)
``dlq_index``               the position of the refused item in a batch (absent for a whole message)
``dlq_truncated``           the original size in bytes, when the value was cut
``dlq_step``                the pipeline step that failed (the enricher's ``step_failed``)
``dlq_instance``            the instance that wrote it (the enricher's ``instance_id``)
==========================  =========================================================================

Building the headers never raises (text that cannot be UTF-8 is escaped), so the path of what already
failed cannot fail again. Dead letters are the slow path: nothing here is tuned for speed.
"""

from __future__ import annotations

import time as _time

from edgebridge._stamps import rfc3339  # the time stamps of dlq_time
from edgebridge.envelope import REASONS as ENVELOPE_REASONS

__all__ = [
    "BAD_ROW",
    "COMPONENT_REASONS",
    "DB_REFUSED",
    "HEADERS",
    "INTERNAL_ERROR",
    "KAFKA_REJECTED",
    "MAX_ERROR_CHARS",
    "REASONS",
    "STEP_FAILED",
    "UNENCODABLE",
    "Header",
    "cut",
    "headers",
    "rfc3339",
]

Header = tuple[str, bytes]

REASON = "dlq_reason"
ERROR_CLASS = "dlq_error_class"
ERROR = "dlq_error"
COMPONENT = "dlq_component"
TIME = "dlq_time"
ORIGINAL_TOPIC = "dlq_original_topic"
ORIGINAL_PARTITION = "dlq_original_partition"
ORIGINAL_OFFSET = "dlq_original_offset"
MQTT_TOPIC = "dlq_mqtt_topic"
INDEX = "dlq_index"
TRUNCATED = "dlq_truncated"
STEP = "dlq_step"
INSTANCE = "dlq_instance"
#: Every header name, in the order they are written.
HEADERS: tuple[str, ...] = (REASON, ERROR_CLASS, ERROR, COMPONENT, TIME, ORIGINAL_TOPIC, ORIGINAL_PARTITION,
                            ORIGINAL_OFFSET, MQTT_TOPIC, INDEX, TRUNCATED, STEP, INSTANCE)

MAX_ERROR_CHARS = 1000

KAFKA_REJECTED = "kafka_rejected"
INTERNAL_ERROR = "internal_error"
STEP_FAILED = "step_failed"
UNENCODABLE = "unencodable"
BAD_ROW = "bad_row"
DB_REFUSED = "db_refused"
#: Reasons of the components, beside the decoder's (:data:`edgebridge.envelope.REASONS`).
COMPONENT_REASONS: frozenset[str] = frozenset({
    KAFKA_REJECTED,  # bridge: Kafka refused the record itself (too large, invalid)
    INTERNAL_ERROR,  # bridge, enricher: an unexpected exception on this one message (a bug, or an input
    # no check foresaw); its class and text are in dlq_error_class and dlq_error
    "unknown_device",  # enricher: not in the registry, under pipeline.unknown_devices = "deadletter"
    STEP_FAILED,  # enricher: a pipeline step raised; dlq_step names it
    UNENCODABLE,  # enricher: the processed event cannot be encoded (an integer past 64 bits, ...)
    BAD_ROW,  # sinks: a valid processed event whose data cannot fill the row's columns
    DB_REFUSED,  # sinks: the database refused the row (a constraint, a value too long for a column)
})
#: Every reason code a dead letter may carry. A pipeline step of your own may raise ``Reject`` with a
#: code of its own: document it beside these.
REASONS: frozenset[str] = ENVELOPE_REASONS | COMPONENT_REASONS


def cut(value: bytes, limit: int) -> tuple[bytes, int | None]:
    """``value`` cut to ``limit`` bytes, and its original size when it was cut (for ``dlq_truncated``)."""
    if len(value) > limit:
        return value[:limit], len(value)
    return value, None


def headers(
    *,
    reason: str,
    error: BaseException | str,
    component: str,
    error_class: str | None = None,
    time: float | None = None,
    original: tuple[str, int, int] | None = None,
    mqtt_topic: str | None = None,
    index: int | None = None,
    truncated: int | None = None,
    step: str | None = None,
    instance: str | None = None,
) -> list[Header]:
    """The headers of one dead letter; the optional ones only where there is something to say.

    ``error`` is the exception (its class is taken unless ``error_class`` is given: the class of the
    cause an ``internal_error`` wraps, say) or already a text. ``time`` is a Unix time (default: now).
    ``original`` is ``(topic, partition, offset)`` of the Kafka record it was.
    """
    if error_class is None:
        error_class = type(error).__name__ if isinstance(error, BaseException) else ""
    try:
        text = str(error)
    except Exception:  # an exception whose __str__ fails: its class says enough
        text = error_class
    out = [
        (REASON, _utf8(reason)),
        (ERROR_CLASS, _utf8(error_class)),
        (ERROR, _utf8(text[:MAX_ERROR_CHARS])),
        (COMPONENT, _utf8(component)),
        (TIME, rfc3339(_time.time() if time is None else time).encode()),
    ]
    if original is not None:
        topic, partition, offset = original
        out += [(ORIGINAL_TOPIC, _utf8(topic)), (ORIGINAL_PARTITION, str(partition).encode()),
                (ORIGINAL_OFFSET, str(offset).encode())]
    optional = ((MQTT_TOPIC, mqtt_topic), (INDEX, index), (TRUNCATED, truncated), (STEP, step),
                (INSTANCE, instance))
    out += [(name, _utf8(str(value))) for name, value in optional if value is not None]
    return out


def _utf8(text: str) -> bytes:
    # backslashreplace: a lone surrogate (a key decoded with surrogateescape, say) must not raise here
    return text.encode("utf-8", "backslashreplace")
