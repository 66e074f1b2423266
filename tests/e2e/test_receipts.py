"""Guarantee 1 end to end, whatever the MQTT broker does: receipts from Kafka back to the device.

Each test injects a fault that makes the broker lose messages it has already PUBACKed, proves the fault
happened (an agent with ``receipts = "off"`` beside ours loses events, or the broker's log and state say
so), and counts what reached ``iot.events.processed`` with its own read_committed consumer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from edgebridge.devbrokers import LocalBrokers, MosquittoOptions
from tests.e2e.conftest import Pipeline
from tests.waiting import wait_for


def test_events_published_before_the_first_subscription_are_not_lost(
    pipeline: Callable[..., Pipeline], private_brokers: Callable[..., LocalBrokers]
) -> None:
    """A fresh deployment: the agents start before any bridge has ever subscribed. The broker PUBACKs
    and drops their first events (nobody to deliver them to)."""
    mosquitto = private_brokers("mosquitto").mosquitto
    p = pipeline(mqtt_url=mosquitto.url)
    p.agent("fresh-on", events=600, rate=200).start()
    p.agent("fresh-off", events=600, rate=200, receipts="off").start()
    # Both have published (the control has even deleted rows on the broker's PUBACK) with no bridge.
    wait_for(lambda: p.status("fresh-off").get("last_ack_seq", 0) >= 50, 30, "the control's first PUBACKs")
    wait_for(lambda: p.status("fresh-on").get("unreceipted", 0) >= 50, 30, "ours published, unreceipted")
    p.start_enricher()
    bridge = p.bridge().start()
    assert bridge.wait_healthy(30)
    wait_for(lambda: p.committed("fresh-on") >= 600, 60, "all 600 readings committed")
    got = p.wait_processed(p.expected("fresh-on"), timeout=120)
    assert max(got[k] for k in p.expected("fresh-on")) == 1  # exactly once after the enricher
    lost = p.expected("fresh-off") - set(p.processed())
    assert lost, "the fault did not happen: the control agent lost nothing"
    assert min(seq for _, _, seq in lost) == 1  # its first events, published before the subscription
    assert p.status("fresh-on")["resends"] >= 1  # ours sent them again, for lack of receipts


def test_bridge_away_longer_than_its_session_expiry(
    pipeline: Callable[..., Pipeline], private_brokers: Callable[..., LocalBrokers]
) -> None:
    """The broker forgets the bridge's session (and what it queued for it) after the session expiry."""
    mosquitto = private_brokers("mosquitto").mosquitto
    p = pipeline(mqtt_url=mosquitto.url)
    p.start_enricher()
    bridge = p.bridge(session_expiry=2).start()
    assert bridge.wait_healthy(30)
    ours = p.agent("expiry-on", events=1500, rate=100).start()
    control = p.agent("expiry-off", events=1500, rate=100, receipts="off").start()
    wait_for(lambda: p.committed("expiry-on") >= 300, 30, "300 events committed")
    assert bridge.terminate() == 0
    time.sleep(4)  # past the 2 s expiry: the broker drops the session and everything queued for it
    bridge.start()
    assert bridge.wait_healthy(30)
    wait_for(lambda: "session_present=false" in bridge.log_path.read_text().split("bridge stopped")[-1], 10,
             "the bridge reconnecting to a forgotten session")
    wait_for(lambda: not ours.running or p.committed("expiry-on") >= 1500, 60, "1500 committed")
    got = p.wait_processed(p.expected("expiry-on"), timeout=120)
    assert max(got[k] for k in p.expected("expiry-on")) == 1
    assert p.expected("expiry-off") - set(p.processed()), "the control lost nothing: no fault injected"
    del control


def test_mosquitto_killed_three_times_mid_stream(
    pipeline: Callable[..., Pipeline], private_brokers: Callable[..., LocalBrokers]
) -> None:
    """SIGKILL of the broker with the persistence settings of deploy/ (autosave every second): what it
    acknowledged since its last save is gone when it comes back."""
    local = private_brokers("mosquitto", mosquitto=MosquittoOptions(autosave_interval=1))
    mosquitto = local.mosquitto
    p = pipeline(mqtt_url=mosquitto.url)
    p.start_enricher()
    bridge = p.bridge().start()
    assert bridge.wait_healthy(30)
    devices = [f"kill-{i}" for i in range(3)]
    for device in devices:
        p.agent(device, events=3000, rate=250).start()
    pids = []
    for round_ in range(3):
        wait_for(lambda r=round_: p.committed(devices[0]) >= 600 * (r + 1), 60, f"round {round_}")
        pids.append(mosquitto.pid)
        mosquitto.kill()
        assert not mosquitto.is_running()
        time.sleep(0.5)
        mosquitto.start()
    assert len(set(pids)) == 3 and mosquitto.pid not in pids  # three real kills, a new process each
    wait_for(lambda: all(p.committed(d) >= 3000 for d in devices), 90, "every reading committed")
    expected = set().union(*(p.expected(d) for d in devices))
    got = p.wait_processed(expected, timeout=180)
    assert max(got[k] for k in expected) == 1


