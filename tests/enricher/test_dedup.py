"""Pure unit tests of the dedup state: no brokers, no sleeping."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from enricher.dedup import DedupTable, DeviceDedup, Verdict


def test_in_order_duplicates_late_and_gaps() -> None:
    d = DeviceDedup()
    assert d.observe(1, 8).verdict is Verdict.NEW
    assert d.observe(1, 8).verdict is Verdict.DUPLICATE
    jump = d.observe(5, 8)
    assert jump.verdict is Verdict.NEW and jump.gap_opened == (2, 4)
    assert d.open_gaps == 1
    late = d.observe(3, 8)
    assert late.verdict is Verdict.LATE and late.gap_opened is None
    assert d.open_gaps == 2  # 2 and 4 still missing
    assert d.observe(2, 8).verdict is Verdict.LATE
    closed = d.observe(4, 8)
    assert closed.verdict is Verdict.LATE and closed.gaps_closed == 1
    assert (d.high, d.ranges, d.open_gaps) == (5, [], 0)


def test_gap_event_explains_the_hole() -> None:
    d = DeviceDedup()
    d.observe(1, 8)
    d.observe(10, 8)
    assert d.open_gaps == 1
    assert d.explain(2, 9, 8) == (1, 0)
    assert (d.high, d.open_gaps) == (10, 0)


def test_bounded_ranges_expire_the_lowest_hole() -> None:
    d = DeviceDedup()
    for seq in range(2, 40, 2):  # 19 isolated seqs, holes at 1, 3, 5, ...
        d.observe(seq, 4)
    assert len(d.ranges) == 4
    assert d.expired == 15  # holes 1,3,...,29 given up
    assert d.observe(3, 4).verdict is Verdict.DUPLICATE  # the documented price of the bound


def test_state_round_trip_and_table_partitions() -> None:
    t = DedupTable(8)
    t.observe("a", 0, 1)
    t.observe("a", 0, 3)
    t.observe("b", 1, 1)
    dirty = t.dirty()
    assert [(p, d) for p, d, _ in dirty] == [(0, "a"), (1, "b")]
    u = DedupTable(8)
    for p, d, payload in dirty:
        u.load(p, d, payload)
    assert u.observe("a", 0, 3).verdict is Verdict.DUPLICATE
    assert u.observe("a", 0, 2).verdict is Verdict.LATE
    assert u.drop_partitions({1}) == 1 and len(u) == 1


@given(st.lists(st.integers(1, 60), max_size=200), st.randoms())
def test_each_seq_passes_exactly_once(seqs: list[int], rnd: random.Random) -> None:
    rnd.shuffle(seqs)
    d = DeviceDedup()
    passed = [s for s in seqs if d.observe(s, 1000).verdict is not Verdict.DUPLICATE]
    assert sorted(passed) == sorted(set(seqs))
