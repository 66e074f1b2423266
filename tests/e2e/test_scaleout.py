"""Scale-out under faults, the whole path on the replicated cluster: `brokers up --kafka-nodes 3`
(contract topics RF 3, min ISR 2), two bridges in one MQTT 5 shared-subscription group, two enrichers
in one consumer group, real agents with their SQLite outboxes.

Mid-stream, the Kafka node that coordinates the enrichers' consumer group is SIGKILLed (with three
partitions on three nodes it usually leads a raw partition too; the run prints the leaders): the
worst node to lose, for the group and the transactions' offsets move with it. Once the cluster has
fenced it and the stream flows on two nodes, one of the two bridges is SIGKILLed and stays dead; once
the survivor has carried everything committed before that kill, the node is restarted. Each fault is
proven (the process gone by pid, the node out of every ISR in the cluster's own status, the bridge's
exit by SIGKILL). What is counted comes from outside the components: a separate ``read_committed``
consumer of ``iot.events.processed``, and the agents' own outboxes (every row receipted, none left).

Order with two bridges (guarantee 3): the shared subscription deals a device's messages to both
bridges, and a dead bridge's messages come back only as the agent's resends, so a device's records may
reach ``iot.events.raw`` out of ``seq`` order. The enricher keeps every one: in ``iot.events.processed``
(one device is one partition, so its records are in the enricher's order) an event is marked ``late``
exactly when a higher ``seq`` of its device came out before it.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from edgebridge.devbrokers import LocalBrokers
from edgebridge.devbrokers._process import pid_matches
from simulators.audit import read_records
from tests.e2e.conftest import Pipeline
from tests.kafka_cluster import Cluster, partitions
from tests.waiting import wait_for

pytestmark = pytest.mark.brokers

DEVICES = [f"so-{i}" for i in range(4)]
EVENTS = 4800  # per device, at RATE: a 60 s stream, long enough for both faults to land mid-stream
RATE = 80.0


@dataclass
class Sample:
    at: float  # seconds since the agents started
    committed: int  # rows the agents' outboxes committed, all devices
    receipted: int  # of those, deleted on a receipt: Kafka holds them (the agents' own view)


class Timeline:
    """The agents' outboxes sampled every ``every`` seconds on a thread: throughput over time, seen from
    the devices (receipts), independently of any component's counters. Each turn also restarts a
    bridge or enricher that exited, as its supervisor would (:meth:`Pipeline.supervise`)."""

    def __init__(self, p: Pipeline, every: float = 0.5) -> None:
        self.p, self.every = p, every
        self.samples: list[Sample] = []
        self.began = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="timeline", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.p.supervise()
            committed, receipted = edge_counts(self.p)
            self.samples.append(Sample(round(time.monotonic() - self.began, 1), committed, receipted))

    def now(self) -> float:
        return time.monotonic() - self.began

    def receipted(self) -> int:
        return self.samples[-1].receipted if self.samples else 0

    def receipts_between(self, start: float, end: float) -> int:
        inside = [s for s in self.samples if start <= s.at <= end]
        return inside[-1].receipted - inside[0].receipted if len(inside) > 1 else 0

    def longest_stall(self, start: float, end: float) -> float:
        """The longest time within [start, end] in which no receipt arrived while events awaited one."""
        inside = [s for s in self.samples if start <= s.at <= end]
        progress = [cur.at for prev, cur in itertools.pairwise(inside)
                    if cur.receipted > prev.receipted or cur.receipted == cur.committed]
        times = [start, *progress, end]
        return round(max(b - a for a, b in itertools.pairwise(times)), 1)

    def per_bucket(self, seconds: float = 5.0) -> list[tuple[float, float]]:
        """(bucket start, receipts/s) over the run."""
        out, i = [], 0
        while i < len(self.samples):
            j = next((k for k in range(i, len(self.samples))
                      if self.samples[k].at >= self.samples[i].at + seconds), len(self.samples) - 1)
            if j == i:
                break
            a, b = self.samples[i], self.samples[j]
            out.append((a.at, round((b.receipted - a.receipted) / (b.at - a.at))))
            i = j
        return out

    @contextmanager
    def running(self) -> Iterator[Timeline]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def _raw_leaders(cluster: Cluster, raw: str) -> dict[int, int]:
    """partition -> leader of ``raw``, from `brokers status`."""
    return {p["partition"]: p["leader"] for p in partitions(cluster.status()[1], {raw})}


def _group_coordinator(bootstrap: str, group: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group], request_timeout=30)[group].result(30)
    return int(description.coordinator.id)


def _late_marking(p: Pipeline) -> tuple[int, list[str]]:
    """How many processed readings are marked late, and every disagreement with the rule: late exactly
    when a higher seq of the device was processed before it (partition order is the enricher's order)."""
    records = read_records(p.bootstrap, p.topics.processed, idle=1.0)
    records.sort(key=lambda r: (r.partition, r.offset))
    top: dict[str, int] = {}
    late, wrong = 0, []
    for record in records:
        event = orjson.loads(record.value or b"{}")
        device, seq = event.get("deviceid"), event.get("seq")
        if device not in DEVICES:
            continue
        expected = seq < top.get(device, 0)
        marked = bool(event["data"]["late"])
        late += marked
        if marked != expected:
            wrong.append(f"{device} seq {seq}: late={marked}, top before it {top.get(device, 0)}")
        top[device] = max(top.get(device, 0), seq)
    return late, wrong


@pytest.mark.timeout(900)
def test_a_kafka_leader_and_a_bridge_killed_mid_stream_nothing_lost_nothing_twice(
    kafka_cluster: Cluster, pipeline: Callable[..., Pipeline], private_brokers: Callable[..., LocalBrokers]
) -> None:
    cluster = kafka_cluster
    mosquitto = private_brokers("mosquitto").mosquitto
    p = pipeline(mqtt_url=mosquitto.url, bootstrap=cluster.bootstrap, partitions=3, replication_factor=3)
    assert wait_until_isr(cluster, p.topics.raw, 3)
    for name in ("enricher-a", "enricher-b"):
        # the default transaction timeout (60 s), not the e2e's short one: a transaction open while a
        # leader fails over (~10 s here) must be able to wait it out, as in production
        p.start_enricher(name, transaction_timeout_ms=60000)
    bridges = [p.bridge(f"bridge-{x}", share_group="bridges").start() for x in "ab"]
    assert all(b.wait_healthy(60) for b in bridges), [str(b.log_path) for b in bridges]
    for device in DEVICES:
        p.agent(device, events=EVENTS, rate=RATE).start()
    total = EVENTS * len(DEVICES)
    timeline = Timeline(p)
    report: dict[str, object] = {}
    with timeline.running():
        def phase(what: str) -> None:  # where a slow run spent its time, in the output of -s
            print(f"t={timeline.now():5.1f}s receipted {timeline.receipted()}/{total}: {what}", flush=True)

        # -- fault 1: the node coordinating the enrichers' group, SIGKILL (restarted further down) -----
        wait_for(lambda: timeline.receipted() >= total // 5, 120, "a fifth of the stream receipted")
        leaders = _raw_leaders(cluster, p.topics.raw)
        victim_id = _group_coordinator(cluster.bootstrap, f"{p.prefix}-enricher")
        victim = cluster.kafka.node(victim_id)
        pid = victim.pid
        assert pid is not None and victim.is_running()
        killed_at = timeline.now()
        victim.kill()  # SIGKILL; raises unless the process is gone
        phase(f"node {victim_id} killed (the group's coordinator; raw partition: leader {leaders})")
        assert not pid_matches(pid, victim.marker) and not victim.is_running()

        def fenced() -> bool:  # the cluster's own view: out of every ISR of raw, new leaders elected
            parts = partitions(cluster.status()[1], {p.topics.raw})
            return len(parts) == 3 and all(victim_id not in x["isr"] and x["leader"] not in (-1, victim_id)
                                           for x in parts)

        wait_for(fenced, 120, f"node {victim_id} out of every ISR of {p.topics.raw}", every=1.0)
        fenced_at = timeline.now()
        phase("node fenced")
        # the stream keeps flowing on two nodes (min ISR 2 still met): receipts arrive while it is down
        wait_for(lambda: timeline.receipts_between(fenced_at, timeline.now()) >= 500, 90,
                 "500 receipts with the node down")
        assert cluster.status()[0] == 3, "the node came back by itself: not a fault"
        node_report: dict[str, float] = {"node": victim_id, "killed_at": round(killed_at, 1),
                                         "fenced_after": round(fenced_at - killed_at, 1)}

        # -- fault 2, with the node still down: one of the two bridges, SIGKILL, left dead -------------
        dead, survivor = bridges
        carried_before = survivor.metric("edgebridge_bridge_acked_messages_total")
        assert dead.proc is not None
        assert timeline.receipted() < total * 0.8, "the stream is nearly over: not mid-stream"
        committed_then = {d: p.committed(d) for d in DEVICES}
        bridge_killed_at = timeline.now()
        p.bridges.remove(dead)  # first: never restarted, the survivor alone must carry the rest
        dead.kill()
        assert dead.proc.returncode == -9  # died of SIGKILL
        # read after the kill, not the timeline's last sample (up to 0.5 s and one round of status reads
        # old: a loaded machine's dead bridge receipted ~600 more in that time, charged to the survivor):
        # whatever is receipted later went through the survivor
        _, receipted_then = edge_counts(p)
        phase(f"{dead.name} killed")

        def caught_up() -> bool:  # every event committed before the kill receipted (rows gone)
            return all((p.status(d).get("oldest_seq") or committed_then[d] + 1) > committed_then[d]
                       for d in DEVICES)

        wait_for(caught_up, 180, "every event committed before the bridge kill receipted", every=0.2)
        report["bridge"] = {"killed_at": round(bridge_killed_at, 1),
                            "caught_up_after": round(timeline.now() - bridge_killed_at, 1),
                            "longest_stall": timeline.longest_stall(bridge_killed_at, timeline.now())}

        # -- the node restarted (`up`), back in every ISR ---------------------------------------------
        up_at = timeline.now()
        up = cluster.cli("up")  # starts the dead node again, same ports and data
        assert up.returncode == 0, up.stderr
        restarted_at = timeline.now()
        phase("node restarted")
        assert cluster.kafka.node(victim_id).pid not in (None, pid)
        node_report.update({"down_for": round(restarted_at - killed_at, 1),
                            "up_took": round(restarted_at - up_at, 1),
                            "receipts_while_down": timeline.receipts_between(killed_at, restarted_at),
                            "longest_stall": timeline.longest_stall(killed_at, restarted_at)})
        assert wait_until_isr(cluster, p.topics.raw, 3)
        node_report["isr_back_after_up"] = round(timeline.now() - restarted_at, 1)
        report["kafka"] = node_report

        # -- the end: every agent done, nothing pending in any outbox --------------------------------------
        wait_for(lambda: all(p.committed(d) >= EVENTS for d in DEVICES), 240, "every reading committed")
        wait_for(lambda: all(p.status(d).get("backlog_rows") == 0 for d in DEVICES), 240,
                 "every outbox emptied by receipts")
        report["end"] = round(timeline.now(), 1)
    carried = survivor.metric("edgebridge_bridge_acked_messages_total") - carried_before
    expected = set().union(*(p.expected(d) for d in DEVICES))
    assert len(expected) == total
    got = p.wait_processed(expected, timeout=240)
    assert set(got) == expected and max(got.values()) == 1, {k: n for k, n in got.items() if n > 1}
    assert not [r for r in p.restarts if r.startswith("bridge")], p.restarts
    late, wrong = _late_marking(p)
    assert wrong == [], wrong[:10]
    assert late > 0, "no device's records interleaved: the two bridges did not share the stream"
    resends = sum(int(p.status(d).get("resends", 0)) for d in DEVICES)
    print(f"scale-out run: {total} events, {report}, survivor acked {carried:.0f} after the kill, "
          f"late {late}, agent resends {resends}, restarts {p.restarts}, "
          f"receipts/s per 5 s {timeline.per_bucket()}")
    # every event receipted after the kill went through the survivor (a small margin for receipts of
    # the dead bridge still on their way through Mosquitto at the kill)
    assert carried >= (total - receipted_then) * 0.95, f"the survivor acked only {carried} after the kill"


def edge_counts(p: Pipeline) -> tuple[int, int]:
    """Events committed and receipted at the edge, summed over the devices, read now."""
    committed = receipted = 0
    for device in DEVICES:
        status = p.status(device)  # one read: its counts agree with each other
        done = int(status.get("last_seq", {}).get(device, 0))
        committed += done
        receipted += done - int(status.get("backlog_rows", done))
    return committed, receipted


def wait_until_isr(cluster: Cluster, topic: str, size: int, timeout: float = 120) -> bool:
    def full() -> bool:
        parts = partitions(cluster.status()[1], {topic})
        return bool(parts) and all(len(x["isr"]) == size for x in parts)

    wait_for(full, timeout, f"every partition of {topic} with {size} in-sync replicas", every=1.0)
    return True


def test_the_demo_runs_on_the_cluster_with_two_bridges(kafka_cluster: Cluster) -> None:
    """`edgebridge demo --kafka-nodes 3 --bridges 2` on the session's shared cluster (its state folder:
    `up` finds the three nodes running and starts only Mosquitto), kept running for the other tests on
    it; the demo's Mosquitto is stopped after. The demo writes the contract's default topic names: no
    other test on the cluster uses them for data."""
    state = str(kafka_cluster.state)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "edgebridge", "demo", "--state-dir", state, "--kafka-nodes", "3",
             "--bridges", "2", "--devices", "2", "--events", "300", "--rate", "150", "--timeout", "150",
             "--keep"], capture_output=True, text=True, timeout=280, env=env)
    finally:
        subprocess.run([sys.executable, "-m", "edgebridge", "brokers", "--state-dir", state, "--only",
                        "mosquitto", "down"], capture_output=True, timeout=60, env=env)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "kafka 3 KRaft nodes" in out and "replication factor 3" in out, out
    assert "2. 2 bridge(s), the enricher and the aggregator up" in out, out
    assert "raw: complete" in out and "processed: complete, exactly once" in out, out
    assert "processes exited 0" in out and "not 0" not in out, out
