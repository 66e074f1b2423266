"""A bridge replica that hangs instead of dying, in the scale-out setup: two bridges in one MQTT 5
shared-subscription group, real agents, one enricher, a private Mosquitto and the session's Kafka (the
replication of Kafka plays no part in what a hung MQTT client does).

SIGSTOP freezes the replica: its process stops, its TCP connection stays open, nothing it received is
acknowledged. Mosquitto closes the connection once the replica misses its keepalive (1.5 x 5 s here);
the session ends with it (a replica keeps no session, see docs/bridge.md). What the test shows, each
step proven from outside the bridge (the process state in /proc, Mosquitto's own log, the agents'
outboxes, a separate read_committed consumer):

1. while the replica is frozen, what the broker dealt it is held: when the broker drops it, every
   device still has events from before the freeze without a receipt, though the other replica runs;
2. once the broker has dropped the replica, nothing it held is dealt to the other replica: those events
   stay unreceipted until the agents' receipt timeout (20 s here) sends them again;
3. the resends, carried by the other replica, complete the stream before the replica is woken; woken
   (SIGCONT), it reconnects and carries its share again. Every event is in ``iot.events.processed``
   exactly once, every outbox empties.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgebridge.devbrokers import LocalBrokers
from tests.e2e.conftest import Pipeline
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers

DEVICES = [f"hang-{i}" for i in range(3)]
EVENTS = 2400  # per device, at RATE: a 48 s stream, which goes on after the frozen replica is woken
RATE = 50.0
KEEPALIVE = 5  # the bridges' MQTT keepalive: Mosquitto drops a silent client after 1.5 x this
RECEIPT_TIMEOUT = 20.0  # the agents' first resend: well after the broker has dropped the frozen replica


def _process_state(pid: int) -> str:
    """The kernel's state letter of a process (``T``: stopped by a signal)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def _devices_waiting(p: Pipeline, committed: dict[str, int]) -> int:
    """How many devices still hold, unreceipted, an event they had committed at the freeze."""
    waiting = 0
    for device, last in committed.items():
        status = p.status(device)
        oldest = status.get("oldest_seq")
        if oldest is not None and oldest <= last:
            waiting += 1
    return waiting


@pytest.mark.timeout(420)
def test_a_hung_bridge_replica_holds_its_share_the_broker_drops_it_and_the_agents_resend_it(
    pipeline: Callable[..., Pipeline], private_brokers: Callable[..., LocalBrokers]
) -> None:
    mosquitto = private_brokers("mosquitto").mosquitto
    p = pipeline(mqtt_url=mosquitto.url, partitions=3)
    p.start_enricher()
    bridges = [p.bridge(f"bridge-{x}", mqtt={"keepalive": KEEPALIVE}, share_group="bridges").start()
               for x in "ab"]
    assert all(b.wait_healthy(60) for b in bridges), [str(b.log_path) for b in bridges]
    for device in DEVICES:
        p.agent(device, events=EVENTS, rate=RATE, receipt_timeout=RECEIPT_TIMEOUT,
                receipt_timeout_max=RECEIPT_TIMEOUT).start()

    def receipted() -> int:
        return sum(p.committed(d) - int(p.status(d).get("backlog_rows", 0)) for d in DEVICES)

    wait_for(lambda: receipted() >= 500, 120, "500 events receipted through both bridges")
    hung, other = bridges
    assert hung.proc is not None
    hung_acked = hung.metric("edgebridge_bridge_acked_messages_total")
    assert hung_acked > 0, "the replica to freeze carried nothing: the group did not share the stream"
    log_size = mosquitto.log_path.stat().st_size

    hung.proc.send_signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    wait_for(lambda: _process_state(hung.proc.pid) == "T", 10, "the bridge stopped (state T)")
    time.sleep(1.0)  # events committed now were dealt to both replicas since the freeze
    committed = {d: p.committed(d) for d in DEVICES}

    def dropped_by_broker() -> bool:  # Mosquitto's own log: the frozen client timed out
        with open(mosquitto.log_path, "rb") as log:
            log.seek(log_size)
            return f"Client {p.prefix}-bridge-a has exceeded timeout".encode() in log.read()

    # 1. held: the frozen replica acknowledges nothing, and its share is not dealt elsewhere
    wait_for(dropped_by_broker, 30, "Mosquitto dropping the frozen replica (keepalive)", every=0.2)
    dropped_after = time.monotonic() - frozen_at
    assert dropped_after >= KEEPALIVE, f"dropped after {dropped_after:.1f} s: not by its keepalive"
    assert _process_state(hung.proc.pid) == "T"
    waiting_at_drop = _devices_waiting(p, committed)
    assert waiting_at_drop == len(DEVICES), "events dealt to the frozen replica were receipted anyway"

    # 2. dropped: nothing held is dealt to the other replica; the devices still wait until they resend
    time.sleep(3.0)
    still_waiting = _devices_waiting(p, committed)
    resends_before = sum(int(p.status(d).get("resends", 0)) for d in DEVICES)
    # no agent has resent anything yet: what was receipted so far came from the broker alone
    assert resends_before == 0, f"{resends_before} resends already: the broker's doing is not told apart"
    assert still_waiting == len(DEVICES), "the broker dealt the dropped replica's messages again"

    # 3. the agents' resends, through the other replica, carry them, with the replica still frozen
    wait_for(lambda: _devices_waiting(p, committed) == 0, 120,
             "every event committed before the freeze receipted (resent through the other replica)")
    caught_up_after = time.monotonic() - frozen_at
    assert _process_state(hung.proc.pid) == "T"
    other_acked = other.metric("edgebridge_bridge_acked_messages_total")
    wake_log = mosquitto.log_path.stat().st_size
    hung.proc.send_signal(signal.SIGCONT)

    def reconnected() -> bool:  # Mosquitto's log: a new connection of the woken replica's client id
        with open(mosquitto.log_path, "rb") as log:
            log.seek(wake_log)
            return f" as {p.prefix}-bridge-a ".encode() in log.read()

    wait_for(reconnected, 60, "the woken replica connected again", every=0.2)
    acked_at_wake = hung.metric("edgebridge_bridge_acked_messages_total")

    wait_for(lambda: all(p.committed(d) >= EVENTS for d in DEVICES), 240, "every reading committed")
    wait_for(lambda: all(p.status(d).get("backlog_rows") == 0 for d in DEVICES), 240,
             "every outbox emptied by receipts")
    expected = set().union(*(p.expected(d) for d in DEVICES))
    assert len(expected) == EVENTS * len(DEVICES)
    got = p.wait_processed(expected, timeout=240)
    assert set(got) == expected and max(got.values()) == 1, {k: n for k, n in got.items() if n > 1}
    raw = p.raw()
    resends = sum(int(p.status(d).get("resends", 0)) for d in DEVICES)
    woken_acked = hung.metric("edgebridge_bridge_acked_messages_total")
    assert woken_acked > acked_at_wake, "the woken replica carried nothing after it reconnected"
    print(f"hung bridge: dropped by Mosquitto {dropped_after:.1f} s after SIGSTOP; events of before the "
          f"freeze all receipted {caught_up_after:.1f} s after it (resends then {resends_before}, "
          f"at the end {resends}); the other replica acked {other_acked:.0f} by then; the woken one "
          f"acked {hung_acked:.0f} before the freeze, {acked_at_wake:.0f} once reconnected, "
          f"{woken_acked:.0f} at the end; raw holds "
          f"{sum(raw.values())} records for {len(expected)} events ({sum(1 for n in raw.values() if n > 1)} "
          f"twice or more)")
