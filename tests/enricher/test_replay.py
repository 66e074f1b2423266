"""``edgebridge replay``: a day of raw events processed by the live enricher, then a calibration changed
and the day replayed into a topic of its own: each event there once with the new calibration, the live
processed topic exactly as it was, and a second run resumes with nothing left to do."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from edgebridge.envelope import new_reading
from edgebridge.topics import KafkaTopics
from tests.conftest import BrokerAddresses
from tests.enricher.conftest import InProcess, enricher_config, produce, read_all, values, write_toml

pytestmark = pytest.mark.brokers

DEVICES, PER_DAY = 3, 96  # a reading every 15 minutes for 24 hours


def _day() -> list[tuple[str, object]]:
    events = []
    for d in range(DEVICES):
        for s in range(1, PER_DAY + 1):
            minutes = (s - 1) * 15
            events.append((f"dev-{d}", new_reading(
                f"dev-{d}", s, {"temperature": {"v": 68.0, "u": "degF"}, "humidity": {"v": 50, "u": "%RH"}},
                time=f"2026-12-05T{minutes // 60:02d}:{minutes % 60:02d}:00.000Z", epoch="0f3a9c2e7b1d4a60")))
    return events


def _calibration(offset: float) -> bytes:
    return orjson.dumps({"site": "plant-a", "calibration": {"temperature": {"offset": offset, "scale": 1.0}}})


def test_replay_applies_a_new_calibration_once_into_its_own_topic_and_leaves_the_live_one_alone(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str],
    tmp_path: Path,
) -> None:
    topics = make_topics(2)
    bs = brokers.kafka_bootstrap
    produce(bs, topics.devices, [(f"dev-{d}", _calibration(1.8)) for d in range(DEVICES)])
    day = _day()
    resends = day[::10]  # lost PUBACKs: the raw topic holds these twice
    produce(bs, topics.raw, day + resends)  # type: ignore[arg-type]
    total = DEVICES * PER_DAY
    config = enricher_config(brokers, topics, consumer_group())
    with InProcess(config):
        assert len(read_all(bs, topics.processed, total, timeout=90)) == total
    live = sorted((m.partition(), m.offset(), m.value()) for m in read_all(bs, topics.processed))
    assert len(live) == total
    # (68 + 1.8) degF is 21 Cel: the live enrichment
    temperatures = {round(orjson.loads(v)["data"]["readings"]["temperature"]["v"], 6) for *_, v in live}
    assert temperatures == {21.0}

    alerts = len(read_all(bs, topics.alerts))
    produce(bs, topics.devices, [(f"dev-{d}", _calibration(9.0)) for d in range(DEVICES)])  # the fix
    to = f"{topics.processed}.v2"
    cmd = [sys.executable, "-m", "edgebridge", "replay", "--to", to, "--every", "0.5",
           "--config", str(write_toml(tmp_path / "enricher.toml", config))]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"replaying {topics.raw} -> {to}: {len(day) + len(resends)} records" in first.stdout
    assert first.stdout.rstrip().splitlines()[-1].startswith("done:"), first.stdout

    replayed = values(read_all(bs, to, total, timeout=60))
    assert Counter((e["deviceid"], e["seq"]) for e in replayed) == Counter(
        (device, s) for device in (f"dev-{d}" for d in range(DEVICES)) for s in range(1, PER_DAY + 1))
    # (68 + 9) degF is 25 Cel: the new calibration, on every event of the day
    assert {round(e["data"]["readings"]["temperature"]["v"], 6) for e in replayed} == {25.0}
    assert live == sorted((m.partition(), m.offset(), m.value()) for m in read_all(bs, topics.processed))
    assert len(read_all(bs, topics.alerts)) == alerts  # the replay's alerts go to its own topic

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resuming {topics.raw} -> {to}: 0 records" in again.stdout, again.stdout
    assert len(read_all(bs, to)) == total  # nothing written twice

    refused = subprocess.run([*cmd[:4], "--to", topics.processed, *cmd[6:]], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2 and "live topic" in refused.stderr


def test_the_replay_shares_no_name_with_the_live_enricher() -> None:
    from edgebridge.config import load_config
    from enricher.config import EnricherConfig
    from enricher.replay import replay_config

    live = load_config(EnricherConfig, None, env={}, overrides={"instance_id": "e-1"})
    replay = replay_config(live, "iot.events.processed.v2", "fix-7")
    assert replay.group_id == replay.transactional_id == "edgebridge-replay-fix-7"
    assert replay.group_id != live.group_id and replay.transactional_id != live.transactional_id
    written = {replay.topics.processed, replay.topics.enricher_state, replay.topics.alerts,
               replay.topics.deadletter}
    assert written == {"iot.events.processed.v2", "iot.events.processed.v2.state",
                       "iot.events.processed.v2.alerts", "iot.events.processed.v2.deadletter"}
    assert not written & {getattr(live.topics, f) for f in live.topics.__dataclass_fields__}
    assert (replay.topics.raw, replay.topics.devices) == (live.topics.raw, live.topics.devices)  # read only
