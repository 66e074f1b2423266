"""Pure unit tests of the dedup state, per (device, epoch): no brokers, no sleeping."""

from __future__ import annotations

import random

import orjson
from hypothesis import given
from hypothesis import strategies as st

from enricher.dedup import (
    DAY_MS,
    LEGACY_EPOCH,
    MAX_EPOCHS,
    DedupTable,
    EpochChange,
    EpochSeqs,
    Verdict,
    decode_device,
)

E1, E2, E3 = "e1e1e1e1e1e1e1e1", "e2e2e2e2e2e2e2e2", "e3e3e3e3e3e3e3e3"
T0 = 1_795_700_000_000  # a Kafka timestamp, ms


# -- one epoch's sequence ----------------------------------------------------------------------------


def test_in_order_duplicates_late_and_gaps() -> None:
    d = EpochSeqs()
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
    d = EpochSeqs()
    d.observe(1, 8)
    d.observe(10, 8)  # the gap event itself
    assert d.open_gaps == 1
    assert d.explain(2, 9, 10, 8) == (1, 0)
    assert (d.high, d.open_gaps) == (10, 0)


def test_an_explained_seq_that_arrives_after_all_is_late_never_a_duplicate() -> None:
    d = EpochSeqs()
    d.observe(1, 8)
    d.observe(10, 8)
    d.explain(2, 9, 10, 8)
    assert d.unseen == [[2, 9]]
    assert d.observe(5, 8).verdict is Verdict.LATE  # closed for gap accounting, yet processed
    assert d.unseen == [[2, 4], [6, 9]]
    assert d.observe(5, 8).verdict is Verdict.DUPLICATE  # its re-send is a duplicate
    assert d.observe(11, 8).verdict is Verdict.NEW and d.open_gaps == 0


def test_a_forged_gap_cannot_silence_the_device() -> None:
    """A gap event at seq 2**62 "explaining" 1..2**62-1: every real seq after it is processed (late)."""
    d = EpochSeqs()
    for seq in range(1, 11):
        d.observe(seq, 8)
    forged = 2**62
    assert d.observe(forged, 8).gap_opened == (11, forged - 1)
    assert d.explain(1, forged - 1, forged, 8) == (1, 0)
    assert d.open_gaps == 0 and d.unseen == [[11, forged - 1]]
    verdicts = [d.observe(seq, 8).verdict for seq in range(11, 1011)]
    assert verdicts == [Verdict.LATE] * 1000
    assert d.observe(500, 8).verdict is Verdict.DUPLICATE  # a re-send is still dropped
    assert d.observe(5, 8).verdict is Verdict.DUPLICATE  # seen before the forged gap
    # bounded: in-order arrivals shrink the one unseen range, they do not split it
    assert d.unseen == [[1011, forged - 1]] and len(orjson.dumps(d.to_obj())) < 200


def test_a_gap_explains_only_seqs_below_its_own() -> None:
    d = EpochSeqs()
    d.observe(1, 8)
    d.observe(10, 8)  # a gap event at seq 10 claiming 2..20 (the envelope refuses it; a forger might not)
    d.explain(2, 20, 10, 8)
    assert (d.high, d.ranges, d.unseen) == (10, [], [[2, 9]])
    nxt = d.observe(15, 8)
    assert nxt.verdict is Verdict.NEW and nxt.gap_opened == (11, 14)  # 11..20 were never explained
    assert d.explain(5, 9, 5, 8) == (0, 0)  # first..last not below the gap's seq: nothing taken


def test_explaining_seen_seqs_leaves_them_seen() -> None:
    d = EpochSeqs()
    for seq in (1, 3, 5, 9):
        d.observe(seq, 8)
    d.observe(12, 8)
    d.explain(2, 11, 12, 8)
    assert d.unseen == [[2, 2], [4, 4], [6, 8], [10, 11]]
    assert d.observe(3, 8).verdict is Verdict.DUPLICATE
    assert d.observe(7, 8).verdict is Verdict.LATE
    assert (d.high, d.open_gaps) == (12, 0)


def test_bounded_ranges_expire_the_lowest_hole() -> None:
    d = EpochSeqs()
    for seq in range(2, 40, 2):  # 19 isolated seqs, holes at 1, 3, 5, ...
        d.observe(seq, 4)
    assert len(d.ranges) == 4
    assert d.expired == 15  # holes 1,3,...,29 given up
    assert d.observe(3, 4).verdict is Verdict.DUPLICATE  # the documented price of the bound


def test_bounded_unseen_ranges_give_up_the_lowest_and_count_it() -> None:
    d = EpochSeqs()
    d.observe(1, 2)
    d.observe(100, 2)
    d.explain(2, 99, 100, 2)
    assert d.observe(10, 2).expired == 0  # [2,9] [11,99]
    split = d.observe(20, 2)  # [2,9] [11,19] [21,99]: one too many, [2,9] given up
    assert split.verdict is Verdict.LATE and split.expired == 8
    assert d.unseen == [[11, 19], [21, 99]] and d.expired == 8
    assert d.observe(5, 2).verdict is Verdict.DUPLICATE  # the price of the bound, counted above
    assert d.observe(15, 2).verdict is Verdict.LATE


