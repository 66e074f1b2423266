"""``--from``'s forms, without a broker: what each one means as a start position."""

from __future__ import annotations

import pytest

from edgebridge.ops.reading import Position, parse_position

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("text", "expected"), [
    ("beginning", Position("beginning")),
    ("end", Position("end")),
    ("42", Position("offset", 42)),
    ("1:42", Position("offset", 42, 1)),
    ("90s", Position("time", int((NOW - 90) * 1000))),
    ("10m", Position("time", int((NOW - 600) * 1000))),
    ("2h", Position("time", int((NOW - 7200) * 1000))),
    ("1d", Position("time", int((NOW - 86400) * 1000))),
    ("2027-01-15T08:00:00Z", Position("time", 1_800_000_000_000)),
    ("2027-01-15T08:00:00", Position("time", 1_800_000_000_000)),  # no zone: UTC, as every time we write
    ("2027-01-15T09:00:00+01:00", Position("time", 1_800_000_000_000)),
])
def test_from_forms(text: str, expected: Position) -> None:
    assert parse_position(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "-5", "1:", "10x", "2027-13-01T00:00:00Z", ""])
def test_anything_else_is_refused_with_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="expected beginning, end, an offset"):
        parse_position(text, now=NOW)
