"""Device epochs against the real brokers: a device that lost its state is processed, not silenced.

Issue 9's done-when: a device whose state dir is wiped between two runs has every event of both lives
in ``iot.events.processed`` (read_committed, exactly once) and one "device lost its state" alert naming
both epochs.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from edgebridge.envelope import new_reading
from edgebridge.topics import KafkaTopics
from simulators.audit import audit_records, format_table, read_topic
from simulators.processes import ComponentProcess
from tests.conftest import BrokerAddresses
from tests.enricher.conftest import InProcess, enricher_config, produce, read_all, values, vars_of
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers

OLD, NEW = "0a0a0a0a0a0a0a0a", "0b0b0b0b0b0b0b0b"


def _reading(device: str, seq: int, epoch: str) -> Any:
    return new_reading(device, seq, {"temperature": {"v": 20.0 + seq % 7, "u": "Cel"}}, epoch=epoch)


def _state_lost(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [a for a in values(read_all(bootstrap, topic)) if a["kind"] == "device_state_lost"]


def test_a_new_epoch_after_a_restart_of_the_enricher_is_processed_and_alerted_once(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str]
) -> None:
    """The old life's state comes back from the state topic; the new life (seqs from 1 again) is no
    duplicate of it; re-sends of either life are."""
    topics = make_topics(2)
    bs = brokers.kafka_bootstrap
    first = [_reading("dev-r", s, OLD) for s in range(1, 31)]
    produce(bs, topics.raw, [("dev-r", e) for e in first + first[10:15]])
    config = enricher_config(brokers, topics, consumer_group())
    with InProcess(config) as run:
        read_all(bs, topics.processed, 30, timeout=60)
    assert run.processor.metrics.epoch_changes._value.get() == 0
    second = [_reading("dev-r", s, NEW) for s in range(1, 21)]
    produce(bs, topics.raw, [("dev-r", e) for e in second[:10] + first[20:22] + second[10:] + second[:3]])
    with InProcess(config) as run:  # a new process: the first life's state is restored from the topic
        read_all(bs, topics.processed, 50, timeout=60)
        wait_for(lambda: run.processor.metrics.epoch_changes._value.get() == 1, 30, "the epoch change")
    got = values(read_all(bs, topics.processed))
    assert Counter((e["epoch"], e["seq"]) for e in got) == Counter(
        [(OLD, s) for s in range(1, 31)] + [(NEW, s) for s in range(1, 21)])
    alerts = _state_lost(bs, topics.alerts)
    assert [(a["deviceid"], a["old_epoch"], a["old_last_seq"], a["epoch"], a["seq"]) for a in alerts] == [
        ("dev-r", OLD, 30, NEW, 1)]
    assert run.processor.metrics.duplicates._value.get() == 2 + 3


def test_an_agent_whose_state_dir_is_wiped_has_both_lives_processed_exactly_once(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], kafka_topic: Callable[..., str],
    consumer_group: Callable[[], str], mqtt_prefix: str, tmp_path: Path,
) -> None:
    """A real agent (child process, simulated source, ``limit`` N) -> Mosquitto -> bridge -> Kafka ->
    enricher, all real; the agent stops, its state dir is wiped, it runs again with M events."""
    first_life, second_life = 120, 80
    topics = make_topics(2)
    bs = brokers.kafka_bootstrap
    group = consumer_group()
    bridge = ComponentProcess("bridge", "bridge", {
        "mqtt": {"url": brokers.mqtt_url, "topic_prefix": mqtt_prefix},
        "kafka": {"bootstrap": bs},
        "uplink": {"client_id": f"bridge-{mqtt_prefix}"[:60]},
        "topics": {"raw": topics.raw, "status": kafka_topic("status"),
                   "command_responses": kafka_topic("responses"), "deadletter": topics.deadletter},
        "downlink": {"enabled": False},
    }, tmp_path)
    enricher = ComponentProcess("enricher", "enricher", {
        "instance_id": "i0", "group_id": group, "transactional_id_prefix": group,
        "kafka": {"bootstrap": bs, "librdkafka": {"session.timeout.ms": "6000"}},
        "commit": {"transaction_timeout_ms": 10000},
        "topics": vars_of(topics),
    }, tmp_path)
    state = tmp_path / "agent-state"
    device = "dev-wiped"

    def agent(name: str, limit: int) -> ComponentProcess:
        return ComponentProcess("agent", name, {
            "device_id": device, "state_dir": str(state),
            "mqtt": {"url": brokers.mqtt_url, "topic_prefix": mqtt_prefix},
            "simulated": {"enabled": True, "interval": 0.002, "limit": limit},
            "systemd": {"notify": False},
        }, tmp_path, metrics=False)

    def outbox() -> dict[str, Any]:
        from edge_agent.outbox import read_status

        return read_status(state / "outbox.db")

    lives = [agent("agent-life-1", first_life), agent("agent-life-2", second_life)]
    try:
        for proc in (bridge, enricher):
            assert proc.start().wait_healthy(60), proc.log_path.read_text()
        # life 1: N events, all the way through, then a clean stop
        lives[0].start()
        read_all(bs, topics.processed, first_life, timeout=90)
        epoch_1 = outbox()["epoch"]
        assert lives[0].terminate() == 0
        # the fault: the device's state is gone (a new SD card); life 2 starts from nothing
        shutil.rmtree(state)
        lives[1].start()
        read_all(bs, topics.processed, first_life + second_life, timeout=90)
        epoch_2 = outbox()["epoch"]
        assert lives[1].terminate() == 0
        wait_for(lambda: enricher.metric("edgebridge_enricher_epoch_changes_total") == 1, 30,
                 "the epoch change committed")
    finally:
        for proc in (*lives, bridge, enricher):
            proc.kill()
    # the fault was injected: a new epoch, whose seqs started at 1 again
    assert epoch_1 and epoch_2 and epoch_1 != epoch_2
    processed = read_topic(bs, topics.processed)
    events = [orjson.loads(v) for v in processed]
    assert {e["deviceid"] for e in events} == {device}
    seqs = {epoch: sorted(e["seq"] for e in events if e["epoch"] == epoch) for epoch in (epoch_1, epoch_2)}
    assert seqs == {epoch_1: list(range(1, first_life + 1)), epoch_2: list(range(1, second_life + 1))}
    # every event of both lives exactly once, per (device, epoch)
    assert len(events) == first_life + second_life
    audits = audit_records(processed)
    print(format_table(audits))
    assert list(audits) == [(device, epoch_1), (device, epoch_2)]  # a row per life, in order
    assert all(a.complete and a.duplicates == 0 for a in audits.values())
    assert {k[1]: a.distinct for k, a in audits.items()} == {epoch_1: first_life, epoch_2: second_life}
    # and one alert that the device lost its state, naming both epochs and where the old one ended
    alerts = _state_lost(bs, topics.alerts)
    assert [(a["deviceid"], a["old_epoch"], a["old_last_seq"], a["epoch"], a["seq"]) for a in alerts] == [
        (device, epoch_1, first_life, epoch_2, 1)]
    assert "device lost its state" in enricher.log_path.read_text()
