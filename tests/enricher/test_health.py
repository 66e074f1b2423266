"""``/healthz`` of the enricher and the SQLite sink means their loop turns: each is stalled for real (the
loop itself blocks: a pipeline step, a database write behind another writer's lock), answers 503 while
it is stuck, and 200 again once the loop moves on. ``EDGEBRIDGE_METRICS_PORT`` picks the port."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgebridge.config import dump_config, load_config
from edgebridge.devbrokers._process import free_port
from edgebridge.envelope import new_reading
from edgebridge.topics import KafkaTopics
from enricher.config import DEFAULT_STEPS
from enricher.sinks import SinkConfig
from tests.conftest import BrokerAddresses
from tests.enricher.conftest import enricher_config, produce, read_all, write_toml
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers

STALL_AFTER = 1.0


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:  # not listening yet
        return 0, ""


def _health(port: int, proc: subprocess.Popen[bytes], log: Path) -> tuple[int, dict[str, Any]]:
    assert proc.poll() is None, log.read_text()[-3000:]
    status, body = _get(f"http://127.0.0.1:{port}/healthz")
    return status, (json.loads(body)["detail"] if body else {})


def _wait_status(port: int, proc: subprocess.Popen[bytes], log: Path, want: int, what: str) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        status, detail = _health(port, proc, log)
        return detail if status == want else None

    detail: dict[str, Any] = wait_for(seen, 90, what, every=0.1)
    return detail


def test_enricher_healthz_turns_503_while_a_step_blocks_its_loop_and_200_after(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str],
    spawn_cli: Callable[..., subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    topics = make_topics(1)
    config = enricher_config(brokers, topics, consumer_group(), **{
        "metrics.enabled": True, "stall_after": STALL_AFTER,
        "pipeline.steps": [*DEFAULT_STEPS, "tests.enricher.stall_step:step"]})
    stall, port = tmp_path / "stall", free_port()
    proc = spawn_cli("enricher", "enricher", "run", "--config", str(write_toml(tmp_path / "e.toml", config)),
                     env={"EDGEBRIDGE_METRICS_PORT": str(port), "EDGEBRIDGE_TEST_STALL_FILE": str(stall)})
    log = tmp_path / "enricher.log"
    _wait_status(port, proc, log, 200, "the enricher's loop turning")
    status, metrics = _get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200 and "edgebridge_enricher_consumed_total" in metrics

    stall.touch()  # the step now blocks on the next event: the loop is stuck inside one turn
    produce(brokers.kafka_bootstrap, topics.raw, [("d1", new_reading("d1", 1, {"t": {"v": 1, "u": "Cel"}}))])
    detail = _wait_status(port, proc, log, 503, "503 while the step blocks the loop")
    assert detail["loop"] == "stalled" and detail["last_turn_age_s"] > STALL_AFTER

    stall.unlink()
    _wait_status(port, proc, log, 200, "200 once the loop turns again")
    assert len(read_all(brokers.kafka_bootstrap, topics.processed, expect=1)) == 1


def test_sqlite_sink_serves_metrics_and_healthz_turns_503_while_its_write_waits_on_a_lock(
    brokers: BrokerAddresses, kafka_topic: Callable[..., str], consumer_group: Callable[[], str],
    spawn_cli: Callable[..., subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    topic = kafka_topic("processed", 1)
    config = load_config(SinkConfig, None, env={}, overrides={
        "group_id": consumer_group(), "topics.processed": topic, "kafka.bootstrap": brokers.kafka_bootstrap,
        "stall_after": STALL_AFTER})
    conf = tmp_path / "sink.toml"
    conf.write_text(dump_config(config))
    db, port = tmp_path / "sink.db", free_port()
    proc = spawn_cli("sink", "sink", "sqlite", "--db", str(db), "--config", str(conf),
                     env={"EDGEBRIDGE_METRICS_PORT": str(port)})
    log = tmp_path / "sink.log"
    _wait_status(port, proc, log, 200, "the sink's loop turning")
    status, metrics = _get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200 and "edgebridge_sink_written_total 0.0" in metrics

    # Another writer holds the database: the sink's next write waits in SQLite's busy handler (5 s)
    holder = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        produce(brokers.kafka_bootstrap, topic, [("d1", b"not an event")])  # to quarantine: one write
        detail = _wait_status(port, proc, log, 503, "503 while the write waits on the lock")
        assert detail["loop"] == "stalled" and detail["last_turn_age_s"] > STALL_AFTER
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _wait_status(port, proc, log, 200, "200 once the write went through")
    status, metrics = _get(f"http://127.0.0.1:{port}/metrics")
    assert "edgebridge_sink_quarantined_total 1.0" in metrics
