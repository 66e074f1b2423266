"""Idle devices forgotten, and devices seen on another partition, in the aggregator's window table: pure,
no Kafka (tests/enricher/test_aggregates.py has the same against real Kafka).

Time here is Kafka time (``cap_ms``: when Kafka took the record), the clock idleness is judged by; event
times (the device's clock) are chosen far from it on purpose, so that a rule that used them would fail.
"""

from __future__ import annotations

import orjson
import pytest
from prometheus_client import CollectorRegistry

from edgebridge.errors import ConfigError
from enricher.aggregates.config import AggregateSettings
from enricher.aggregates.metrics import AggregatorMetrics
from enricher.aggregates.table import WindowTable
from enricher.aggregates.windows import NEVER, SWEEP_EVERY_MS, DeviceWindows, WindowRule

S = 1000
IDLE = 10 * S
RULE = WindowRule(size_ms=60 * S, lateness_ms=30 * S, idle_ms=IDLE)
DEVICE_CLOCK = 1_000_000 * S  # the devices' clocks: nowhere near Kafka time


def table() -> tuple[WindowTable, AggregatorMetrics]:
    metrics = AggregatorMetrics(CollectorRegistry())
    return WindowTable(RULE, metrics), metrics


def counted(metrics: AggregatorMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(f"edgebridge_aggregator_{name}_total")
    assert value is not None
    return value


def seen(t: WindowTable, device: str, partition: int, kafka_ms: int, value: float = 1.0,
         event_ms: int = DEVICE_CLOCK) -> None:
    t.observe(device, partition, event_ms, {"t": (value, "Cel")}, cap_ms=kafka_ms)


def emitted(t: WindowTable) -> list[tuple[int, str, dict[str, object]]]:
    return [(p, k, orjson.loads(v)) for p, k, v in t.records()]


def test_idle_is_judged_by_kafka_time_from_the_latest_record() -> None:
    assert not RULE.idle(0, IDLE - 1) and RULE.idle(0, IDLE) and RULE.idle(0, IDLE + 1)
    assert not RULE.idle(None, 10 * IDLE) and not RULE.idle(0, None)  # unknown: never idle
    assert not WindowRule(size_ms=60 * S).idle(0, 2**62)  # idle_ms None: never forgotten
    assert RULE.forget_at(5) == 5 + IDLE and RULE.forget_at(None) == NEVER
    device = DeviceWindows()
    assert device.saw(100) and not device.saw(50) and device.seen == 100  # never back


def test_the_sweep_forgets_an_idle_device_its_windows_final_and_a_tombstone() -> None:
    t, metrics = table()
    seen(t, "old", 0, 0, 1.0)
    seen(t, "old", 0, 1 * S, 3.0, DEVICE_CLOCK + 1)
    seen(t, "live", 0, 0)
    t.clean()
    seen(t, "live", 0, IDLE - 1)  # the partition's clock one ms short of old's idle time
    assert t.expire() == 0 and t.device("old") is not None
    seen(t, "live", 0, IDLE + 1 * S)  # now old's latest record is IDLE old
    t.clean()
    assert t.expire() == 1 and t.device("old") is None and len(t) == 1
    assert [(p, k, r["final"], r["count"], r["max"]) for p, k, r in emitted(t)] == [
        (0, "old/t/1970-01-12T13:46:00.000Z", True, 2, 3.0)]
    assert t.dirty() == [(0, "old", None)]  # the tombstone, to the device's own partition
    assert counted(metrics, "devices_forgotten") == 1 and counted(metrics, "windows_closed") == 1
    t.clean()
    assert t.records() == [] and t.dirty() == []


def test_a_partition_is_judged_by_its_own_clock_only() -> None:
    t, _ = table()
    seen(t, "quiet", 1, 0)  # partition 1 receives nothing after this
    seen(t, "busy", 0, 0)
    seen(t, "busy", 0, 100 * IDLE)  # partition 0's clock far on
    assert t.expire() == 0 and t.device("quiet") is not None  # partition 1's clock has not moved


def test_a_device_s_own_record_after_the_idle_time_forgets_it_first_then_it_starts_afresh() -> None:
    t, metrics = table()
    seen(t, "d", 0, 0, 5.0)
    t.device("d").too_late["t"] = 4  # type: ignore[union-attr]  # counts a forgotten device loses
    t.clean()
    # the same window of the device's clock, IDLE later in Kafka time (a device resending after an
    # outage): no sweep ran, yet the decision is the sweep's
    seen(t, "d", 0, IDLE, 7.0, DEVICE_CLOCK + 2)
    records = emitted(t)
    assert [(r["final"], r["count"], r["max"]) for _, _, r in records] == [(True, 1, 5.0), (False, 1, 7.0)]
    assert len({k for _, k, _ in records}) == 1  # one key: the final record first, the fresh one after
    device = t.device("d")
    assert device is not None and device.too_late == {} and device.seen == IDLE
    dirty = t.dirty()
    assert [(p, k) for p, k, _ in dirty] == [(0, "d")] and dirty[0][2] is not None  # no tombstone
    assert counted(metrics, "devices_forgotten") == 1


def test_sweeps_are_rate_limited_by_the_partition_clock_not_every_commit() -> None:
    t, _ = table()
    seen(t, "a", 0, 0)
    seen(t, "b", 0, IDLE)
    assert t.expire() == 1  # a
    seen(t, "c", 0, IDLE + 1)
    seen(t, "b", 0, IDLE + 2 * IDLE)  # c idle since IDLE + 1 + IDLE
    assert t.expire() == 0 and t.device("c") is not None  # the next sweep is a minute of clock on
    seen(t, "b", 0, IDLE + SWEEP_EVERY_MS)
    assert t.expire() == 1 and t.device("c") is None
    assert t.expire() == 0  # nothing more is due


def test_pending_too_late_counts_of_a_forgotten_device_are_still_emitted() -> None:
    t, _ = table()
    seen(t, "d", 0, 500 * S, event_ms=500 * S)  # the watermark (capped by Kafka time) on to 500 s
    seen(t, "d", 0, 500 * S + 1, event_ms=0)  # too late, in the transaction that forgets d
    seen(t, "x", 0, 500 * S + 1 + IDLE)
    assert t.expire() == 1
    counts = [(k, r["count"]) for _, k, r in emitted(t) if r["kind"] == "too_late"]
    assert counts == [("d/t/too_late", 1)]


def test_seen_survives_a_restore_and_a_tombstone_restores_nothing() -> None:
    t, _ = table()
    seen(t, "d", 3, 5 * S)
    seen(t, "e", 3, 6 * S)
    state = {k: v for _, k, v in t.dirty()}
    again, _ = table()
    again.load(3, "d", state["d"], record_ms=99 * S)
    again.load(3, "e", state["e"], record_ms=99 * S)
    assert again.device("d") == t.device("d") and again.device("d").seen == 5 * S  # type: ignore[union-attr]
    again.load(3, "e", None)  # the tombstone of a forgotten device
    assert again.device("e") is None and len(again) == 1
    # after a restore the clock starts with the records processed: the first one past d's idle time
    # forgets d at the next sweep
    seen(again, "f", 3, 5 * S + IDLE)
    assert again.expire() == 1 and again.dirty()[0] == (3, "d", None)


def test_a_state_record_from_before_seen_was_kept_counts_as_active_when_it_was_written() -> None:
    obj = DeviceWindows().to_obj()
    del obj["seen"]
    assert DeviceWindows.from_obj(obj, record_ms=42).seen == 42


def test_an_abort_drops_the_forgetting_with_the_rest_of_the_transaction() -> None:
    t, _ = table()
    seen(t, "old", 0, 0)
    seen(t, "live", 0, IDLE)
    assert t.expire() == 1
    t.drop_partitions({0})  # the abort's rewind: the restore brings old back
    assert t.records() == [] and t.dirty() == []


def test_a_device_on_another_partition_is_counted_and_logged_not_moved(
        caplog: pytest.LogCaptureFixture) -> None:
    t, metrics = table()
    seen(t, "d", 0, 0)
    seen(t, "d", 1, 1)  # the processed topic grew: its key hashes elsewhere now
    assert counted(metrics, "devices_moved") == 1
    assert "another input partition" in caplog.text and "docs/aggregates.md" in caplog.text
    assert [(p, k) for p, k, _ in t.dirty()] == [(0, "d")]  # its state stays where it was
    assert {p for p, _, _ in t.records()} == {0}
    # restored from two partitions (written there by two owners): counted too; a tombstone in the
    # other partition does not delete the state of this one
    state = t.dirty()[0][2]
    again, again_metrics = table()
    again.load(0, "d", state)
    again.load(1, "d", None)
    assert again.device("d") is not None
    again.load(1, "d", state)
    assert counted(again_metrics, "devices_moved") == 1


def test_idle_days_config() -> None:
    assert AggregateSettings().idle_ms == 7 * 86_400_000
    assert AggregateSettings(idle_days=0).idle_ms is None
    with pytest.raises(ConfigError, match="idle_days"):
        AggregateSettings(idle_days=-1).validate()