@given(st.lists(st.integers(1, 60), max_size=200), st.randoms())
def test_each_seq_passes_exactly_once(seqs: list[int], rnd: random.Random) -> None:
    rnd.shuffle(seqs)
    d = EpochSeqs()
    passed = [s for s in seqs if d.observe(s, 1000).verdict is not Verdict.DUPLICATE]
    assert sorted(passed) == sorted(set(seqs))


@given(st.lists(st.one_of(st.integers(1, 80), st.tuples(st.integers(1, 80), st.integers(1, 80),
                                                        st.integers(1, 80))), max_size=200))
def test_gap_events_never_drop_a_real_seq(stream: list[int | tuple[int, int, int]]) -> None:
    """Whatever gap events say (forged ones too), every real seq passes exactly once (no bound hit)."""
    d = EpochSeqs()
    real: list[int] = []
    passed: list[int] = []
    for item in stream:
        if isinstance(item, tuple):
            seq, first, last = item
            if d.observe(seq, 1000).verdict is not Verdict.DUPLICATE:
                d.explain(first, last, seq, 1000)
            real.append(seq)  # the gap event is a record of its own seq
            passed.append(seq)
            continue
        real.append(item)
        if d.observe(item, 1000).verdict is not Verdict.DUPLICATE:
            passed.append(item)
    firsts = [s for i, s in enumerate(real) if s not in real[:i]]
    assert sorted(set(passed)) == sorted(firsts)
    assert d.expired == 0


# -- a device's epochs -------------------------------------------------------------------------------


def test_a_new_epoch_starts_its_seqs_again_and_is_reported_once() -> None:
    t = DedupTable(8)
    first = t.observe("a", 0, 1, E1, T0)
    assert first.verdict is Verdict.NEW and first.epochs is None  # the first sight of a device: no reset
    for seq in range(2, 6):
        t.observe("a", 0, seq, E1, T0)
    reset = t.observe("a", 0, 1, E2, T0 + 1)
    assert reset.verdict is Verdict.NEW
    assert reset.epochs is not None and reset.epochs.change == EpochChange("a", E1, 5, E2)
    assert reset.epochs.change.alert() == {"kind": "device_state_lost", "old_epoch": E1, "old_last_seq": 5,
                                           "epoch": E2}
    assert [t.observe("a", 0, s, E2, T0 + 2).verdict for s in (2, 3, 2)] == [
        Verdict.NEW, Verdict.NEW, Verdict.DUPLICATE]
    assert all(t.observe("a", 0, s, E2, T0 + 2).epochs is None for s in (4, 5))  # reported once
    # a late re-send of the old life is deduplicated in its own epoch: no alert
    old = t.observe("a", 0, 3, E1, T0 + 3)
    assert old.verdict is Verdict.DUPLICATE and old.epochs is None
    device = t.device("a")
    assert device is not None and device.current == E2 and set(device.epochs) == {E1, E2}


def test_legacy_events_are_the_epoch_empty_string() -> None:
    t = DedupTable(8)
    t.observe("a", 0, 1, None, T0)
    assert t.observe("a", 0, 1, LEGACY_EPOCH, T0).verdict is Verdict.DUPLICATE
    reset = t.observe("a", 0, 1, E1, T0)  # a device from before epochs, then reflashed
    assert reset.epochs is not None and reset.epochs.change == EpochChange("a", LEGACY_EPOCH, 1, E1)


def test_state_round_trip_and_table_partitions() -> None:
    t = DedupTable(8)
    t.observe("a", 0, 1, E1, T0)
    t.observe("a", 0, 3, E1, T0)
    t.observe("a", 0, 1, E2, T0 + 5)
    t.observe("b", 1, 1)
    dirty = t.dirty()
    assert [(p, d) for p, d, _ in dirty] == [(0, "a"), (1, "b")]
    value = orjson.loads(dirty[0][2])
    assert value == {"v": 2, "current": E2, "epochs": {
        E1: {"high": 1, "ranges": [[3, 3]], "expired": 0, "unseen": [], "seen_ms": T0},
        E2: {"high": 1, "ranges": [], "expired": 0, "unseen": [], "seen_ms": T0 + 5}}}
    u = DedupTable(8)
    for p, d, payload in dirty:
        u.load(p, d, payload)
    assert u.observe("a", 0, 3, E1).verdict is Verdict.DUPLICATE
    assert u.observe("a", 0, 2, E1).verdict is Verdict.LATE
    assert u.observe("a", 0, 1, E2).verdict is Verdict.DUPLICATE
    assert u.observe("a", 0, 2, E2).epochs is None  # both epochs known: no reset
    assert u.drop_partitions({1}) == 1 and len(u) == 1


