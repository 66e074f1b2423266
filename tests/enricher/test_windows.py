"""The window rule of the aggregator, as pure functions: lateness, too late, the figures."""

from __future__ import annotations

import orjson
import pytest

from edgebridge.errors import ConfigError
from enricher.aggregates.aggregator import numeric_values
from enricher.aggregates.table import WindowTable
from enricher.aggregates.windows import DeviceWindows, WindowRule

RULE = WindowRule(size_ms=60_000, lateness_ms=30_000)


def at(seconds: float) -> int:
    return int(seconds * 1000)


def test_windows_are_aligned_tumbling_intervals() -> None:
    assert RULE.start(at(0)) == 0 and RULE.start(at(59.999)) == 0 and RULE.start(at(60)) == at(60)
    assert RULE.start(-1) == -60_000  # before 1970: floor, not truncation
    assert RULE.closes_at(at(60)) == at(150)  # end 120 s + 30 s lateness


def test_figures_count_min_max_mean_and_last_by_event_time() -> None:
    device = DeviceWindows()
    for t, v in [(10, 5), (40, 1), (20, 9), (40, 3)]:  # 20 s arrives after 40 s: not the last
        device.apply(RULE, at(t), {"t": (v, "Cel")})
    f = device.open[("t", 0)]
    assert (f.count, f.min, f.max, f.sum, f.mean) == (4, 1, 9, 18, 4.5)
    assert (f.last, f.last_ms) == (3, at(40))  # equal times: the one applied last


def test_a_late_event_inside_the_lateness_updates_its_window() -> None:
    device = DeviceWindows()
    device.apply(RULE, at(30), {"t": (1.0, None)})
    out = device.apply(RULE, at(80), {"t": (2.0, None)})  # watermark 80 < 60 + 30: window 0 open
    assert out.closed == []
    out = device.apply(RULE, at(50), {"t": (7.0, None)})
    assert out.changed == [("t", 0)] and out.too_late == []
    assert device.open[("t", 0)].count == 2 and device.open[("t", 0)].max == 7.0
    assert device.watermark == at(80)  # a late event does not move the watermark back


def test_a_window_closes_when_the_watermark_passes_end_plus_lateness_then_late_is_too_late() -> None:
    device = DeviceWindows()
    device.apply(RULE, at(30), {"t": (1.0, None), "h": (50, "%RH")})
    out = device.apply(RULE, at(89.999), {"t": (2.0, None)})
    assert out.closed == []  # 89.999 < 90
    out = device.apply(RULE, at(90), {"t": (3.0, None)})
    assert sorted((n, s) for n, s, _ in out.closed) == [("h", 0), ("t", 0)]
    assert ("t", 0) not in device.open
    out = device.apply(RULE, at(59), {"t": (100.0, None), "h": (1, None)})
    assert out.changed == [] and sorted(out.too_late) == ["h", "t"]
    assert device.too_late == {"t": 1, "h": 1}
    assert device.open[("t", 60_000)].count == 2  # the too-late value went nowhere


def test_without_lateness_the_next_window_closes_the_previous_one() -> None:
    rule = WindowRule(60_000, 0)
    device = DeviceWindows()
    device.apply(rule, at(59), {"t": (1, None)})
    assert [s for _, s, _ in device.apply(rule, at(60), {"t": (2, None)}).closed] == [0]
    assert device.apply(rule, at(59.5), {"t": (3, None)}).too_late == ["t"]


def test_state_round_trips_through_its_record() -> None:
    device = DeviceWindows()
    device.apply(RULE, at(10), {"t": (0.1, "Cel")})
    device.apply(RULE, at(11), {"t": (0.2, "Cel")})
    device.apply(RULE, at(200), {"t": (3, "Cel")})
    device.apply(RULE, at(1), {"t": (3, "Cel")})
    again = DeviceWindows.from_obj(orjson.loads(orjson.dumps(device.to_obj())))
    assert again == device
    assert again.open[("t", at(180))].sum == 3 and again.too_late == {"t": 1}


def test_the_table_emits_changed_windows_once_per_transaction_and_final_ones_flagged() -> None:
    table = WindowTable(RULE)
    table.observe("d1", 2, at(10), {"t": (1, "Cel")})
    table.observe("d1", 2, at(20), {"t": (2, "Cel")})
    recs = table.records()
    assert [(p, k) for p, k, _ in recs] == [(2, "d1/t/1970-01-01T00:00:00.000Z")]
    assert orjson.loads(recs[0][2])["count"] == 2 and orjson.loads(recs[0][2])["final"] is False
    assert [k for _, k, _ in table.dirty()] == ["d1"]
    table.clean()
    assert table.records() == [] and table.dirty() == []
    table.observe("d1", 2, at(100), {"t": (5, "Cel")})  # closes window 0
    table.observe("d1", 2, at(5), {"t": (9, "Cel")})  # too late for it
    recs = {k: orjson.loads(v) for _, k, v in table.records()}
    assert recs["d1/t/1970-01-01T00:00:00.000Z"]["final"] is True
    assert recs["d1/t/1970-01-01T00:00:00.000Z"]["count"] == 2
    assert recs["d1/t/1970-01-01T00:01:00.000Z"]["final"] is False
    assert recs["d1/t/too_late"] == {"kind": "too_late", "deviceid": "d1", "measurement": "t", "count": 1}
    assert table.drop_partitions({2}) == 1 and table.records() == [] and len(table) == 0


