"""The audit's arithmetic, per (device, epoch): present, duplicated, announced by a gap event, or missing."""

from __future__ import annotations

from edgebridge.envelope import encode, new_gap, new_reading
from simulators.audit import audit_records, format_table


def _reading(device: str, seq: int, epoch: str | None = None) -> bytes:
    return encode(new_reading(device, seq, {"t": {"v": 1.0, "u": "Cel"}}, epoch=epoch))


def test_complete_device_with_duplicates() -> None:
    values = [_reading("a", s) for s in (1, 2, 2, 3, 3, 3)]
    audit = audit_records(values)[("a", "")]
    assert (audit.records, audit.distinct, audit.duplicates, audit.max_seq) == (6, 3, 3, 3)
    assert audit.complete


def test_hole_explained_by_a_gap_event_is_not_missing() -> None:
    values = [_reading("a", 1), encode(new_gap("a", 6, 2, 5, "evicted")), _reading("a", 7)]
    audit = audit_records(values)[("a", "")]
    assert audit.announced == [(2, 5)]
    assert audit.missing == []


def test_unexplained_holes_and_missing_tail_are_reported_as_ranges() -> None:
    values = [_reading("a", s) for s in (1, 2, 5, 9)]
    audit = audit_records(values, expected_max={"a": 12, "b": 2})
    assert audit[("a", "")].missing == [(3, 4), (6, 8), (10, 12)]
    assert audit[("b", "")].missing == [(1, 2)] and audit[("b", "")].records == 0
    assert "3-4,6-8,10-12" in format_table(audit)


def test_a_device_with_two_lives_has_a_row_per_epoch() -> None:
    old, new = "fedcba9876543210", "0123456789abcdef"  # rows in the order of the lives, not of the names
    values = ([_reading("a", s, old) for s in (1, 2, 3, 3, 4)]
              + [_reading("a", s, new) for s in (1, 2, 4)]
              + [encode(new_gap("a", 7, 5, 6, "evicted", epoch=new))])
    audits = audit_records(values, expected_max={"a": 8})  # the last seq of the device's latest life
    assert list(audits) == [("a", old), ("a", new)]
    first, second = audits.values()
    assert (first.records, first.distinct, first.duplicates, first.max_seq, first.missing) == (5, 4, 1, 4, [])
    assert (second.records, second.max_seq, second.announced) == (4, 8, [(5, 6)])
    assert second.missing == [(3, 3), (8, 8)]  # holes of its own epoch only: seq 3 was in the old one
    rows = format_table(audits).splitlines()[1:]
    assert [row.split()[:3] for row in rows] == [["a", old, "5"], ["a", new, "4"]]
