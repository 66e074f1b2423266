"""kill -9 of the enricher mid-transaction, and a second instance taking over: still exactly once."""

from __future__ import annotations

import random
import re
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from edgebridge.envelope import new_reading
from edgebridge.topics import KafkaTopics
from tests.conftest import BrokerAddresses
from tests.enricher.conftest import enricher_config, produce, read_all, values, wait_for, write_toml

pytestmark = pytest.mark.brokers

RESTORED = re.compile(r'msg="partitions assigned, dedup state restored" partitions=(\S+) offsets=(\S+) '
                      r"devices=(\d+)")


def _stream(devices: int, seqs: range, rng: random.Random, dup_ratio: float) -> list[tuple[str, object]]:
    records = [(f"dev-{d}", new_reading(f"dev-{d}", s, {"t": {"v": s, "u": "Cel"}}))
               for s in seqs for d in range(devices)]
    records += rng.sample(records, int(len(records) * dup_ratio))
    rng.shuffle(records)
    return records


EVENT = re.compile(r'msg="partitions (assigned, dedup state restored|revoked|lost)" partitions=(\S+)')


def _owned(log: Path) -> set[str]:
    """The partitions an instance owns now, replayed from its log."""
    owned: set[str] = set()
    for m in EVENT.finditer(log.read_text()):
        parts = set(m[2].split(","))
        owned = owned | parts if m[1].startswith("assigned") else owned - parts
    return owned


def _restores(log: Path) -> list[tuple[str, str, int]]:
    return [(m[1], m[2], int(m[3])) for m in RESTORED.finditer(log.read_text())]


def test_kill_9_repeatedly_mid_stream_still_exactly_once_and_state_restored(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str],
    spawn_enricher: Callable[..., subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    topics = make_topics(2)
    bs = brokers.kafka_bootstrap
    config = write_toml(tmp_path / "enricher.toml", enricher_config(
        brokers, topics, consumer_group(), **{"commit.interval_ms": 50, "commit.max_messages": 200}))
    rng = random.Random(11)
    devices, rounds, per_round = 8, 4, 150
    kills = mid_round = 0
    done = 0
    for r in range(rounds):
        produce(bs, topics.raw, _stream(devices, range(r * per_round + 1, (r + 1) * per_round + 1), rng, 0.2))
        proc = spawn_enricher(config, f"round{r}")
        # kill once this run has committed something, while the round's records are still flowing
        progress = wait_for(lambda: len(read_all(bs, topics.processed, timeout=5)) > done,  # noqa: B023
                            60, "progress")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
        kills += 1
        done = len(read_all(bs, topics.processed, timeout=5))
        mid_round += done < (r + 1) * per_round * devices
        assert progress
    committed_devices = {e["deviceid"] for e in values(read_all(bs, topics.processed))}
    final = spawn_enricher(config, "final")
    total = devices * rounds * per_round
    got = read_all(bs, topics.processed, total, timeout=90)
    final.send_signal(signal.SIGTERM)
    assert final.wait(60) == 0  # SIGTERM: commit, close, exit 0
    got = read_all(bs, topics.processed)
    keys = Counter((e["deviceid"], e["seq"]) for e in values(got))
    assert len(got) == total
    assert set(keys.values()) == {1}
    assert len(keys) == total
    # the last start restored every device's dedup state from the state topic and resumed every
    # partition at its committed offset: nothing was rebuilt by re-reading the raw topic
    final_restores = _restores(tmp_path / f"final-{rounds}.log")
    assert sum(n for _, _, n in final_restores) == len(committed_devices) > 0, final_restores
    offsets = dict(o.split(":") for _, line, _ in final_restores for o in line.split(","))
    assert sorted(offsets) == ["0", "1"] and any(int(o) > 0 for o in offsets.values()), offsets
    assert kills == rounds
    assert mid_round >= 1  # at least one kill landed with the round's records half done


def test_two_instances_one_killed_the_other_takes_over_exactly_once(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str],
    spawn_enricher: Callable[..., subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    topics = make_topics(4)
    bs = brokers.kafka_bootstrap
    group = consumer_group()
    over = {"commit.interval_ms": 50, "commit.max_messages": 200}
    conf_a = write_toml(tmp_path / "a.toml", enricher_config(brokers, topics, group, "a", **over))
    conf_b = write_toml(tmp_path / "b.toml", enricher_config(brokers, topics, group, "b", **over))
    rng = random.Random(5)
    devices, per_device = 16, 120
    produce(bs, topics.raw, _stream(devices, range(1, 61), rng, 0.2))
    a = spawn_enricher(conf_a, "a")
    b = spawn_enricher(conf_b, "b")
    log_a, log_b = tmp_path / "a-0.log", tmp_path / "b-1.log"
    # both own partitions: the group is balanced across the two instances
    wait_for(lambda: _owned(log_a) and _owned(log_b) and len(_owned(log_a) | _owned(log_b)) == 4, 60,
             "both instances owning partitions")
    produce(bs, topics.raw, _stream(devices, range(61, per_device + 1), rng, 0.2))
    wait_for(lambda: len(read_all(bs, topics.processed, timeout=5)) > devices * 60, 60, "progress")
    before = _owned(log_b)
    a.send_signal(signal.SIGKILL)
    assert a.wait(30) == -signal.SIGKILL
    total = devices * per_device
    read_all(bs, topics.processed, total, timeout=120)
    owned_at_end = wait_for(lambda: _owned(log_b) == {"0", "1", "2", "3"} and _owned(log_b), 30, "takeover")
    b.send_signal(signal.SIGTERM)
    assert b.wait(60) == 0
    got = values(read_all(bs, topics.processed))
    keys = Counter((e["deviceid"], e["seq"]) for e in got)
    assert len(got) == total and len(keys) == total
    # b ended up with all four partitions (it owned only some before the kill)
    assert owned_at_end == {"0", "1", "2", "3"}, log_b.read_text()[-2000:]
    assert before != owned_at_end
