"""``edgebridge replay --follow``: catch up with the raw topic, then process what arrives, until SIGTERM.

The raw records of the second batch are produced only after the replay printed ``caught up``, and they
reach the replay's topic while it still runs: it followed. After SIGTERM (exit 0, ``stopped:``) the
replay's topic holds each (device, epoch, seq) of both batches once (read back by a separate
read_committed reader; the second batch re-sends some of the first), and the live topic is as it was.
"""

from __future__ import annotations

import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from edgebridge.envelope import new_reading
from edgebridge.topics import KafkaTopics
from tests.conftest import BrokerAddresses
from tests.enricher.conftest import enricher_config, produce, read_all, values, write_toml
from tests.enricher.replay_process import Replay

pytestmark = pytest.mark.brokers

DEVICES, EPOCH = 5, "7a0c1e2d3b4f5a69"


def _events(seqs: range) -> list[tuple[str, object]]:
    return [(f"dev-{d}", new_reading(f"dev-{d}", s, {"temperature": {"v": 21.0, "u": "Cel"}},
                                     time="2026-12-06T10:00:00.000Z", epoch=EPOCH))
            for s in seqs for d in range(DEVICES)]


def test_replay_follow_catches_up_then_processes_new_raw_records_until_sigterm(
    brokers: BrokerAddresses, make_topics: Callable[[int], KafkaTopics], consumer_group: Callable[[], str],
    tmp_path: Path,
) -> None:
    topics = make_topics(2)
    bs = brokers.kafka_bootstrap
    produce(bs, topics.devices, [(f"dev-{d}", b'{"site": "plant-a"}') for d in range(DEVICES)])
    history = _events(range(1, 41))
    produce(bs, topics.raw, history)  # type: ignore[arg-type]
    produce(bs, topics.processed, [("dev-0", b"live record, not the replay's")])
    live = sorted((m.partition(), m.offset(), m.value()) for m in read_all(bs, topics.processed))

    config = enricher_config(brokers, topics, consumer_group())
    to = f"{topics.processed}.v2"
    cmd = [sys.executable, "-m", "edgebridge", "replay", "--to", to, "--follow", "--every", "0.2",
           "--config", str(write_toml(tmp_path / "enricher.toml", config))]
    replay = Replay(cmd, tmp_path / "replay.log")
    try:
        replay.wait_line("caught up:", timeout=180)
        assert len(read_all(bs, to, len(history), timeout=30)) == len(history)
        arriving = _events(range(41, 61))
        produce(bs, topics.raw, arriving + history[::9])  # type: ignore[arg-type]  # new, and re-sends
        replay.wait_line("  following:", timeout=120)
        after = read_all(bs, to, len(history) + len(arriving), timeout=120)
        assert replay.proc.poll() is None, replay.text()  # still running: it followed
        assert len(after) == len(history) + len(arriving), replay.text()
        replay.proc.send_signal(signal.SIGTERM)
        assert replay.finish(120) == 0, replay.text()
    finally:
        replay.kill()
    assert replay.text().rstrip().splitlines()[-1].startswith("stopped:"), replay.text()
    assert "--follow` to resume" in replay.text()

    replayed = values(read_all(bs, to, timeout=30))
    assert Counter((e["deviceid"], e.get("epoch"), e["seq"]) for e in replayed) == Counter(
        (f"dev-{d}", EPOCH, s) for d in range(DEVICES) for s in range(1, 61))
    assert sorted((m.partition(), m.offset(), m.value()) for m in read_all(bs, topics.processed)) == live