def test_bridge_killed_between_kafka_and_the_receipt(
    pipeline: Callable[..., Pipeline], private_brokers: Callable[..., LocalBrokers]
) -> None:
    """kill -9 of the bridge after Kafka confirmed events and before their receipt went out (a long
    receipt interval makes that the likely moment): the agents send them again; duplicates appear in
    iot.events.raw only, processed holds each event once."""
    mosquitto = private_brokers("mosquitto").mosquitto
    p = pipeline(mqtt_url=mosquitto.url)
    p.start_enricher()
    bridge = p.bridge(receipt_interval=3.0).start()
    assert bridge.wait_healthy(30)
    devices = ["rk-1", "rk-2"]
    for device in devices:
        p.agent(device, events=2000, rate=200).start()
    for round_ in range(3):
        wait_for(lambda r=round_: p.committed("rk-1") >= 400 * (r + 1), 60, f"round {round_}")
        bridge.kill()
        bridge.start()
        assert bridge.wait_healthy(30)
    wait_for(lambda: all(p.committed(d) >= 2000 for d in devices), 60, "every reading committed")
    expected = set().union(*(p.expected(d) for d in devices))
    got = p.wait_processed(expected, timeout=180)
    assert max(got[k] for k in expected) == 1
    raw = p.raw()
    assert sum(raw.values()) > len(raw), "no duplicate in raw: no receipt was lost to a kill"


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_kafka_frozen_with_a_small_broker_queue_backlog_stays_on_the_devices(
    pipeline: Callable[..., Pipeline], private_brokers: Callable[..., LocalBrokers]
) -> None:
    """Kafka frozen (SIGSTOP) 30 s at ~1,000 events/s, Mosquitto's queue for the bridge capped at 1,000
    messages: the broker drops what overflows although it PUBACKed it. Nothing is lost, the backlog is
    on the agents' disks, and Mosquitto's memory stays bounded."""
    local = private_brokers("mosquitto", "kafka", mosquitto=MosquittoOptions(max_queued_messages=1000))
    mosquitto, kafka = local.mosquitto, local.kafka
    p = pipeline(mqtt_url=mosquitto.url, bootstrap=kafka.bootstrap)
    p.start_enricher()
    bridge = p.bridge().start()
    assert bridge.wait_healthy(30)
    devices = [f"frz-{i}" for i in range(4)]
    for device in devices:
        p.agent(device, events=12_000, rate=250, max_unreceipted=2000).start()
    wait_for(lambda: all(p.committed(d) >= 1000 for d in devices), 60, "the fleet running")
    assert mosquitto.pid is not None and kafka.pid is not None
    rss_before = _rss_mb(mosquitto.pid)
    kafka.pause()
    try:
        wait_for(lambda: _state(kafka.pid) == "T", 5, "Kafka stopped (state T)", every=0.05)
        began = time.monotonic()
        peak = rss_before
        while time.monotonic() - began < 30:
            assert _state(kafka.pid) == "T"
            peak = max(peak, _rss_mb(mosquitto.pid))
            time.sleep(1)
        backlog = {d: p.status(d)["backlog_rows"] for d in devices}
    finally:
        kafka.resume()
    dropped = "Outgoing messages are being dropped" in mosquitto.log_path.read_text()
    assert dropped, "Mosquitto's queue never overflowed: the fault did not happen"
    # 30 s at 250/s per device: ~7,500 each, held on disk (at most 2,000 of them ever sent unreceipted)
    assert all(rows >= 5000 for rows in backlog.values()), backlog
    assert peak - rss_before < 25, f"Mosquitto grew {peak - rss_before:.1f} MB while Kafka was frozen"
    print(f"frozen 30 s: backlog on the devices {backlog}, Mosquitto RSS {rss_before:.1f} -> peak "
          f"{peak:.1f} MB, restarts {p.restarts}")
    wait_for(lambda: all(p.committed(d) >= 12_000 for d in devices), 60, "the fleet past the outage")
    expected = set().union(*(p.expected(d) for d in devices))
    got = p.wait_processed(expected, timeout=240)
    assert max(got[k] for k in expected) == 1


def test_a_broker_that_refuses_the_bridges_receipts_is_seen_and_nothing_is_deleted(
    pipeline: Callable[..., Pipeline], private_brokers: Callable[..., LocalBrokers]
) -> None:
    """An ACL that forgets to let the bridge write receipts: the bridge counts the refusals (an operator
    alerts on it) and the agent deletes nothing: it keeps every event and sends it again."""
    users = {"bridge": "pw-bridge", "acl-dev": "pw-dev"}
    acl = ("user bridge\ntopic read #\n\n"  # reads everything, writes nothing: no receipts
           "pattern write +/%u/events\npattern write +/%u/status\npattern read +/%u/receipts\n")
    mosquitto = private_brokers("mosquitto", mosquitto=MosquittoOptions(users=users, acl=acl)).mosquitto
    p = pipeline(mqtt_url=mosquitto.url)
    bridge = p.bridge(mqtt={"username": "bridge", "password": "pw-bridge"}).start()
    assert bridge.wait_healthy(30)
    p.agent("acl-dev", events=300, rate=100, mqtt={"username": "acl-dev", "password": "pw-dev"}).start()
    wait_for(lambda: bridge.metric("edgebridge_bridge_receipts_refused_total") > 0, 30, "a refused receipt")
    wait_for(lambda: p.committed("acl-dev") >= 300, 30, "300 committed")
    status = p.status("acl-dev")
    assert status["backlog_rows"] == 300 and status.get("last_ack_seq", 0) == 0  # nothing deleted
    assert {seq for (_, _, seq) in p.raw()} >= set(range(1, 301))  # Kafka has them all meanwhile
