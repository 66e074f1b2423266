"""The aggregator against real Kafka: kill -9 mid-window, restart, and every window's figures equal a
recomputation from the processed topic (read committed) under the same window and lateness rule.

The evidence that the fault happened and mattered: before the kill the aggregator had committed window
records, some of them not final yet (the kill lands mid-window) and its group's offsets were short of the
input's end; the kill's exit status is -9; the restart restored window state for every device from
``iot.aggregates.state`` (its log says so), and the figures then match only if nothing committed was
applied twice and nothing was lost. The recomputation below is written independently of
``enricher.aggregates.windows``.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from edgebridge import envelope
from edgebridge.topics import KafkaTopics
from tests.conftest import BrokerAddresses
from tests.enricher.conftest import COMPACT, enricher_config, read_all, values, write_toml
from tests.enricher.test_crash import _owned, group_offsets
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers

WINDOW_S, LATENESS_S = 60, 30
SIZE, LATENESS = WINDOW_S * 1000, LATENESS_S * 1000
T0 = 1_796_515_200_000  # 2026-12-06T00:00:00Z
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TEN_YEARS = 3650 * 86_400_000
MAX_AHEAD = 300_000  # the aggregator's default max_ahead_seconds
RESTORED = re.compile(r'msg="partitions assigned, dedup state restored" partitions=(\S+) offsets=(\S+) '
                      r"devices=(\d+)")


def processed_event(deviceid: str, seq: int, time_ms: int, rng: random.Random) -> bytes:
    """A record as the enricher writes it to iot.events.processed (the fields the aggregator reads)."""
    readings = {"temperature": {"v": round(rng.uniform(-5, 35), 2), "u": "Cel"},
                "count": {"v": rng.randint(0, 1000)},
                "state": {"v": rng.choice(["on", "off"])},  # not a number: skipped
                "door": {"v": rng.random() < 0.5}}  # a bool is not a number: skipped
    event = envelope.new_reading(deviceid, seq, readings, time=envelope.rfc3339_ms(time_ms))
    obj = envelope.to_dict(event)
    obj["type"] = envelope.PROCESSED_TYPE
    obj["data"] = {"readings": readings, "derived": {}, "flags": [], "late": False}
    return orjson.dumps(obj)


def fleet(devices: int, per_device: int, seed: int) -> list[tuple[str, bytes]]:
    """Events of every device, interleaved; each device's clock moves 1-9 s a step; ~15 % of the events
    are late, 5-170 s back: some inside the 30 s lateness after their window's end, some beyond it. A gap
    event now and then (not a processed reading: skipped), and now and then a reading of a clock ten
    years ahead (counted as ahead, not applied)."""
    rng = random.Random(seed)
    clocks = {f"agg-{d}": T0 + rng.randint(0, 50_000) for d in range(devices)}
    streams: dict[str, list[bytes]] = {d: [] for d in clocks}
    for d in clocks:
        for seq in range(1, per_device + 1):
            clocks[d] += rng.randint(1000, 9000)
            when = clocks[d] - rng.randint(5_000, 170_000) if rng.random() < 0.15 else clocks[d]
            if seq % 70 == 0:
                streams[d].append(processed_event(d, seq, clocks[d] + TEN_YEARS, rng))
            elif seq % 50 == 0:
                streams[d].append(envelope.encode(envelope.new_gap(d, seq, seq - 1, seq - 1, "evicted",
                                                                   time=envelope.rfc3339_ms(when))))
            else:
                streams[d].append(processed_event(d, seq, when, rng))
    out: list[tuple[str, bytes]] = []
    while any(streams.values()):
        d = rng.choice([d for d, s in streams.items() if s])
        out.append((d, streams[d].pop(0)))
    return out


class Feeder:
    """Produces events at a steady pace on a thread (the input keeps flowing across the kill)."""

    def __init__(self, bootstrap: str, topic: str, records: list[tuple[str, bytes]], per_second: float):
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        self.topic, self.records, self.pause = topic, records, 1.0 / per_second
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            for key, value in self.records:
                self.producer.produce(self.topic, value, key.encode())
                self.producer.poll(0)
                time.sleep(self.pause)
            assert self.producer.flush(30) == 0
        except BaseException as exc:
            self.error = exc

    def start(self) -> Feeder:
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(120)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


def ms_of(text: str) -> int:
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(milliseconds=1)


def recompute(events: list[dict[str, Any]]) -> tuple[dict[tuple[str, str, int], dict[str, Any]],
                                                      Counter[tuple[str, str, str]], int]:
    """Every window's figures, every (kind, device, measurement)'s too-late and ahead count, and how many
    events were late (behind their device's watermark) but applied, from the processed events in their
    topic's order (a device's events are in one partition, in order). The records were produced just now:
    an event time past now + MAX_AHEAD is ahead of any of their timestamps' bounds."""
    bound = time.time() * 1000 + MAX_AHEAD
    late_applied = 0
    watermark: dict[str, int] = {}
    applied: dict[tuple[str, str, int], list[tuple[int, Any]]] = {}
    too_late: Counter[tuple[str, str, str]] = Counter()
    for ev in events:
        if ev["type"] != envelope.PROCESSED_TYPE:
            continue
        d, t = ev["deviceid"], ms_of(ev["time"])
        start = t // SIZE * SIZE
        numbers = {m: r["v"] for m, r in ev["data"]["readings"].items()
                   if isinstance(r["v"], int | float) and not isinstance(r["v"], bool)}
        if t > bound:
            too_late.update(("ahead", d, m) for m in numbers)
            continue
        if d in watermark and watermark[d] >= start + SIZE + LATENESS:
            too_late.update(("too_late", d, m) for m in numbers)
            continue
        late_applied += d in watermark and t < watermark[d]
        for m, v in numbers.items():
            applied.setdefault((d, m, start), []).append((t, v))
        watermark[d] = max(watermark.get(d, t), t)
    windows = {}
    for (d, m, start), vals in applied.items():
        total = vals[0][1]
        for _, v in vals[1:]:
            total += v
        last = max(range(len(vals)), key=lambda i: (vals[i][0], i))  # latest time; of equal, the later
        windows[(d, m, start)] = {"count": len(vals), "min": min(v for _, v in vals),
                                  "max": max(v for _, v in vals), "mean": total / len(vals),
                                  "last": vals[last][1], "final": watermark[d] >= start + SIZE + LATENESS}
    return windows, too_late, late_applied


