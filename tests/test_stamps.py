"""The one RFC 3339 formatter and the one UUIDv7 generator (edgebridge._stamps)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from edgebridge import deadletters, envelope, logs
from edgebridge._stamps import new_event_id, new_event_ids, now_rfc3339, rfc3339, rfc3339_ms


def _isoformat(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_SECONDS = st.integers(0, 4 * 10**9)
_WALLS = (st.floats(min_value=-1e10, max_value=2.5e11, allow_nan=False, allow_infinity=False)
          | _SECONDS.map(lambda s: s + 0.9995) | _SECONDS.map(lambda s: s + 0.9999995))  # rounding edges


@given(_WALLS)
def test_a_wall_time_formats_exactly_as_datetime_does(wall: float) -> None:
    assert rfc3339(wall) == _isoformat(wall)


def test_milliseconds_and_the_caches_across_seconds() -> None:
    assert rfc3339_ms(1714564800123) == "2024-05-01T12:00:00.123Z"
    assert rfc3339_ms(1714564800123) == "2024-05-01T12:00:00.123Z"  # the cached millisecond
    assert rfc3339_ms(1714564801005) == "2024-05-01T12:00:01.005Z"
    assert rfc3339_ms(1714564800999) == "2024-05-01T12:00:00.999Z"  # back to an older second
    assert rfc3339_ms(0) == "1970-01-01T00:00:00.000Z"


def test_everything_formats_through_the_one_function() -> None:
    assert deadletters.rfc3339 is rfc3339 and envelope.rfc3339_ms is rfc3339_ms
    assert envelope.now_rfc3339 is now_rfc3339 and envelope.new_event_id is new_event_id
    assert logs.rfc3339 is rfc3339  # the logs' ts field
    before = int(time.time() * 1000)
    now = datetime.fromisoformat(now_rfc3339())
    assert before - 1 <= now.timestamp() * 1000 <= time.time() * 1000


def test_event_ids_are_uuidv7_of_the_current_millisecond_and_unique() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_event_id() for _ in range(200)] + new_event_ids(2000) + new_event_ids(1)
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for text in ids:
        u = uuid.UUID(text)
        assert str(u) == text and u.version == 7 and u.variant == uuid.RFC_4122
        assert before <= u.int >> 80 <= after
    assert new_event_ids(0) == []
    # the 74 random bits vary: every digit of the variant nibble (8, 9, a, b) shows up
    assert {text[19] for text in new_event_ids(200)} == set("89ab")
