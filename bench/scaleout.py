"""Scale-out on the three-node cluster: bridge throughput with 1, 2 and 3 replicas, enricher throughput
with 1 and 2 replicas, and what replication costs one bridge and one enricher (RF 3 / min ISR 2 on the
cluster against RF 1 on one node, the baseline), all in one run on the same machine.

The brokers: a three-node KRaft cluster (``edgebridge.devbrokers``, every node broker and controller),
one single Kafka node beside it for the baseline, and one Mosquitto; all run for the whole benchmark,
and the runs alternate between them repeat by repeat (the order reversed every other repeat), so that
the machine's drift (other work on it) falls on both sides.

Bridge: ``--bridges`` replicas (``edgebridge bridge run`` processes) in one MQTT 5 shared-subscription
group (``uplink.share_group``, a new group and a new raw topic per run), fed by the load driver of
``bench/bridge_throughput.py`` (its ``--traffic`` child process: DEVICES devices, each publishing RATE
single events per second in the edge agent's wire shape, for SECONDS). The offered load is meant to be
above what the bridges carry: what is counted is what reaches the raw topic, by a separate
``read_committed`` consumer, and the rate is taken over the steady window from 10 % to 90 % of the
events (start-up and tail left out). The publisher's own rate is printed beside it: where the bridges
keep up with it, the figure is the publisher's, not the bridges'.

Bridge, backlog drain (``--drain`` messages, the other bridge figure): the drain of
``bench/bridge_throughput.py`` by N replicas. Their sessions are created in the share group first, the
messages published while none is connected (Mosquitto deals them round robin to the offline sessions),
then the replicas start together and are timed over the 10-90 % window of what reaches raw; no
publisher competes for the cores during the window, so this is what the replicas themselves carry.

Enricher: a raw topic of each Kafka preloaded once with ``--events`` readings (the workload of
``bench/enricher_throughput.py``: 1,000 registered devices, 5 % re-sends), drained by ``--enrichers``
``edgebridge enricher run`` processes in one consumer group (fresh group and output topics per run).
What is counted is ``processed``, by a separate ``read_committed`` consumer: one record per distinct
event, rate over the 10-90 % window. ``group.initial.rebalance.delay.ms`` is 3 s on these brokers (not
the test brokers' 0), so that two replicas started together join before the first assignment.

Besides the rate, each run reports, over the same window, the CPU of the component's processes per
event (``/proc/<pid>/stat``), how busy the machine's cores were (``/proc/stat``) and the Kafka JVMs'
share of that: on a machine this small, the answer to "why does another replica not help" is in those
figures ("cores busy" counts everything on the machine, other users' work included; "Kafka JVMs" the
nodes of the Kafka the run uses). Medians over ``--repeats``; the ratios are of medians. Prints a
markdown table at the end.

    .venv/bin/python -m bench.scaleout [--traffic 8x1250x10] [--drain 40000] [--events 100000]
        [--repeats 3] [--bridges 1,2,3] [--enrichers 1,2] [--partitions 2] [--skip bridge,drain,enricher]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import confluent_kafka
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.bridge_throughput import (
    PREFIX,
    TRAFFIC_PREFIX,
    Shape,
    _client,
    _traffic_child,
    publish,
    singles,
    traffic_shapes,
)
from bench.enricher_throughput import DEVICES, fill, raw_events, registry
from edgebridge.devbrokers import KafkaOptions, LocalBrokers
from edgebridge.devbrokers.kafka_cluster import cluster_heap
from edgebridge.mqtt.client import connect_properties
from simulators.processes import ComponentProcess

# the brokers' settings that differ from the test brokers', printed with the results
BROKER_EXTRA = {"group.initial.rebalance.delay.ms": "3000"}
WINDOW = (0.1, 0.9)  # the steady window: from 10 % to 90 % of the events counted
TICK = os.sysconf("SC_CLK_TCK")


# -- what the machine did ------------------------------------------------------------------------------

def pid_cpu(pid: int) -> float:
    """CPU seconds (user + system, threads included) of a running process; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot (/proc/stat; idle and iowait are not busy)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])  # guest time is counted in user already
    return (total - values[3] - values[4]) / TICK, total / TICK


