"""Guarantee 1 at the edge: kill -9 of `edgebridge agent run` at random moments loses no committed event."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from edge_agent.outbox import read_status
from simulators.processes import ComponentProcess
from tests.agent.conftest import Subscriber, agent_settings
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers


def _check_every_committed_seq(sub: Subscriber, device: str, last: int) -> dict[int, bytes]:
    by_seq: dict[int, bytes] = {}
    for event in sub.events():
        assert event["deviceid"] == device
        body = orjson.dumps({k: event[k] for k in ("id", "time", "type", "data")})
        # a resend after a crash is the same event: same id, same content, never new content
        assert by_seq.setdefault(event["seq"], body) == body, (
            f"seq {event['seq']} seen with different content"
        )
    missing = sorted(set(range(1, last + 1)) - set(by_seq))
    assert not missing, f"{len(missing)} committed seqs never arrived, first {missing[:10]}"
    assert max(by_seq) == last
    return by_seq


@pytest.mark.parametrize("batch", [False, True])
def test_kill9_at_random_moments_loses_no_committed_event(
    tmp_path: Path,
    mqtt_url: str,
    mqtt_prefix: str,
    subscriber: Callable[..., Subscriber],
    agent_process: Callable[..., ComponentProcess],
    batch: bool,
) -> None:
    device = "dev-crash"
    sub = subscriber(f"{mqtt_prefix}/{device}/events")
    state = tmp_path / "state"
    rng = random.Random(20240501 + batch)
    producing = agent_process(agent_settings(
        state, mqtt_url, mqtt_prefix, device,
        simulated={"enabled": True, "interval": 0.0005},
        forwarder={"window": 50, "batch": batch, "batch_max_events": 20},
        outbox={"commit_every_ms": 20},
    ), "producing")
    kills = 0
    for _ in range(6):
        producing.start()
        time.sleep(rng.uniform(0.3, 2.0))  # the fault is injected at a random moment, not a sync point
        producing.kill()
        kills += 1
    assert (state / "outbox.db").exists()
    committed_before_drain = read_status(state / "outbox.db")["last_seq"][device]  # type: ignore[index]
    assert committed_before_drain > 1000, "the runs committed too little to mean anything"
    # A last run without a source drains the backlog; then a clean stop.
    agent = agent_process(agent_settings(state, mqtt_url, mqtt_prefix, device), "drain").start()
    wait_for(lambda: read_status(state / "outbox.db")["backlog_rows"] == 0, 60, "backlog drained")
    assert agent.terminate() == 0
    status = read_status(state / "outbox.db")
    last = status["last_seq"][device]  # type: ignore[index]
    assert last == committed_before_drain  # the drain run added nothing
    assert status["evicted"] == 0
    wait_for(lambda: len({e["seq"] for e in sub.events()}) >= last, 30, f"{last} distinct seqs")
    by_seq = _check_every_committed_seq(sub, device, last)
    assert len(by_seq) == last and kills == 6
