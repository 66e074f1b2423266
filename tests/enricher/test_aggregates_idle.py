"""An idle device is forgotten, against real Kafka: its open windows end final in ``iot.aggregates``, a
tombstone for it is committed in ``iot.aggregates.state``, and a restart restores the others only.

The fault: a device goes silent while the others go on. Time is Kafka time: the processed records are
produced with explicit timestamps (an hour ago for the first part, then 20 more minutes of Kafka time
for the other device only, one reading every 5 minutes), so a 10-minute ``idle_days`` passes without the
test waiting for it. The evidence it happened: after the first part the silent device had an open
window and a state record; after the second, read back by separate read_committed consumers, its windows
are final with the figures recomputed here from what was produced, the latest state record of its key is
a tombstone, and the restarted aggregator restored one device, not two.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from edgebridge import envelope
from edgebridge.topics import KafkaTopics
from enricher.config import EnricherConfig
from tests.conftest import BrokerAddresses
from tests.enricher.conftest import COMPACT, enricher_config, read_all
from tests.enricher.test_crash import group_offsets
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers

S = 1000
WINDOW, IDLE = 60 * S, 600 * S  # windows of a minute; idle after 10 minutes of Kafka time


def reading(deviceid: str, seq: int, time_ms: int, value: float) -> bytes:
    readings = {"t": {"v": value, "u": "Cel"}}
    event = envelope.new_reading(deviceid, seq, readings, time=envelope.rfc3339_ms(time_ms))
    obj = envelope.to_dict(event)
    obj["type"] = envelope.PROCESSED_TYPE
    obj["data"] = {"readings": readings, "derived": {}, "flags": [], "late": False}
    return orjson.dumps(obj)


def produce(bootstrap: str, topic: str, records: list[tuple[str, int, float]], seq0: int = 1) -> None:
    """(device, Kafka timestamp, value) each; the event time is the Kafka timestamp (a correct clock)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i, (d, ts, v) in enumerate(records):
        producer.produce(topic, reading(d, seq0 + i, ts, v), d.encode(), timestamp=ts)
    assert producer.flush(30) == 0


class Running:
    """An Aggregator on a thread of the test process (its metrics and table can be looked at)."""

    def __init__(self, config: EnricherConfig) -> None:
        from enricher.aggregates.aggregator import Aggregator

        self.aggregator = Aggregator(config)
        self.stop = threading.Event()
        self.failed: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.aggregator.run(self.stop)
        except BaseException as exc:
            self.failed.append(exc)

    def metric(self, name: str) -> float:
        return self.aggregator.metrics.registry.get_sample_value(f"edgebridge_aggregator_{name}") or 0.0

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive() and not self.failed, self.failed


def latest(msgs: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in sorted(msgs, key=lambda m: m.offset()):
        out[m.key().decode()] = m.value()
    return out


def test_an_idle_device_gets_its_windows_final_and_its_state_tombstoned_then_a_restart_skips_it(
    brokers: BrokerAddresses, kafka_topic: Callable[..., str], consumer_group: Callable[[], str],
    tmp_path: Path,
) -> None:
    bootstrap = brokers.kafka_bootstrap
    topics = KafkaTopics(processed=kafka_topic("processed", 1), aggregates=kafka_topic("aggregates", 1),
                         aggregates_state=kafka_topic("aggstate", 1, COMPACT), deadletter=kafka_topic("dlq"))
    group = consumer_group()
    config = enricher_config(brokers, topics, group, **{
        "aggregates.group_id": group, "aggregates.transactional_id_prefix": group,
        "aggregates.window_seconds": WINDOW / S, "aggregates.lateness_seconds": 30,
        "aggregates.idle_days": IDLE / 86_400_000, "aggregates.commit_interval_ms": 100})
    t0 = (int(time.time() * S) - 3600 * S) // WINDOW * WINDOW  # an hour ago, on a minute
    # both devices, two minutes of readings every 10 s: "old"'s last window stays open (no watermark
    # passes its end + lateness)
    first = [(d, t0 + i * 10 * S, float(i + (d == "old") * 100)) for i in range(12) for d in ("old", "live")]
    produce(bootstrap, topics.processed, first)
    run = Running(config)
    with group_offsets(bootstrap, group, topics.processed, 1) as committed:
        wait_for(lambda: run.failed or committed() == [len(first)], 90, "the first part committed")
        windows = {k: orjson.loads(v) for k, v in latest(read_all(bootstrap, topics.aggregates)).items()}
        old_open = [k for k, w in windows.items() if w["deviceid"] == "old" and not w["final"]]
        assert old_open, windows  # before: old has an open window ...
        assert latest(read_all(bootstrap, topics.aggregates_state)).get("old") is not None  # ... and state
        assert run.metric("devices_forgotten_total") == 0

        # only "live" goes on, a reading every 5 minutes of Kafka time (never idle itself) for 20
        # minutes: old is idle past 10 minutes
        later = [("live", t0 + 120 * S + i * 300 * S, float(i)) for i in range(1, 5)]
        produce(bootstrap, topics.processed, later, seq0=100)
        wait_for(lambda: run.failed or committed() == [len(first) + len(later)], 90, "the second part")
    run.close()
    assert run.metric("devices_forgotten_total") == 1

    # read back independently, read_committed: every window of old final, with the figures of what old sent
    windows = {k: orjson.loads(v) for k, v in latest(read_all(bootstrap, topics.aggregates)).items()}
    old = {w["start"]: w for w in windows.values() if w["deviceid"] == "old"}
    want: dict[str, list[float]] = {}
    for d, ts, v in first:
        if d == "old":
            want.setdefault(envelope.rfc3339_ms(ts // WINDOW * WINDOW), []).append(v)
    assert set(old) == set(want) and len(want) == 2
    for start, vals in want.items():
        w = old[start]
        assert (w["final"], w["count"], w["min"], w["max"], w["last"]) == (
            True, len(vals), min(vals), max(vals), vals[-1]), w
    assert all(windows[k]["final"] for k in old_open)  # those open before the idle time: final now
    state = latest(read_all(bootstrap, topics.aggregates_state))
    assert "old" in state and state["old"] is None  # the tombstone, committed
    assert state["live"] is not None

    # a restart restores from the state topic: live only
    again = Running(config)
    try:
        wait_for(lambda: again.failed or again.metric("state_restored_records_total") > 0, 90, "the restore")
        assert again.metric("state_restored_devices_total") == 1
        assert again.aggregator.table.device("old") is None
        assert again.aggregator.table.device("live") is not None
    finally:
        again.close()