@dataclass
class Snapshot:
    at: float
    count: int
    machine: tuple[float, float]
    components: float  # CPU seconds of the component processes under test
    jvms: float  # CPU seconds of every Kafka node (both Kafkas)


@dataclass
class Watched:
    """The processes whose CPU a run reads: the components under test, and the Kafka JVMs."""
    components: list[int]
    jvms: list[int]

    def snapshot(self, count: int) -> Snapshot:
        return Snapshot(time.monotonic(), count, machine_cpu(), sum(map(pid_cpu, self.components)),
                        sum(map(pid_cpu, self.jvms)))


class TopicCounter:
    """A separate ``read_committed`` consumer counting the records of ``topic`` from its beginning, on a
    thread; it takes a :class:`Snapshot` when the count first reaches each edge of the window."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, total: int, watched: Watched) -> None:
        self.total, self.watched = total, watched
        self.count = 0
        self.first_at = 0.0
        self.edges: list[Snapshot] = []
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{uuid.uuid4().hex}",
                                   "isolation.level": "read_committed", "enable.auto.commit": False})
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="counter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        marks = [round(self.total * edge) for edge in WINDOW]
        while not self._stop.is_set():
            got = sum(1 for m in self._consumer.consume(10_000, 0.05) if not m.error())
            if got and not self.first_at:
                self.first_at = time.monotonic()
            self.count += got
            while marks and self.count >= marks[0]:
                marks.pop(0)
                self.edges.append(self.watched.snapshot(self.count))

    def wait(self, timeout: float, alive: Callable[[], str | None]) -> None:
        """Until every record is counted; RuntimeError when ``alive`` names a dead part, or on timeout."""
        deadline = time.monotonic() + timeout
        while self.count < self.total:
            problem = alive()
            if problem or time.monotonic() > deadline:
                raise RuntimeError(f"{problem or 'timed out'} at {self.count:,} of {self.total:,} records")
            time.sleep(0.05)  # polling the count, not a synchronisation

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


@dataclass
class Run:
    rate: float  # events/s over the window
    cpu_us: float  # component CPU per event over the window, us
    busy: float  # share of the machine's cores busy over the window
    jvm_share: float  # the Kafka JVMs' share of the machine's cores over the window
    extra: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def of(counter: TopicCounter, **extra: float) -> Run:
        a, b = counter.edges
        events = b.count - a.count
        seconds = b.at - a.at
        wall = b.machine[1] - a.machine[1]  # core-seconds elapsed on all cores
        return Run(events / seconds, (b.components - a.components) * 1e6 / events,
                   (b.machine[0] - a.machine[0]) / wall, (b.jvms - a.jvms) / wall, dict(extra))

    def __str__(self) -> str:
        more = "".join(f", {k} {v:,.0f}" for k, v in self.extra.items())
        return (f"{self.rate:,.0f} ev/s, {self.cpu_us:.0f} us CPU/event, cores busy {self.busy:.0%} "
                f"(Kafka JVMs {self.jvm_share:.0%}){more}")


# -- the brokers ----------------------------------------------------------------------------------------

@dataclass
class Kafkas:
    """One of the two Kafkas a run goes to: its bootstrap and its replication factor (min ISR one less)."""
    label: str
    bootstrap: str
    rf: int
    jvms: list[int]  # the nodes' pids, for their share of the cores

    def create(self, name: str, partitions: int, config: dict[str, str] | None = None) -> str:
        config = {**(config or {}), **({"min.insync.replicas": str(self.rf - 1)} if self.rf > 1 else {})}
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(name, partitions, self.rf, config=config)])[name].result(30)
        return name


def jvm_pids(local: LocalBrokers) -> list[int]:
    return [n.pid for n in local.kafka_cluster.nodes if n.pid]


# -- bridge ---------------------------------------------------------------------------------------------

def bridge_run(kafka: Kafkas, mqtt_url: str, mqtt_port: int, replicas: int, shape: Shape,
               workdir: Path) -> Run:
    raw = kafka.create(f"bench-raw-{uuid.uuid4().hex[:8]}", 3)
    group = f"bench{uuid.uuid4().hex[:8]}"
    bridges = []
    for i in range(replicas):
        config = {"mqtt": {"url": mqtt_url, "topic_prefix": TRAFFIC_PREFIX},
                  "kafka": {"bootstrap": kafka.bootstrap}, "log": {"level": "WARNING"},
                  "uplink": {"client_id": f"{group}-{i}", "share_group": group},
                  "topics": {"raw": raw}, "downlink": {"enabled": False}}
        bridges.append(ComponentProcess("bridge", f"{group}-{i}", config, workdir).start())
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_traffic_child, args=(mqtt_port, shape, theirs))
    counter = None
    try:
        for b in bridges:
            if not b.wait_healthy(90):  # healthy = connected and subscribed to the share group
                raise RuntimeError(f"{b.name} not healthy, see {b.log_path}")
        child.start()
        if not (ours.poll(300) and ours.recv() == "ready"):
            raise RuntimeError("the load generator did not get ready")
        total = shape.devices * max(1, round(shape.rate * shape.seconds))
        counter = TopicCounter(kafka.bootstrap, raw, 3, total,
                               Watched([b.proc.pid for b in bridges if b.proc], kafka.jvms))
        began = time.monotonic()
        ours.send("go")

        def alive() -> str | None:
            dead = [b.name for b in bridges if not b.running]
            if dead:
                return f"bridge {dead} exited"
            return None if child.is_alive() or ours.poll() else f"load generator exited ({child.exitcode})"

        counter.wait(600, alive)
        load = ours.recv()  # sent once every PUBACK was in: the publisher's own figures
        published_in = total / shape.rate / shape.devices + load["late"]
        ours.send("stop")
        ours.recv()
        child.join(30)
        last = counter.edges[-1].at if counter.edges else time.monotonic()
        return Run.of(counter, published=total / published_in,
                      publish_s=published_in, window_end_s=last - began)
    finally:
        if counter:
            counter.close()
        if child.is_alive():
            child.kill()
        for b in bridges:
            b.terminate()


def _shared_session(port: int, client_id: str, group: str, expiry: int) -> None:
    """Create (``expiry`` > 0) the persistent session of a replica-to-be in ``group``, subscribed to the
    events, or end it (0): Mosquitto deals a share group's messages to offline members' sessions too."""
    done = threading.Event()
    c = _client(client_id)
    c.on_subscribe = lambda *_a: done.set()
    c.connect("127.0.0.1", port, clean_start=expiry == 0, properties=connect_properties(expiry))
    c.loop_start()
    if expiry:
        c.subscribe(f"$share/{group}/{PREFIX}/+/events", 1)
        assert done.wait(10)
    c.disconnect()
    c.loop_stop()


def bridge_drain_run(kafka: Kafkas, mqtt_url: str, mqtt_port: int, replicas: int,
                     payloads: list[tuple[str, bytes]], workdir: Path) -> Run:
    """The backlog drain of ``bench/bridge_throughput.py``, by ``replicas`` in one share group: the
    messages are published while no replica is connected (Mosquitto queues them, dealt round robin,
    for the replicas' sessions), then the replicas start together; no publisher runs in the window."""
    raw = kafka.create(f"bench-raw-{uuid.uuid4().hex[:8]}", 3)
    group = f"drain{uuid.uuid4().hex[:8]}"
    ids = [f"{group}-{i}" for i in range(replicas)]
    for cid in ids:
        _shared_session(mqtt_port, cid, group, 3600)
    bridges: list[ComponentProcess] = []
    counter = None
    try:
        publish(mqtt_port, payloads)
        watched = Watched([], kafka.jvms)
        counter = TopicCounter(kafka.bootstrap, raw, 3, len(payloads), watched)
        for cid in ids:
            config = {"mqtt": {"url": mqtt_url, "topic_prefix": PREFIX},
                      "kafka": {"bootstrap": kafka.bootstrap}, "log": {"level": "WARNING"},
                      "uplink": {"client_id": cid, "share_group": group, "session_expiry": 3600},
                      "topics": {"raw": raw}, "downlink": {"enabled": False}}
            bridges.append(ComponentProcess("bridge", cid, config, workdir).start())
        watched.components = [b.proc.pid for b in bridges if b.proc]

        def alive() -> str | None:
            dead = [b.name for b in bridges if not b.running]
            return f"bridge {dead} exited" if dead else None

        counter.wait(600, alive)
        return Run.of(counter)
    finally:
        if counter:
            counter.close()
        for b in bridges:
            b.terminate()
        for cid in ids:  # no session left to collect the next runs' messages
            _shared_session(mqtt_port, cid, group, 0)


# -- enricher -------------------------------------------------------------------------------------------

@dataclass
class Preloaded:
    kafka: Kafkas
    raw: str
    devices: str
    partitions: int
    distinct: int  # events in raw once re-sends are dropped: what processed must hold


def preload(kafka: Kafkas, events: list[tuple[bytes, bytes]], partitions: int) -> Preloaded:
    import orjson
    from confluent_kafka import Producer

    tag = uuid.uuid4().hex[:6]
    raw = kafka.create(f"bench-enr-raw-{tag}", partitions)
    devices = kafka.create(f"bench-devices-{tag}", 1, {"cleanup.policy": "compact"})
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    for dev, info in registry().items():
        producer.produce(devices, orjson.dumps(info), dev.encode())
    assert producer.flush(60) == 0
    began = time.monotonic()
    fill(kafka.bootstrap, raw, events)
    print(f"  {kafka.label}: {len(events):,} records into {raw} ({partitions} partitions) in "
          f"{time.monotonic() - began:.1f} s", flush=True)
    return Preloaded(kafka, raw, devices, partitions, len(set(events)))


def enricher_run(pre: Preloaded, replicas: int, workdir: Path) -> Run:
    kafka, tag = pre.kafka, uuid.uuid4().hex[:8]
    topics = {"raw": pre.raw, "devices": pre.devices,
              "processed": kafka.create(f"bench-processed-{tag}", pre.partitions),
              "enricher_state": kafka.create(f"bench-state-{tag}", pre.partitions,
                                             {"cleanup.policy": "compact"}),
              "deadletter": kafka.create(f"bench-dl-{tag}", 1),
              "alerts": kafka.create(f"bench-alerts-{tag}", 1)}
    group = f"bench-enr-{tag}"
    watched = Watched([], kafka.jvms)
    counter = TopicCounter(kafka.bootstrap, topics["processed"], pre.partitions, pre.distinct, watched)
    procs = []
    try:
        began = time.monotonic()
        for i in range(replicas):
            config = {"instance_id": f"{group}-{i}", "group_id": group, "transactional_id_prefix": group,
                      "kafka": {"bootstrap": kafka.bootstrap}, "log": {"level": "WARNING"},
                      "commit": {"interval_ms": 100}, "topics": topics}
            procs.append(ComponentProcess("enricher", f"{group}-{i}", config, workdir).start())
        watched.components = [p.proc.pid for p in procs if p.proc]

        def alive() -> str | None:
            dead = [p.name for p in procs if not p.running]
            return f"enricher {dead} exited, see {workdir}" if dead else None

        counter.wait(600, alive)
        return Run.of(counter, startup_s=counter.first_at - began)
    finally:
        for p in procs:
            p.terminate()
        counter.close()


# -- the run --------------------------------------------------------------------------------------------

def show(label: str, runs: Sequence[Run]) -> None:
    print(f"  {label}: " + "; ".join(str(r) for r in runs), flush=True)


def median(runs: Sequence[Run], attr: str = "rate") -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def row(scenario: str, runs: Sequence[Run], base: Sequence[Run] | None, base_label: str) -> str:
    rates = ", ".join(f"{r.rate:,.0f}" for r in runs)
    ratio = f"{median(runs) / median(base):.2f} of {base_label}" if base else "-"
    return (f"| {scenario} | {median(runs):,.0f} ({rates}) | {ratio} | {median(runs, 'cpu_us'):.0f} | "
            f"{median(runs, 'busy'):.0%} | {median(runs, 'jvm_share'):.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traffic", type=traffic_shapes, default=traffic_shapes("8x1250x10"),
                        help="the bridge's offered load, DEVICESxRATExSECONDS (RATE events/s per device; "
                             "default 8x1250x10: 10,000 ev/s for 10 s)")
    parser.add_argument("--events", type=int, default=100_000, help="raw records the enrichers drain")
    parser.add_argument("--partitions", type=int, default=2, help="partitions of the enrichers' topics")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bridges", default="1,2,3", help="bridge replica counts on the cluster")
    parser.add_argument("--enrichers", default="1,2", help="enricher replica counts on the cluster")
    parser.add_argument("--drain", type=int, default=40_000,
                        help="messages of the bridges' backlog drain (0: no drain section)")
    parser.add_argument("--skip", default="",
                        help="comma-separated sections to skip: bridge (the load driver), drain, enricher")
    args = parser.parse_args()
    shape = args.traffic[0]
    bridge_counts = [int(x) for x in args.bridges.split(",")]
    enricher_counts = [int(x) for x in args.enrichers.split(",")]
    skip = set(args.skip.split(","))
    heap = cluster_heap()
    began = time.monotonic()
    loads: list[float] = []
    print(f"machine: {os.cpu_count()} cores, {_ram_gb():.0f} GB RAM, "
          f"{platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}, confluent-kafka {confluent_kafka.__version__} / librdkafka "
          f"{confluent_kafka.libversion()[0]}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        work = Path(tmp)
        options = KafkaOptions(heap=heap, extra=BROKER_EXTRA)
        cluster = LocalBrokers(work / "cluster", kafka=options, kafka_nodes=3)
        single = LocalBrokers(work / "single", kafka=options, only=("kafka",))
        try:
            cluster.up()
            single.up()
            m = cluster.mosquitto.options
            print(f"brokers: Kafka three combined KRaft nodes (RF 3, min ISR 2) and one node (RF 1), heap "
                  f"{heap} each, {BROKER_EXTRA}; Mosquitto max_inflight_messages={m.max_inflight_messages} "
                  f"max_queued_messages={m.max_queued_messages}; bridge defaults (receive_maximum 1000, "
                  f"receipts on, linger.ms=5, lz4, idempotent acks=all); enricher commit.interval_ms=100",
                  flush=True)
            sides = {1: Kafkas("one node, RF 1", single.kafka_bootstrap, 1, jvm_pids(single)),
                     3: Kafkas("three nodes, RF 3", cluster.kafka_bootstrap, 3, jvm_pids(cluster))}
            bridge_cases = [(1, 1)] + [(3, n) for n in bridge_counts]
            enricher_cases = [(1, 1)] + [(3, n) for n in enricher_counts]
            bridge: dict[tuple[int, int], list[Run]] = {c: [] for c in bridge_cases}
            drain: dict[tuple[int, int], list[Run]] = {c: [] for c in bridge_cases}
            backlog = singles(args.drain) if args.drain and "drain" not in skip else []
            enricher: dict[tuple[int, int], list[Run]] = {c: [] for c in enricher_cases}
            preloaded = {}
            if "enricher" not in skip:
                events = raw_events(args.events)
                print(f"enricher workload: {args.events:,} raw records ({DEVICES} devices, 5 % re-sends)",
                      flush=True)
                preloaded = {rf: preload(side, events, args.partitions) for rf, side in sides.items()}
            for r in range(args.repeats):
                order = (lambda cases: cases) if r % 2 == 0 else (lambda cases: list(reversed(cases)))
                print(f"repeat {r + 1} ({time.monotonic() - began:.0f} s in, load average "
                      f"{os.getloadavg()[0]:.2f})", flush=True)
                if "bridge" not in skip:
                    for rf, n in order(bridge_cases):
                        loads.append(os.getloadavg()[0])
                        bridge[(rf, n)].append(bridge_run(sides[rf], cluster.mosquitto.url,
                                                          cluster.mosquitto.port, n, shape, work))
                        show(f"bridge x{n}, {sides[rf].label}", bridge[(rf, n)][-1:])
                if backlog:
                    for rf, n in order(bridge_cases):
                        loads.append(os.getloadavg()[0])
                        drain[(rf, n)].append(bridge_drain_run(sides[rf], cluster.mosquitto.url,
                                                               cluster.mosquitto.port, n, backlog, work))
                        show(f"bridge drain x{n}, {sides[rf].label}", drain[(rf, n)][-1:])
                if "enricher" not in skip:
                    for rf, n in order(enricher_cases):
                        loads.append(os.getloadavg()[0])
                        enricher[(rf, n)].append(enricher_run(preloaded[rf], n, work))
                        show(f"enricher x{n}, {sides[rf].label}", enricher[(rf, n)][-1:])
            loads.append(os.getloadavg()[0])
        finally:
            single.down()
            cluster.down()
        report(shape, args, bridge, drain, enricher, bridge_counts, enricher_counts)
        print(f"\nload average (1 min) at each run: {min(loads):.2f}-{max(loads):.2f}; whole benchmark "
              f"{time.monotonic() - began:.0f} s")


def report(shape: Shape, args: argparse.Namespace, bridge: dict[tuple[int, int], list[Run]],
           drain: dict[tuple[int, int], list[Run]], enricher: dict[tuple[int, int], list[Run]],
           bridge_counts: list[int], enricher_counts: list[int]) -> None:
    print(f"\n{args.repeats} repeats, medians; rate over the 10-90 % window, counted in Kafka by a "
          "read_committed consumer; CPU per event of the component's processes (summed); cores busy and "
          "the Kafka JVMs' share over the same window\n")
    print("| scenario | events/s, median (runs) | ratio | component CPU us/event | cores busy | "
          "Kafka JVMs |")
    print("|---|---|---|---|---|---|")
    for name, runs, counts in (("bridge", bridge, bridge_counts),
                               (f"bridge drain of {args.drain:,}", drain, bridge_counts),
                               ("enricher", enricher, enricher_counts)):
        if not runs[(1, 1)]:
            continue
        print(row(f"{name} x1, one node RF 1 (baseline)", runs[(1, 1)], None, ""))
        one = runs.get((3, 1)) or None
        for n in counts:
            # x1 on the cluster against the baseline: the cost of replication; xN against x1: scale-out
            base, label = (runs[(1, 1)], "RF 1") if n == 1 else (one, "x1 on RF 3")
            print(row(f"{name} x{n}, three nodes RF 3", runs[(3, n)], base, label))
        if name == "bridge":
            pubs = [r.extra["published"] for case in runs.values() for r in case]
            print(f"| (load driver {shape}: {shape.devices * shape.rate:,.0f} ev/s offered, "
                  f"{min(pubs):,.0f}-{max(pubs):,.0f} ev/s published) | | | | | |")


def _ram_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


if __name__ == "__main__":
    main()
