"""``edgebridge aggregator check`` against real Kafka and the real aggregator.

The real aggregator turns processed events (late ones, too-late ones, clocks ten years ahead, gap events)
into iot.aggregates; the check, run as an operator runs it, finds them equal to its recomputation, and as
many windows as an independent recomputation (tests/enricher/test_aggregates.py's, which does not use the
window code) makes. Then the test forges the topic: a window's count made wrong, a window deleted (a
tombstone: the latest record of its key is gone), a window that no event made. Each forgery is read back
from the topic first, then the check must exit 1 and name exactly those three keys.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from edgebridge.envelope import rfc3339_ms
from tests.conftest import BrokerAddresses
from tests.enricher.conftest import enricher_config, read_all, spawn_cli, values, write_toml  # noqa: F401
from tests.enricher.test_aggregates import (
    LATENESS_S,
    T0,
    WINDOW_S,
    Feeder,
    fleet,
    latest_per_key,
    processed_event,
    recompute,
)
from tests.enricher.test_crash import group_offsets
from tests.tools.conftest import Tools
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers


def _check(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgebridge", "aggregator", "check", "--config", str(config),
                           *extra], capture_output=True, text=True, timeout=120)


def test_the_check_passes_on_the_aggregators_output_and_names_every_forgery(
    tools: Tools, brokers: BrokerAddresses, consumer_group: Callable[[], str],
    spawn_cli: Callable[..., subprocess.Popen[bytes]], tmp_path: Path,  # noqa: F811
) -> None:
    topics, group = tools.topics, consumer_group()
    config = write_toml(tmp_path / "enricher.toml", enricher_config(brokers, topics, group, **{
        "aggregates.group_id": group, "aggregates.transactional_id_prefix": group,
        "aggregates.instance_id": "check-0", "aggregates.window_seconds": WINDOW_S,
        "aggregates.lateness_seconds": LATENESS_S, "aggregates.commit_interval_ms": 200}))
    records = fleet(devices=3, per_device=150, seed=5)
    Feeder(tools.bootstrap, topics.processed, records, per_second=10_000).start().join()

    run = spawn_cli("aggregator", "aggregator", "run", "--config", str(config))
    with group_offsets(tools.bootstrap, group, topics.processed, 2) as committed:
        wait_for(lambda: sum(max(0, o) for o in committed()) == len(records), 90, "the aggregator")
    run.send_signal(signal.SIGTERM)
    assert run.wait(60) == 0

    result = _check(config, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    # not an empty success: what an independent recomputation expects, and too-late and ahead counts
    expected, late, _ = recompute(values(read_all(tools.bootstrap, topics.processed, expect=len(records))))
    assert doc["windows"] == len(expected) > 50 and doc["counts"] == len(late) > 3, doc
    assert (doc["processed"], doc["records"], doc["devices"], doc["behind"]) == (
        topics.processed, len(records), 3, 0), doc
    assert doc["differences"] == [], doc
    table = _check(config)
    assert table.returncode == 0 and table.stdout.startswith(
        f"aggregates: {len(expected)} windows, {len(late)} too-late/ahead counts, equal to a recomputation"
    ), table.stdout + table.stderr

    latest = latest_per_key(read_all(tools.bootstrap, topics.aggregates, timeout=10))
    windows = sorted(k for k, v in latest.items() if v["kind"] == "window")
    wrong, gone = windows[0], windows[-1]
    forged = {**latest[wrong], "count": latest[wrong]["count"] + 1}
    device = latest[wrong]["deviceid"]
    extra = f"{device}/temperature/2030-01-01T00:00:00.000Z"
    producer = Producer({"bootstrap.servers": tools.bootstrap, "enable.idempotence": True})
    for key, value in ((wrong, orjson.dumps(forged)), (gone, None),
                       (extra, orjson.dumps({**latest[wrong], "start": "2030-01-01T00:00:00.000Z"}))):
        producer.produce(topics.aggregates, value, key.encode(), partition=0)
    assert producer.flush(30) == 0
    # the forgeries are in the topic, read back without the check's code
    stored = read_all(tools.bootstrap, topics.aggregates, timeout=10)
    now = {m.key().decode(): m.value() for m in sorted(stored, key=lambda m: (m.partition(), m.offset()))}
    assert orjson.loads(now[wrong])["count"] == latest[wrong]["count"] + 1
    assert now[gone] is None and extra in now

    result = _check(config, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    found = {(d["kind"], d["key"], d["field"]) for d in doc["differences"]}
    assert found == {("different", wrong, "count"), ("missing", gone, None), ("extra", extra, None)}, found
    (diff,) = [d for d in doc["differences"] if d["kind"] == "different"]
    assert (diff["topic"], diff["recomputed"]) == (forged["count"], latest[wrong]["count"])
    table = _check(config)
    assert table.returncode == 1
    assert all(key in table.stdout for key in (wrong, gone, extra)), table.stdout
    assert "1 missing, 1 extra, 1 different" in table.stdout.splitlines()[-1], table.stdout
    # one device only: the other devices' windows are left out, and with them the forgeries
    other = sorted({k.split("/", 1)[0] for k in windows} - {device, gone.split("/", 1)[0]})[0]
    assert _check(config, "--device", other).returncode == 0

    # a processed reading the (stopped) aggregator never applied: its windows are missing, and the check
    # says the aggregator's group was one record behind
    new = processed_event("agg-new", 1, T0, random.Random(1))
    Feeder(tools.bootstrap, topics.processed, [("agg-new", new)], per_second=100).start().join()
    result = _check(config, "--device", "agg-new")
    assert result.returncode == 1
    assert "1 processed records behind" in result.stdout, result.stdout
    assert f"agg-new/temperature/{rfc3339_ms(T0)}" in result.stdout, result.stdout
