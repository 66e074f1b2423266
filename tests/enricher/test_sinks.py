"""Sinks killed with kill -9 mid-batch and restarted: each event exactly once in the database."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from edgebridge.config import dump_config, load_config
from edgebridge.envelope import PROCESSED_TYPE, Event, encode, new_gap
from enricher.sinks import SinkConfig
from tests.conftest import BrokerAddresses
from tests.enricher.conftest import produce
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers


def _processed(device: str, seq: int) -> Event:
    data = {"readings": {"t": {"v": seq, "u": "Cel"}}, "derived": {}, "flags": [], "late": False,
            "device": {"registered": True, "site": "s1"}, "processtime": "2024-01-01T00:00:00Z"}
    return Event(f"{device}-{seq}", device, seq, PROCESSED_TYPE, f"2024-01-01T00:{seq // 60 % 60:02d}:"
                 f"{seq % 60:02d}Z", data)


def _sqlite_count(db: Path) -> tuple[int, int, int]:
    if not db.exists():
        return 0, 0, 0
    with closing(sqlite3.connect(db, timeout=10)) as conn:
        try:
            n, distinct = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM readings").fetchone()
            (offsets,) = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM sink_offsets").fetchone()
        except sqlite3.OperationalError:  # tables not created yet
            return 0, 0, 0
    return n, distinct, offsets


def _pg_count(dsn: str) -> tuple[int, int, int]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        try:
            n, distinct = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM readings").fetchone()
            (offsets,) = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM sink_offsets").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0, 0, 0
    return int(n), int(distinct), int(offsets)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_sink_killed_mid_batch_and_restarted_holds_each_event_once(
    kind: str, brokers: BrokerAddresses, kafka_topic: Callable[..., str], consumer_group: Callable[[], str],
    spawn_cli: Callable[..., subprocess.Popen[bytes]], tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    topic = kafka_topic("processed", 2)
    devices, per_device = 10, 400
    total = devices * per_device
    records: list[tuple[str | None, Any]] = [
        (f"d{d}", _processed(f"d{d}", s)) for s in range(1, per_device + 1) for d in range(devices)]
    records.append(("d0", b'{"type": "edgebridge.gap.v1"}'))  # not an event: quarantined, offset stored
    # Produced in four parts, one before each run: every kill then lands while records are still to
    # come (on a fast machine a sink given everything at once finished before the first kill).
    quarter = len(records) // 4
    parts = [records[:quarter], records[quarter:2 * quarter], records[2 * quarter:3 * quarter],
             records[3 * quarter:]]
    config = load_config(SinkConfig, None, env={}, overrides={
        "group_id": consumer_group(), "topics.processed": topic, "kafka.bootstrap": brokers.kafka_bootstrap,
        "batch_max": 50, "instance_id": "sink-0", "metrics.port": 0})
    conf = tmp_path / "sink.toml"
    conf.write_text(dump_config(config))
    if kind == "sqlite":
        db = tmp_path / "sink.db"
        target = ["--db", str(db)]

        def count() -> tuple[int, int, int]:
            return _sqlite_count(db)
    else:
        pg = request.getfixturevalue("postgres")
        with __import__("psycopg").connect(pg.dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS readings, sink_offsets, sink_quarantine")
        target = ["--dsn", pg.dsn]

        def count() -> tuple[int, int, int]:
            return _pg_count(pg.dsn)
    seen = 0
    kills = 0
    for r in range(3):
        produce(brokers.kafka_bootstrap, topic, parts[r])
        proc = spawn_cli(f"sink{r}", "sink", kind, *target, "--config", str(conf))
        wait_for(lambda: count()[0] > seen, 60, "rows")  # noqa: B023
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
        seen = count()[0]
        kills += seen < total
    produce(brokers.kafka_bootstrap, topic, parts[3])
    final = spawn_cli("final", "sink", kind, *target, "--config", str(conf))
    wait_for(lambda: "resuming at stored offsets" in (tmp_path / "final.log").read_text(), 60, "assignment")
    wait_for(lambda: count()[2] == len(records), 90, "every offset stored")
    final.send_signal(signal.SIGTERM)
    assert final.wait(60) == 0
    assert count() == (total, total, len(records))
    assert kills == 3  # every kill landed before the end (a quarter of the records was still to come)
    assert "resuming at stored offsets" in (tmp_path / "final.log").read_text()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_records_a_sink_cannot_store_are_quarantined_and_the_sink_stays_up(
    kind: str, brokers: BrokerAddresses, kafka_topic: Callable[..., str], consumer_group: Callable[[], str],
    spawn_cli: Callable[..., subprocess.Popen[bytes]], tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    """Bad JSON, a NUL (jsonb refuses it), a site too long for the column an operator narrowed, a seq
    past the check he added, data that cannot fill a row: each quarantined with its reason, in the
    same database; every good record written once; the sink process never restarts."""
    from tests.enricher.test_sink_stores import Database, constrain, processed

    topic = kafka_topic("processed", 2)
    database = Database(kind, tmp_path, request.getfixturevalue("postgres") if kind == "postgres" else None)
    database.store().close()  # the sink's own tables, which the operator then constrains
    constrain(database)
    good = [processed(f"d{d}", s) for s in range(1, 51) for d in range(2)]
    hostile: list[tuple[bytes, str]] = [
        (b"\xff\xfe not json", "not_json"),
        (encode(processed("d0", 900, label="x")).replace(b'"x"', b'"a\\u0000b"'), "bad_data"),
        (encode(processed("d0", 901)).replace(b'"seq":901', b'"seq":901,"seq":902'), "duplicate_key"),
        (encode(processed("d0", 903, device={"site": "a-long-site-name"})), "db_refused"),
        (encode(processed("d0", 1_000_000)), "db_refused"),
        (encode(processed("d0", 904, late="yes")), "bad_row"),
    ]
    records: list[tuple[str | None, Any]] = [("d0", event) for event in good[:40]]
    records += [("d0", value) for value, _ in hostile]  # key d0: one partition, in this order
    records += [("d0", new_gap("d0", 60, 51, 59, "evicted"))]  # a gap event: skipped, not quarantined
    records += [("d0", event) for event in good[40:]]
    produce(brokers.kafka_bootstrap, topic, records)
    config = load_config(SinkConfig, None, env={}, overrides={
        "group_id": consumer_group(), "topics.processed": topic, "kafka.bootstrap": brokers.kafka_bootstrap,
        "batch_max": 7, "metrics.port": 0})
    conf = tmp_path / "sink.toml"
    conf.write_text(dump_config(config))
    target = ["--db", str(database.path)] if kind == "sqlite" else ["--dsn", database.dsn]
    sink = spawn_cli("sink", "sink", kind, *target, "--config", str(conf))

    def stored() -> int:
        return int(database.query("SELECT coalesce(sum(next_offset), 0) FROM sink_offsets")[0][0])

    wait_for(lambda: stored() == len(records), 90, "every offset stored")
    assert sink.poll() is None, (tmp_path / "sink.log").read_text()[-3000:]
    sink.send_signal(signal.SIGTERM)
    assert sink.wait(60) == 0
    rows = database.query("SELECT event_id, epoch FROM readings")
    assert sorted(rows) == sorted((e.id, "e1") for e in good)  # each good record once, with its epoch
    quarantined = database.query("SELECT reason, value FROM sink_quarantine ORDER BY original_offset")
    assert [(reason, bytes(value)) for reason, value in quarantined] == [(r, v) for v, r in hostile]
    log = (tmp_path / "sink.log").read_text()
    assert "Traceback" not in log and "quarantined=6" in log


def test_a_sink_fenced_by_its_static_instance_id_exits_for_a_restart(
    brokers: BrokerAddresses, kafka_topic: Callable[..., str], consumer_group: Callable[[], str],
    spawn_cli: Callable[..., subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    """As the enricher (tests/enricher/test_fenced_member.py): a sink with ``instance_id`` (static
    membership) whose member is fenced must not stay up in no group, idle and healthy; it exits 1 so
    that its supervisor restarts it. The fence is made directly: another consumer joins with its id."""
    from confluent_kafka import Consumer

    from enricher.config import EXACTLY_ONCE_CONSUMER

    topic = kafka_topic("processed", 1)
    group = consumer_group()
    produce(brokers.kafka_bootstrap, topic, [("d0", _processed("d0", s)) for s in (1, 2, 3)])
    config = load_config(SinkConfig, None, env={}, overrides={
        "group_id": group, "topics.processed": topic, "kafka.bootstrap": brokers.kafka_bootstrap,
        "instance_id": "sink-static", "metrics.port": 0})
    conf = tmp_path / "sink.toml"
    conf.write_text(dump_config(config))
    db = tmp_path / "sink.db"
    sink = spawn_cli("sink", "sink", "sqlite", "--db", str(db), "--config", str(conf))
    wait_for(lambda: _sqlite_count(db)[0] == 3, 60, "the sink writing the three rows")
    intruder = Consumer({"bootstrap.servers": brokers.kafka_bootstrap, "group.id": group,
                         "group.instance.id": "sink-static", "session.timeout.ms": 6000,
                         **EXACTLY_ONCE_CONSUMER})
    try:
        intruder.subscribe([topic])
        # the fault: the coordinator gave the instance id, and the partition, to the intruder
        wait_for(lambda: (intruder.poll(0.2), intruder.assignment())[1], 60, "the intruder's join")
        assert sink.wait(60) == 1, (tmp_path / "sink.log").read_text()[-2000:]
    finally:
        intruder.close()
    log = (tmp_path / "sink.log").read_text()
    assert "fenced" in log.lower(), log[-2000:]
    assert _sqlite_count(db) == (3, 3, 3)  # what it had written stays, offsets with it
