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
from edgebridge.envelope import PROCESSED_TYPE, Event
from enricher.sinks import SinkConfig
from tests.conftest import BrokerAddresses
from tests.enricher.conftest import produce, wait_for

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
    records.append(("d0", b'{"type": "edgebridge.gap.v1"}'))  # not a reading: skipped, offset still stored
    # Produced in four parts, one before each run: every kill then lands while records are still to
    # come (on a fast machine a sink given everything at once finished before the first kill).
    quarter = len(records) // 4
    parts = [records[:quarter], records[quarter:2 * quarter], records[2 * quarter:3 * quarter],
             records[3 * quarter:]]
    config = load_config(SinkConfig, None, env={}, overrides={
        "group_id": consumer_group(), "topics.processed": topic, "kafka.bootstrap": brokers.kafka_bootstrap,
        "batch_max": 50, "instance_id": "sink-0"})
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
            conn.execute("DROP TABLE IF EXISTS readings, sink_offsets")
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