def test_a_state_record_from_before_epochs_loads_as_the_legacy_epoch() -> None:
    old = orjson.dumps({"high": 7, "ranges": [[10, 12]], "expired": 3})  # what the enricher wrote before
    t = DedupTable(8)
    t.load(0, "a", old, record_ms=T0)
    device = t.device("a")
    assert device is not None and device.current == LEGACY_EPOCH
    assert device.seqs == EpochSeqs(7, [[10, 12]], 3, [], T0)  # last seen when the record was written
    assert t.observe("a", 0, 11).verdict is Verdict.DUPLICATE
    assert t.observe("a", 0, 8).verdict is Verdict.LATE
    assert t.observe("a", 0, 13).verdict is Verdict.NEW
    reset = t.observe("a", 0, 1, E1, T0 + 1)  # then the device is reflashed: reported with its old top
    assert reset.epochs is not None and reset.epochs.change == EpochChange("a", LEGACY_EPOCH, 13, E1)
    assert decode_device(t.dirty()[0][2]).epochs[LEGACY_EPOCH].top == 13


def test_old_epochs_are_forgotten_when_idle_by_record_time_never_the_current() -> None:
    t = DedupTable(8, epoch_idle_days=7)
    t.observe("a", 0, 1, E1, T0)
    t.observe("a", 0, 1, E2, T0 + DAY_MS)
    t.clean()
    assert t.observe("a", 0, 2, E2, T0 + 7 * DAY_MS - 1).epochs is None  # E1 idle for 7 days less 1 ms
    gone = t.observe("a", 0, 2, E2, T0 + 7 * DAY_MS)  # a duplicate: forgetting still happens, by its time
    assert gone.verdict is Verdict.DUPLICATE
    assert gone.epochs is not None and gone.epochs.forgotten_idle == 1 and gone.epochs.change is None
    device = t.device("a")
    assert device is not None and set(device.epochs) == {E2}
    assert [d for _, d, _ in t.dirty()] == ["a"]  # the state record without E1 is written
    # the current epoch is never forgotten, however long the device was silent
    assert t.observe("a", 0, 3, E2, T0 + 400 * DAY_MS).epochs is None
    assert t.observe("a", 0, 3, E2, T0 + 400 * DAY_MS).verdict is Verdict.DUPLICATE


def test_a_device_cycling_epochs_keeps_at_most_max_epochs() -> None:
    t = DedupTable(8)
    forgotten = 0
    for i in range(MAX_EPOCHS + 3):
        obs = t.observe("a", 0, 1, f"{i:016x}", T0 + i)
        forgotten += obs.epochs.forgotten_over_cap if obs.epochs is not None else 0
    device = t.device("a")
    assert device is not None and len(device.epochs) == MAX_EPOCHS and forgotten == 3
    assert device.current == f"{MAX_EPOCHS + 2:016x}"
    assert "0000000000000000" not in device.epochs  # the least recently seen went first


@given(st.lists(st.tuples(st.sampled_from([None, E1, E2, E3]), st.integers(1, 12), st.integers(0, 3 * DAY_MS),
                          st.booleans()), max_size=120))
def test_a_replay_from_any_committed_state_decides_the_same(
    stream: list[tuple[str | None, int, int, bool]]
) -> None:
    """Verdicts, alerts and state are a function of the records (their Kafka timestamps included), not of
    where the commits fell: reloading the state at any commit gives the same as never reloading."""
    straight, reloaded = DedupTable(4, epoch_idle_days=1), DedupTable(4, epoch_idle_days=1)
    topic: dict[str, bytes] = {}  # the compacted state topic: the last record per device
    ts = T0
    for epoch, seq, step, commit in stream:
        ts += step
        a, b = (table.observe("a", 0, seq, epoch, ts) for table in (straight, reloaded))
        assert a == b
        if commit:  # commit, then restart from what the state topic holds
            topic.update((d, payload) for _, d, payload in reloaded.dirty())
            reloaded = DedupTable(4, epoch_idle_days=1)
            for d, payload in topic.items():
                reloaded.load(0, d, payload, record_ms=ts)
    assert straight.device("a") == reloaded.device("a")


def test_a_dead_bridge_replicas_holes_one_seq_wide_are_all_late_never_duplicates() -> None:
    """Two replicas on a shared subscription take a device's seqs in turn; one dies with a full Receive
    Maximum (1000) of that device's messages in flight. The survivor's seqs arrive first, the dead one's
    come back as the agent's resends: each is late, none given up and taken for a duplicate."""
    from bridge.config import UplinkConfig

    table = DedupTable()
    window = UplinkConfig().receive_maximum
    survivor = [table.observe("d", 0, seq) for seq in range(2, 2 * window + 1, 2)]
    resent = [table.observe("d", 0, seq) for seq in range(1, 2 * window, 2)]
    assert {o.verdict for o in survivor} == {Verdict.NEW}
    assert {o.verdict for o in resent} == {Verdict.LATE}
    assert sum(o.expired for o in survivor + resent) == 0