def test_only_numbers_are_aggregated() -> None:
    data = {"readings": {"t": {"v": 1.5, "u": "Cel"}, "n": {"v": 3}, "s": {"v": "on"}, "b": {"v": True},
                         "bad": 7}}
    assert numeric_values(data) == {"t": (1.5, "Cel"), "n": (3, None)}
    assert numeric_values({"readings": []}) == {} and numeric_values({}) == {}


def test_a_clock_far_ahead_is_counted_not_applied_and_does_not_move_the_watermark() -> None:
    # one reading stamped a year ahead must not make the device's later, correct readings too late
    device = DeviceWindows()
    device.apply(RULE, at(10), {"t": (1, "Cel")}, limit_ms=at(300))
    out = device.apply(RULE, at(365 * 86400), {"t": (99, "Cel")}, limit_ms=at(320))
    assert out.ahead == ["t"] and not out.changed and device.watermark == at(10)
    assert device.ahead == {"t": 1} and list(device.open) == [("t", 0)]
    out = device.apply(RULE, at(30), {"t": (2, "Cel")}, limit_ms=at(330))
    assert out.changed == [("t", 0)] and not out.too_late and device.open[("t", 0)].count == 2
    # at the bound itself it is still applied; the count survives the state round trip
    assert device.apply(RULE, at(330), {"t": (3, "Cel")}, limit_ms=at(330)).changed == [("t", at(300))]
    assert DeviceWindows.from_obj(orjson.loads(orjson.dumps(device.to_obj()))).ahead == {"t": 1}


def test_ahead_counts_are_records_of_their_own() -> None:
    table = WindowTable(RULE)
    table.observe("d1", 0, at(10), {"t": (1, "Cel")}, limit_ms=at(5))
    assert [(p, k, orjson.loads(v)) for p, k, v in table.records()] == [
        (0, "d1/t/ahead", {"kind": "ahead", "deviceid": "d1", "measurement": "t", "count": 1})]


def test_sums_never_overflow_what_json_can_carry() -> None:
    # two readings of 2**63 summed as ints would be 2**64: past what orjson encodes, a crash at commit
    device = DeviceWindows()
    for v in (2**63, 2**63):
        device.apply(RULE, at(1), {"n": (v, None)})
    table = WindowTable(RULE)
    table.observe("d1", 0, at(1), {"n": (2**63, None)})
    table.observe("d1", 0, at(2), {"n": (2**63, None)})
    record = orjson.loads(table.records()[0][2])
    assert record["sum"] == 2.0**64 and record["max"] == 2**63
    assert table.dirty()  # the state record encodes too
    # a magnitude whose sum could reach infinity (no JSON form) is not aggregated, like a string
    assert numeric_values({"readings": {"a": {"v": 1e300}, "b": {"v": -1e201}, "c": {"v": 1e200}}}) == {
        "c": (1e200, None)}


def test_a_device_cannot_grow_its_state_without_bound() -> None:
    rule = WindowRule(size_ms=60_000, lateness_ms=30_000, max_open=3)
    device = DeviceWindows()
    out = device.apply(rule, at(10), {f"m{i}": (i, None) for i in range(5)})  # five names at once
    assert len(device.open) == 3 and [c[:2] for c in out.closed] == [("m0", 0), ("m1", 0)]  # oldest first
    device.apply(rule, at(500), {"x": (1, None)})  # closes every window of the first minute
    late = device.apply(rule, at(20), {f"late{i}": (i, None) for i in range(5)})
    assert late.too_late == ["late0", "late1", "late2", "*", "*"]
    assert device.too_late == {"late0": 1, "late1": 1, "late2": 1, "*": 2}


def test_the_watermark_never_passes_the_time_kafka_took_the_record() -> None:
    # a clock 4 minutes ahead (inside max_ahead): applied, but the device's next correct readings are
    # not made too late by it
    device = DeviceWindows()
    device.apply(RULE, at(1000 + 240), {"t": (1, None)}, limit_ms=at(1000 + 300), cap_ms=at(1000))
    assert device.watermark == at(1000)
    out = device.apply(RULE, at(1001), {"t": (2, None)}, limit_ms=at(1301), cap_ms=at(1001))
    assert out.changed == [("t", at(960))] and not out.too_late


def test_state_written_under_another_window_rule_is_refused_not_merged() -> None:
    old = WindowTable(WindowRule(size_ms=60_000, lateness_ms=30_000))
    old.observe("d1", 0, at(10), {"t": (1, None)})
    [(_, key, payload)] = old.dirty()
    WindowTable(WindowRule(size_ms=60_000, lateness_ms=30_000)).load(0, key, payload)  # same rule: fine
    with pytest.raises(ConfigError, match="written with 60 s windows and 30 s lateness"):
        WindowTable(WindowRule(size_ms=300_000, lateness_ms=30_000)).load(0, key, payload)
