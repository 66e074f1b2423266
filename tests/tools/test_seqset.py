"""The audit's run-length set against a plain Python set: the same membership, the same duplicates, and
memory that grows with the holes, not with the seqs."""

from __future__ import annotations

import random

from edgebridge.ops.seqset import SeqSet, uncovered
from edgebridge.ops.tally import Tally
from edgebridge.receipts import merge_ranges


def _runs(seqs: set[int]) -> list[tuple[int, int]]:
    return merge_ranges((s, s) for s in seqs)


def test_matches_a_plain_set_in_any_order() -> None:
    rng = random.Random(7)
    for _ in range(50):
        seqs = [rng.randint(1, 200) for _ in range(rng.randint(1, 300))]
        ours, naive = SeqSet(), set()
        for s in seqs:
            assert ours.add(s) == (s not in naive), s  # a duplicate exactly when the naive set has it
            naive.add(s)
        assert len(ours) == len(naive) and ours.ranges() == _runs(naive)
        assert all((s in ours) == (s in naive) for s in range(0, 202))
        assert uncovered(1, 200, ours) == _runs(set(range(1, 201)) - naive)


def test_a_gap_range_merges_and_holes_are_what_neither_covers() -> None:
    seen = SeqSet([(1, 3), (10, 10)])
    announced = SeqSet()
    announced.add_range(4, 6)
    announced.add_range(5, 8)
    assert announced.ranges() == [(4, 8)] and len(announced) == 5
    assert uncovered(1, 12, seen, announced) == [(9, 9), (11, 12)]
    assert uncovered(5, 9, [(1, 6)]) == [(7, 9)]


def test_memory_follows_the_holes_not_the_events() -> None:
    complete, holed = SeqSet(), SeqSet()
    order = list(range(1, 100_001))
    random.Random(3).shuffle(order[:1000])  # some disorder at the start, as a replica's interleaving
    for s in order:
        complete.add(s)
        if s % 1000:
            holed.add(s)
    assert complete.ranges() == [(1, 100_000)] and complete.nbytes() == 16
    assert len(holed.ranges()) == 100 and holed.nbytes() == 100 * 16


def test_undecodable_values_are_counted_not_raised() -> None:
    tally = Tally()
    for value in (b"{oops", b"[]", b'{"deviceid": "a"}', b'{"deviceid": "a", "seq": -1}', None,
                  b'{"deviceid": "a", "seq": 99999999999999999999}', b'{"deviceid": 3, "seq": 1}'):
        assert tally.add_value(value) is None
    assert (tally.records, tally.undecodable, tally.epochs) == (7, 7, {})
