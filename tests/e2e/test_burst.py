"""A burst the bridge cannot absorb: four agents in batch mode at full speed. The bridge's byte budget
keeps its memory bounded (the burst waits in the broker and on the devices' disks) and nothing is lost."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest

from edgebridge.devbrokers import LocalBrokers
from tests.e2e.conftest import Pipeline
from tests.waiting import wait_for

BUDGET_MIB = 16  # the default of uplink.max_inflight_bytes
# readings per agent: ~20 s of burst here; EDGEBRIDGE_BURST_EVENTS=600000 makes it the minute of the issue
EVENTS = int(os.environ.get("EDGEBRIDGE_BURST_EVENTS", "80000"))
# Measured (docs/bridge.md): peak RSS ~45 MiB + ~15 x the budget (8 -> 165, 16 -> 287, 32 -> 531 MiB);
# without the budget the same burst took it to ~830 MiB
RSS_LIMIT_MIB = 80 + 16 * BUDGET_MIB


@pytest.mark.timeout(600 + EVENTS // 100)
def test_four_agents_in_batch_mode_at_full_speed(
    pipeline: Callable[..., Pipeline], private_brokers: Callable[..., LocalBrokers]
) -> None:
    mosquitto = private_brokers("mosquitto").mosquitto
    p = pipeline(mqtt_url=mosquitto.url)
    p.start_enricher()
    bridge = p.bridge().start()  # the default byte budget
    assert bridge.wait_healthy(30)
    devices = [f"burst-{i}" for i in range(4)]
    for device in devices:
        p.agent(device, events=EVENTS, rate=None, batch=True, batch_max_events=500).start()
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, bridge.rss_mb())
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        wait_for(lambda: all(p.committed(d) >= EVENTS for d in devices), 60 + EVENTS / 1000,
                 "every reading committed")
        wait_for(lambda: all(p.status(d)["backlog_rows"] == 0 for d in devices), 60 + EVENTS / 1000,
                 "every outbox receipted empty")
    finally:
        done.set()
        sampler.join()
    waits = bridge.metric("edgebridge_bridge_byte_budget_waits_total")
    print(f"{4 * EVENTS} events; bridge RSS peak {peak:.0f} MiB (limit {RSS_LIMIT_MIB}), "
          f"byte budget waits {waits:.0f}")
    assert waits > 0, "the byte budget never engaged: the burst did not exceed it"
    assert peak < RSS_LIMIT_MIB
    expected = set().union(*(p.expected(d) for d in devices))
    enricher = p.enricher
    assert enricher is not None
    processed = 'edgebridge_enricher_produced_total{output="processed"}'
    wait_for(lambda: enricher.metric(processed) >= len(expected) or not enricher.running, 60 + EVENTS / 200,
             "the enricher through the burst", every=2.0)
    got = p.wait_processed(expected, timeout=120 + EVENTS / 2000)
    assert max(got[k] for k in expected) == 1