def latest_per_key(msgs: list[Any]) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for msg in sorted(msgs, key=lambda m: (m.partition(), m.offset())):
        latest[msg.key().decode()] = orjson.loads(msg.value())
    return latest


def test_kill_9_mid_window_then_every_window_equals_a_recomputation(
    brokers: BrokerAddresses, kafka_topic: Callable[..., str], consumer_group: Callable[[], str],
    spawn_cli: Callable[..., subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    bootstrap = brokers.kafka_bootstrap
    topics = KafkaTopics(processed=kafka_topic("processed", 2), aggregates=kafka_topic("aggregates", 2),
                         aggregates_state=kafka_topic("aggstate", 2, COMPACT),
                         deadletter=kafka_topic("dlq"))
    group = consumer_group()
    config = enricher_config(brokers, topics, group, **{
        "aggregates.group_id": group, "aggregates.transactional_id_prefix": group,
        "aggregates.instance_id": "agg-0", "aggregates.window_seconds": WINDOW_S,
        "aggregates.lateness_seconds": LATENESS_S, "aggregates.commit_interval_ms": 200})
    path = write_toml(tmp_path / "enricher.toml", config)
    records = fleet(devices=6, per_device=200, seed=12)
    first, rest = records[:500], records[500:]

    Feeder(bootstrap, topics.processed, first, per_second=10_000).start().join()
    run0 = spawn_cli("aggregator-0", "aggregator", "run", "--config", str(path))
    feeder = Feeder(bootstrap, topics.processed, rest, per_second=150)  # ~5 s of input still to come
    with group_offsets(bootstrap, group, topics.processed, 2) as committed:
        wait_for(lambda: sum(committed()) >= 2 * len(first) // 3, 90, "the first run committing")
        feeder.start()
        time.sleep(1.0)  # into the stream that is still flowing
        run0.send_signal(signal.SIGKILL)
        assert run0.wait(30) == -signal.SIGKILL
        assert feeder.thread.is_alive(), "the input had ended before the kill"
        # what the killed run had committed: some of the input, not all, with windows still open
        done = sum(max(0, o) for o in committed())
        assert 0 < done < len(records), done
        at_kill = latest_per_key(read_all(bootstrap, topics.aggregates, timeout=10))
        assert at_kill, "nothing committed before the kill"
        assert any(r.get("final") is False for r in at_kill.values()), "no window open at the kill"

        run1 = spawn_cli("aggregator-1", "aggregator", "run", "--config", str(path))
        # up (its stop handler installed) and restored before anything else is judged
        wait_for(lambda: RESTORED.search((tmp_path / "aggregator-1.log").read_text()), 90, "the restart")
        feeder.join()
        wait_for(lambda: sum(max(0, o) for o in committed()) == len(records), 120,
                 "the restart processing everything")
    run1.send_signal(signal.SIGTERM)
    assert run1.wait(60) == 0

    log1 = (tmp_path / "aggregator-1.log").read_text()
    restored = [int(m.group(3)) for m in RESTORED.finditer(log1)]
    assert sum(restored) == 6, log1[-3000:]  # every device's windows came from the state topic

    expected, expected_late, late_applied, windows = _compare(bootstrap, topics, records)
    # the input exercises both sides of the lateness: late events applied to their open window, and
    # events too late for their closed one
    assert late_applied > 20 and sum(expected_late.values()) > 20, (late_applied, expected_late)
    assert {kind for kind, _, _ in expected_late} == {"too_late", "ahead"}
    assert {m for _, m, _ in windows} == {"temperature", "count"}  # strings and bools skipped
    assert all(w["end"] == envelope.rfc3339_ms(start + SIZE) for (_, _, start), w in windows.items())
    assert sum(1 for w in expected.values() if w["final"]) > 100
    assert any(not w["final"] for w in expected.values())  # each device's last windows stay open


def _compare(bootstrap: str, topics: KafkaTopics, records: list[tuple[str, bytes]]) -> tuple[
        dict[tuple[str, str, int], dict[str, Any]], Counter[tuple[str, str, str]], int,
        dict[tuple[str, str, int], dict[str, Any]]]:
    """Every window and too-late count of iot.aggregates (the latest record of each key) equals the
    recomputation from the processed topic (read committed); returns the recomputation (windows,
    too-late counts, late events applied) and the topic's windows."""
    events = values(read_all(bootstrap, topics.processed, expect=len(records)))
    assert len(events) == len(records)
    expected, expected_late, late_applied = recompute(events)
    latest = latest_per_key(read_all(bootstrap, topics.aggregates, timeout=30))
    windows = {(r["deviceid"], r["measurement"], ms_of(r["start"])): r
               for r in latest.values() if r["kind"] == "window"}
    assert set(windows) == set(expected)
    for key, want in expected.items():
        got = windows[key]
        assert (got["count"], got["min"], got["max"], got["last"], got["final"]) == (
            want["count"], want["min"], want["max"], want["last"], want["final"]), key
        assert got["mean"] == pytest.approx(want["mean"], rel=1e-12), key
    assert {(r["kind"], r["deviceid"], r["measurement"]): r["count"] for r in latest.values()
            if r["kind"] != "window"} == dict(expected_late)
    return expected, expected_late, late_applied, windows


def test_a_second_instance_takes_a_partition_with_its_windows_then_all_after_a_kill(
    brokers: BrokerAddresses, kafka_topic: Callable[..., str], consumer_group: Callable[[], str],
    spawn_cli: Callable[..., subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    """Cooperative rebalancing hands a partition over with its window state (a commits on revoke, b
    restores), and a kill -9 of a hands b the rest after a's session and transaction time out."""
    bootstrap = brokers.kafka_bootstrap
    topics = KafkaTopics(processed=kafka_topic("processed", 2), aggregates=kafka_topic("aggregates", 2),
                         aggregates_state=kafka_topic("aggstate", 2, COMPACT),
                         deadletter=kafka_topic("dlq"))
    group = consumer_group()

    def config(instance: str) -> Path:
        c = enricher_config(brokers, topics, group, **{
            "aggregates.group_id": group, "aggregates.transactional_id_prefix": group,
            "aggregates.instance_id": instance, "aggregates.window_seconds": WINDOW_S,
            "aggregates.lateness_seconds": LATENESS_S, "aggregates.commit_interval_ms": 100})
        return write_toml(tmp_path / f"{instance}.toml", c)

    records = fleet(devices=8, per_device=150, seed=21)
    first, rest = records[:400], records[400:]
    Feeder(bootstrap, topics.processed, first, per_second=10_000).start().join()
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    every = {"0", "1"}
    with group_offsets(bootstrap, group, topics.processed, 2) as committed:
        a = spawn_cli("a", "aggregator", "run", "--config", str(config("a")))
        wait_for(lambda: _owned(log_a) == every and min(committed()) >= 0, 90, "a committing on both")
        feeder = Feeder(bootstrap, topics.processed, rest, per_second=100).start()  # ~8 s of input
        b = spawn_cli("b", "aggregator", "run", "--config", str(config("b")))
        wait_for(lambda: _owned(log_a) and _owned(log_b), 60, "both instances owning a partition")
        handed = [int(m.group(3)) for m in RESTORED.finditer(log_b.read_text())]
        assert handed and handed[0] > 0, "b restored no window state from a's commits"
        a.send_signal(signal.SIGKILL)
        assert a.wait(30) == -signal.SIGKILL
        assert sum(max(0, o) for o in committed()) < len(records), "the kill came after everything"
        wait_for(lambda: _owned(log_b) == every, 90, "b taking over a's partition")
        feeder.join()
        wait_for(lambda: sum(max(0, o) for o in committed()) == len(records), 120, "b processing everything")
    b.send_signal(signal.SIGTERM)
    assert b.wait(60) == 0
    _compare(bootstrap, topics, records)


def _table(kind: str, target: str) -> list[dict[str, Any]]:
    query = "SELECT key, kind, device_id, measurement, count, min, max, mean, last, final FROM aggregates"
    names = [c.strip() for c in query[7:query.index(" FROM")].split(",")]
    if kind == "sqlite":
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(target, timeout=10)) as conn:
            rows = conn.execute(query).fetchall()
    else:
        import psycopg

        with psycopg.connect(target) as conn:
            rows = conn.execute(query).fetchall()
    return [dict(zip(names, row, strict=True)) for row in rows]


def _stored(kind: str, target: str, topic: str) -> int:
    query = "SELECT coalesce(sum(next_offset), 0) FROM sink_offsets WHERE topic = "
    if kind == "sqlite":
        import sqlite3
        from contextlib import closing

        if not Path(target).exists():
            return 0
        with closing(sqlite3.connect(target, timeout=10)) as conn:
            try:
                return int(conn.execute(query + "?", [topic]).fetchone()[0])
            except sqlite3.OperationalError:  # not created yet
                return 0
    import psycopg

    with psycopg.connect(target) as conn:
        try:
            return int(conn.execute(query + "%s", [topic]).fetchone()[0])
        except psycopg.errors.UndefinedTable:
            return 0


def _quarantined(kind: str, target: str) -> list[tuple[str, int, str]]:
    query = "SELECT original_topic, original_offset, reason FROM sink_quarantine"
    if kind == "sqlite":
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(target, timeout=10)) as conn:
            return [tuple(r) for r in conn.execute(query).fetchall()]
    import psycopg

    with psycopg.connect(target) as conn:
        return [tuple(r) for r in conn.execute(query).fetchall()]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_sink_table_holds_the_latest_figures_of_every_window(
    kind: str, brokers: BrokerAddresses, kafka_topic: Callable[..., str], consumer_group: Callable[[], str],
    spawn_cli: Callable[..., subprocess.Popen[bytes]], tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    from edgebridge.config import dump_config, load_config
    from enricher.aggregates.aggregator import Aggregator
    from enricher.sinks import SinkConfig

    bootstrap = brokers.kafka_bootstrap
    topics = KafkaTopics(processed=kafka_topic("processed", 2), aggregates=kafka_topic("aggregates", 2),
                         aggregates_state=kafka_topic("aggstate", 2, COMPACT),
                         deadletter=kafka_topic("dlq"))
    group = consumer_group()
    config = enricher_config(brokers, topics, group, **{
        "aggregates.group_id": group, "aggregates.transactional_id_prefix": group,
        "aggregates.window_seconds": WINDOW_S, "aggregates.lateness_seconds": LATENESS_S,
        "aggregates.commit_interval_ms": 100})
    records = fleet(devices=3, per_device=120, seed=7)
    records.append(("agg-0", b"not an event"))  # the aggregator's bad input: a dead letter
    Feeder(bootstrap, topics.processed, records, per_second=10_000).start().join()
    stop = threading.Event()
    aggregator = Aggregator(config)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            aggregator.run(stop)
        except BaseException as exc:
            failed.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        with group_offsets(bootstrap, group, topics.processed, 2) as committed:
            wait_for(lambda: failed or sum(max(0, o) for o in committed()) == len(records), 90,
                     "the aggregator processing everything")
    finally:
        stop.set()
        worker.join(60)
    assert not worker.is_alive() and not failed, failed
    dead = read_all(bootstrap, topics.deadletter, expect=1, timeout=20)
    assert [(m.value(), dict(m.headers())["dlq_component"]) for m in dead] == [
        (b"not an event", b"aggregator")]
    (not_json,) = [m.offset() for m in read_all(bootstrap, topics.processed, expect=len(records))
                   if m.value() == b"not an event"]

    produce_bad = Producer({"bootstrap.servers": bootstrap})
    produce_bad.produce(topics.aggregates, b'{"kind": "window"}', b"agg-0/x/bad", partition=0)
    assert produce_bad.flush(30) == 0  # a record the sink cannot use: quarantined, the rest goes on
    aggregates = read_all(bootstrap, topics.aggregates, timeout=30)
    bad = [m for m in aggregates if m.key() == b"agg-0/x/bad"]
    assert len(bad) == 1
    # what the sink stores when it is done: the offset after each partition's last record (transaction
    # markers are offsets no consumer is given)
    ends: dict[int, int] = {}
    for m in aggregates:
        ends[m.partition()] = max(ends.get(m.partition(), 0), m.offset() + 1)
    latest = latest_per_key([m for m in aggregates if m.key() != b"agg-0/x/bad"])
    assert {r["kind"] for r in latest.values()} == {"window", "too_late", "ahead"}

    if kind == "sqlite":
        target = str(tmp_path / "sink.db")
        args = ["--db", target]
    else:
        import psycopg

        target = request.getfixturevalue("postgres").dsn
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS readings, aggregates, sink_offsets, sink_quarantine")
        args = ["--dsn", target]
    sink = load_config(SinkConfig, None, env={}, overrides={
        "group_id": consumer_group(), "topics.processed": topics.processed,
        "topics.aggregates": topics.aggregates, "aggregates": True,
        "kafka.bootstrap": bootstrap, "metrics.enabled": False})
    (tmp_path / "sink.toml").write_text(dump_config(sink))
    proc = spawn_cli("sink", "sink", kind, *args, "--config", str(tmp_path / "sink.toml"))
    wait_for(lambda: _stored(kind, target, topics.aggregates) == sum(ends.values()), 90,
             "the sink storing every aggregates offset")
    wait_for(lambda: _stored(kind, target, topics.processed) == len(records), 30, "processed offsets too")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0

    if kind == "sqlite":  # the operator's view of one device's windows: `edgebridge tail aggregates`
        import os
        import sys

        env = {**os.environ, "EDGEBRIDGE_KAFKA_BOOTSTRAP": bootstrap,
               "EDGEBRIDGE_TOPICS_AGGREGATES": topics.aggregates}
        shown = subprocess.run([sys.executable, "-m", "edgebridge", "tail", "aggregates", "--device", "agg-1",
                                "--json"], env=env, capture_output=True, text=True, timeout=60, check=True)
        keys = [orjson.loads(line)["key"] for line in shown.stdout.splitlines()]
        mine = [m.key().decode() for m in aggregates if m.key().startswith(b"agg-1/")]
        assert keys == mine and len(mine) > 10  # and none of agg-0's or agg-2's

    table = {row["key"]: row for row in _table(kind, target)}
    assert set(table) == set(latest)
    assert sorted(_quarantined(kind, target)) == sorted([
        (topics.aggregates, bad[0].offset(), "bad_row"), (topics.processed, not_json, "not_json")])
    for key, record in latest.items():
        row = table[key]
        assert (row["kind"], row["device_id"], row["measurement"], row["count"]) == (
            record["kind"], record["deviceid"], record["measurement"], record["count"]), key
        if record["kind"] == "window":
            assert (row["min"], row["max"], row["last"], bool(row["final"])) == (
                record["min"], record["max"], record["last"], record["final"]), key
            assert row["mean"] == pytest.approx(record["mean"], rel=1e-12)
