"""Bridge throughput: ack-after-Kafka (ours) against a naive auto-ack, fire-and-forget bridge.

Both bridges drain the same backlog from a persistent MQTT session on the same brokers, so the figure
is the bridge's, not the publisher's: N messages are published while the bridge's session exists but
no bridge is connected, then the bridge is started and timed from its first received message until the
last message is acknowledged (ours: PUBACK after Kafka's delivery report) or the last record is
delivered (naive: auto-ack, produce without waiting). Connecting and librdkafka's start (the idempotent
producer's PID) are left out of both clocks: they are per process, not per message. Ours and the naive
one alternate within each repeat; medians of the repeats and the median of the per-repeat ratios.
Besides rates, ours reports CPU microseconds per message by thread (/proc/self/task), which a shared
machine disturbs much less than wall-clock rates. Then batches (events/s), then the ack latency under a
steady publish rate (p50/p99 interpolated from the bridge's histogram buckets).

Traffic shapes (``--traffic DEVICESxRATExSECONDS,...``, e.g. ``4x1000x20,2000x1x30``): DEVICES devices
each publishing RATE single events per second for SECONDS, in the edge agent's wire shape (its
simulated event, content type, ``eventid``/``seq`` user properties), paced by a separate process, into
a bridge with receipts on and one with receipts off, alternated in pairs. Per run: events/s from the
first publish to the bridge's last PUBACK, the bridge's CPU per message by thread (over the run, the
last receipts included), and the receipt traffic as an independent QoS 0 subscriber on
``{prefix}/+/receipts`` sees it: messages, payload bytes and per-hop bytes (the QoS 1 PUBLISH packet
the bridge sends to the broker and the broker to the device, computed from the received packet plus
its packet id) per 1,000 events, and what that makes for a fleet of 100,000 events/s of that shape.

    .venv/bin/python -m bench.bridge_throughput [--messages 20000] [--repeats 3]
    .venv/bin/python -m bench.bridge_throughput --skip singles,batches,latency \
        --traffic 4x1000x20,200x1x60,2000x1x30 --repeats 3
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import secrets
import statistics
import tempfile
import threading
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.common import thread_cpu
from edgebridge.config import load_config
from edgebridge.devbrokers import LocalBrokers
from edgebridge.envelope import encode, encode_batch, new_reading
from edgebridge.mqtt.client import connect_properties

PREFIX = "bench"
DEFAULT_WINDOW = 1000  # the bridge's default uplink.receive_maximum


def _client(client_id: str, manual_ack: bool = False) -> mqtt.Client:
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                       manual_ack=manual_ack)


def prepare_session(port: int, client_id: str) -> None:
    """Create the persistent session (subscription) the bridge will find, then leave."""
    done = threading.Event()
    c = _client(client_id)
    c.on_subscribe = lambda *_a: done.set()
    c.connect("127.0.0.1", port, clean_start=False, properties=connect_properties(3600))
    c.subscribe(f"{PREFIX}/+/events", 1)
    c.loop_start()
    assert done.wait(10)
    c.disconnect()
    c.loop_stop()


def publish(port: int, payloads: list[tuple[str, bytes]]) -> None:
    p = _client(f"pub-{uuid.uuid4().hex[:6]}")
    p.max_inflight_messages_set(1000)
    p.connect("127.0.0.1", port)
    p.loop_start()
    infos = [p.publish(t, v, qos=1) for t, v in payloads]
    for i in infos:
        i.wait_for_publish(120)
    p.disconnect()
    p.loop_stop()


def singles(n: int) -> list[tuple[str, bytes]]:
    return [(f"{PREFIX}/dev-{i % 10}/events",
             encode(new_reading(f"dev-{i % 10}", i // 10 + 1, {"t": {"v": 21.5, "u": "Cel"}})))
            for i in range(n)]


def batches(n: int, size: int) -> list[tuple[str, bytes]]:
    out = []
    for b in range(n):
        d = f"dev-{b % 10}"
        first = (b // 10) * size + 1
        out.append((f"{PREFIX}/{d}/events", encode_batch(
            [new_reading(d, s, {"t": {"v": 21.5, "u": "Cel"}}) for s in range(first, first + size)])))
    return out


def new_topic(bootstrap: str) -> str:
    name = f"raw-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the result is in
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(30)
    return name


def rss() -> int:
    """Resident set size of this process, bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Run(NamedTuple):
    elapsed: float
    metrics: Any
    cpu: dict[str, float]
    rss_growth: int  # peak RSS during the drain minus RSS just before the bridge was built
    max_in_flight: int  # most messages un-acknowledged at once (sampled)


def run_ours(brokers: LocalBrokers, payloads: list[tuple[str, bytes]], receive_maximum: int = 1000) -> Run:
    from bridge.config import BridgeConfig
    from bridge.service import Bridge

    client_id = f"ours-{uuid.uuid4().hex[:6]}"
    prepare_session(brokers.mosquitto.port, client_id)
    publish(brokers.mosquitto.port, payloads)
    config = load_config(BridgeConfig, None, env={}, overrides={
        "mqtt.url": brokers.mosquitto.url, "mqtt.topic_prefix": PREFIX,
        "kafka.bootstrap": brokers.kafka.bootstrap, "uplink.client_id": client_id,
        "topics.raw": new_topic(brokers.kafka.bootstrap), "downlink.enabled": False,
        "uplink.receive_maximum": receive_maximum, "metrics.enabled": False})
    rss_before = rss()
    bridge = Bridge(config)
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,))
    thread.start()
    get = bridge.metrics.registry.get_sample_value
    while bridge.uplink.source.queued == 0 and not get("edgebridge_bridge_received_messages_total"):
        time.sleep(0.0005)  # the first message is in the intake queue (the counters move per turn)
    began = time.perf_counter()
    paho = bridge.uplink.source._client._thread  # paho's network thread, for the CPU split
    names = {thread.native_id or 0: "service", getattr(paho, "native_id", 0) or 0: "paho"}
    cpu_before = thread_cpu(names)
    peak, in_flight, turn = 0, 0, 0
    while (get("edgebridge_bridge_acked_messages_total") or 0) < len(payloads):
        time.sleep(0.002)
        in_flight = max(in_flight, int(get("edgebridge_bridge_in_flight_messages") or 0))
        turn += 1
        if turn % 10 == 0:  # reading /proc costs the bridge's CPU too: every 20 ms is enough
            peak = max(peak, rss())
    elapsed = time.perf_counter() - began
    cpu_after = thread_cpu(names)
    stop.set()
    thread.join()
    cpu = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_after.items()
           if k in ("service", "paho") or k.startswith("rdk:broker")}
    return Run(elapsed, bridge.metrics, cpu, max(peak, rss()) - rss_before, in_flight)


def run_naive(brokers: LocalBrokers, payloads: list[tuple[str, bytes]]) -> float:
    """Auto-ack paho -> fire-and-forget producer: what most bridges do by default."""
    client_id = f"naive-{uuid.uuid4().hex[:6]}"
    prepare_session(brokers.mosquitto.port, client_id)
    publish(brokers.mosquitto.port, payloads)
    topic = new_topic(brokers.kafka.bootstrap)
    producer = Producer({"bootstrap.servers": brokers.kafka.bootstrap, "linger.ms": 5})
    delivered = [0]
    received = [0]

    def on_delivery(err: Any, msg: Any) -> None:
        delivered[0] += 1

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        received[0] += 1
        device = msg.topic.split("/")[1]
        while True:
            try:
                producer.produce(topic, bytes(msg.payload), device.encode(), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)

    c = _client(client_id)
    c.on_message = on_message
    c.connect("127.0.0.1", brokers.mosquitto.port, clean_start=False, properties=connect_properties(3600))
    c.loop_start()
    while received[0] < 1:
        time.sleep(0.001)
    began = time.perf_counter()
    while received[0] < len(payloads):
        time.sleep(0.002)
    producer.flush(60)
    elapsed = time.perf_counter() - began
    c.disconnect()
    c.loop_stop()
    return elapsed


def quantile(metrics: Any, q: float) -> float:
    """histogram_quantile over the bridge's ack-latency buckets (linear within a bucket)."""
    buckets = []
    for family in metrics.registry.collect():
        if family.name == "edgebridge_bridge_ack_latency_seconds":
            buckets = [(float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")]
    total = buckets[-1][1]
    rank, prev_le, prev_count = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-9)
        prev_le, prev_count = le, count
    return float("nan")


def steady_latency(brokers: LocalBrokers, rate: int, seconds: float) -> tuple[float, float, int]:
    from bridge.config import BridgeConfig

    config = load_config(BridgeConfig, None, env={}, overrides={
        "mqtt.url": brokers.mosquitto.url, "mqtt.topic_prefix": PREFIX,
        "kafka.bootstrap": brokers.kafka.bootstrap, "uplink.client_id": f"lat-{uuid.uuid4().hex[:6]}",
        "topics.raw": new_topic(brokers.kafka.bootstrap), "downlink.enabled": False,
        "metrics.enabled": False})
    bridge, stop, thread = _start_bridge(config)
    payloads = singles(int(rate * seconds))
    p = _client(f"pub-{uuid.uuid4().hex[:6]}")
    p.connect("127.0.0.1", brokers.mosquitto.port)
    p.loop_start()
    began = time.perf_counter()
    for i, (t, v) in enumerate(payloads):
        p.publish(t, v, qos=1)
        ahead = began + i / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)  # pacing the load generator, not synchronisation
    get = bridge.metrics.registry.get_sample_value
    while (get("edgebridge_bridge_acked_messages_total") or 0) < len(payloads):
        time.sleep(0.01)
    p.disconnect()
    p.loop_stop()
    stop.set()
    thread.join()
    return quantile(bridge.metrics, 0.5), quantile(bridge.metrics, 0.99), len(payloads)


def per(cpu: dict[str, float], n: int) -> str:
    return ", ".join(f"{k} {v * 1e6 / n:.0f}" for k, v in sorted(cpu.items()))


def median_cpu(cpus: list[dict[str, float]], n: int) -> str:
    keys = sorted({k for c in cpus for k in c})
    return ", ".join(f"{k} {statistics.median(c.get(k, 0.0) for c in cpus) * 1e6 / n:.1f}" for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bridge_throughput", description=__doc__)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=int, default=2000, help="msg/s for the latency run")
    parser.add_argument("--windows", default=str(DEFAULT_WINDOW),
                        help="comma-separated receive_maximum values for the single-event runs")
    parser.add_argument("--skip", default="",
                        help="comma-separated sections to skip: singles,batches,latency")
    parser.add_argument("--traffic", default="", type=traffic_shapes,
                        help="DEVICESxRATExSECONDS,...: receipts on vs off under these traffic shapes "
                             "(RATE events/s per device), e.g. 4x1000x20,200x1x60,2000x1x30")
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    skip = set(args.skip.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp:
        brokers = LocalBrokers(Path(tmp))
        brokers.up()
        try:
            m = brokers.mosquitto.options
            print(f"machine: {os.cpu_count()} cores; mosquitto "
                  f"max_inflight_messages={m.max_inflight_messages} "
                  f"max_queued_messages={m.max_queued_messages}; bridge receive_maximum={args.windows}, "
                  "linger.ms=5, lz4, idempotent acks=all; naive: auto-ack, linger.ms=5, no idempotence")
            if "singles" not in skip:
                singles_section(brokers, args.messages, args.repeats, windows)
            if "batches" not in skip:
                bpay = batches(args.batches, args.batch_size)
                events = args.batches * args.batch_size
                rates, bcpus = [], []
                for _ in range(args.repeats):
                    run = run_ours(brokers, bpay, windows[0])
                    rates.append(events / run.elapsed)
                    bcpus.append(run.cpu)
                runs = ", ".join(f"{x:,.0f}" for x in rates)
                print(f"batches of {args.batch_size} (receive_maximum {windows[0]}): ours "
                      f"{statistics.median(rates):,.0f} events/s (runs: {runs}); "
                      f"CPU us/event (medians) {median_cpu(bcpus, events)}")
            if "latency" not in skip:
                p50, p99, n = steady_latency(brokers, args.rate, 5.0)
                print(f"ack latency at {args.rate} msg/s ({n} messages): p50 {p50 * 1000:.1f} ms, "
                      f"p99 {p99 * 1000:.1f} ms")
            for shape in args.traffic:
                traffic_section(brokers, shape, args.repeats)
        finally:
            brokers.down()


def singles_section(brokers: LocalBrokers, n: int, repeats: int, windows: list[int]) -> None:
    """Each repeat: the naive bridge once, then ours at every window, interleaved."""
    payloads = singles(n)
    naive: list[float] = []
    ours: dict[int, list[Run]] = {w: [] for w in windows}
    for r in range(repeats):
        naive.append(n / run_naive(brokers, payloads))
        line = [f"repeat {r + 1}: naive {naive[-1]:,.0f} msg/s"]
        for w in windows:
            run = run_ours(brokers, payloads, w)
            ours[w].append(run)
            line.append(f"ours@{w} {n / run.elapsed:,.0f} msg/s (ratio {n / run.elapsed / naive[-1]:.2f}, "
                        f"RSS +{run.rss_growth / 2**20:.1f} MiB, max in flight {run.max_in_flight}; "
                        f"CPU us/msg {per(run.cpu, n)})")
        print("; ".join(line), flush=True)
    for w in windows:
        runs = ours[w]
        rates = [n / run.elapsed for run in runs]
        ratio = statistics.median(o / b for o, b in zip(rates, naive, strict=True))
        print(f"single events, receive_maximum {w}: ours {statistics.median(rates):,.0f} msg/s, "
              f"naive {statistics.median(naive):,.0f} msg/s, median ratio {ratio:.2f}; "
              f"RSS growth median {statistics.median(run.rss_growth for run in runs) / 2**20:.1f} MiB, "
              f"max {max(run.rss_growth for run in runs) / 2**20:.1f} MiB; "
              f"max in flight {max(run.max_in_flight for run in runs)}; "
              f"CPU us/msg (medians) {median_cpu([run.cpu for run in runs], n)}", flush=True)


# -- receipts on vs off under traffic shapes -------------------------------------------------------------

TRAFFIC_PREFIX = "traffic"  # apart from PREFIX: the drains leave persistent sessions subscribed there
PUBLISH_BACKLOG = 50_000  # messages the load generator may have waiting for a PUBACK (< 65,535 ids)


class Shape(NamedTuple):
    devices: int
    rate: float  # events/s per device
    seconds: float

    def __str__(self) -> str:
        return f"{self.devices}x{self.rate:g}x{self.seconds:g}"


def traffic_shapes(text: str) -> list[Shape]:
    out = []
    for part in filter(None, text.split(",")):
        try:
            devices, rate, seconds = part.split("x")
            shape = Shape(int(devices), float(rate), float(seconds))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r}: expected DEVICESxRATExSECONDS, e.g. 200x1x60") from None
        if shape.devices < 1 or shape.rate <= 0 or shape.seconds <= 0:
            raise argparse.ArgumentTypeError(f"{part!r}: all three must be positive")
        out.append(shape)
    return out


def _varint_size(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16384 else 3 if n < 2097152 else 4


def _hop_bytes(remaining_qos0: int) -> int:
    """Size of the QoS 1 PUBLISH packet whose QoS 0 copy has this remaining length (+2: the packet id)."""
    remaining = remaining_qos0 + 2
    return 1 + _varint_size(remaining) + remaining


class _ReceiptCounter(mqtt.Client):
    """Counts what arrives on the receipts filter from the raw packets: no paho message objects, so the
    counting costs little CPU beside the bridge under test."""

    messages = payload_bytes = hop_bytes = ranges = seqs = 0

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        import orjson

        packet = bytes(self._in_packet["packet"])  # QoS 0: topic, properties, payload
        pos = 2 + (packet[0] << 8 | packet[1])
        size, shift = 0, 0
        while True:  # the property length, a variable byte integer
            byte = packet[pos]
            pos += 1
            size |= (byte & 127) << shift
            shift += 7
            if byte < 128:
                break
        payload = packet[pos + size :]
        self.messages += 1
        self.payload_bytes += len(payload)
        self.hop_bytes += _hop_bytes(len(packet))
        ranges = orjson.loads(payload)["ranges"]
        self.ranges += len(ranges)
        self.seqs += sum(b - a + 1 for a, b in ranges)
        return mqtt.MQTT_ERR_SUCCESS


def _traffic_payloads(shape: Shape) -> list[tuple[str, bytes, Any, int]]:
    """(topic, payload, properties, per-hop bytes) in publishing order: the devices round robin, each
    with its own epoch and seq, the edge agent's single-event shape."""
    from edge_agent.clock import Clock
    from edge_agent.sources.simulated import SimulatedSource
    from edgebridge.envelope import CONTENT_TYPE
    from edgebridge.mqtt.properties import PackedProperties
    from edgebridge.topics import events_topic

    per_device = max(1, round(shape.rate * shape.seconds))
    ids = [f"dev-{i:06d}" for i in range(shape.devices)]
    events = {
        d: SimulatedSource(d, Clock("never"), ["temperature", "humidity", "pressure"], 0, i).poll(per_device)
        for i, d in enumerate(ids)
    }
    epochs = {d: secrets.token_hex(8) for d in ids}
    out = []
    for seq in range(1, per_device + 1):
        for d in ids:
            event = events[d][seq - 1]._replace(seq=seq, epoch=epochs[d])
            topic = events_topic(d, TRAFFIC_PREFIX)
            payload = encode(event)
            props = PackedProperties(CONTENT_TYPE, None, [("eventid", event.id), ("seq", str(seq))])
            remaining_qos0 = 2 + len(topic.encode()) + len(props.pack()) + len(payload)
            out.append((topic, payload, props, _hop_bytes(remaining_qos0)))
    return out


def _traffic_child(port: int, shape: Shape, conn: Connection) -> None:
    """The load generator and the receipt counter, in a process of their own (not the bridge's GIL):
    builds the payloads, says ``ready``, publishes paced on ``go``, reports, counts until ``stop``."""
    payloads = _traffic_payloads(shape)
    counter = _ReceiptCounter(mqtt.CallbackAPIVersion.VERSION2, client_id=f"count-{uuid.uuid4().hex[:6]}",
                              protocol=mqtt.MQTTv5)
    subscribed = threading.Event()
    counter.on_subscribe = lambda *_a: subscribed.set()
    counter.connect("127.0.0.1", port)
    counter.subscribe(f"{TRAFFIC_PREFIX}/+/receipts", 0)
    counter.loop_start()
    assert subscribed.wait(10)
    pub = _client(f"load-{uuid.uuid4().hex[:6]}")
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    conn.send("ready")
    assert conn.recv() == "go"
    rate = shape.devices * shape.rate
    began = time.perf_counter()
    infos: collections.deque[mqtt.MQTTMessageInfo] = collections.deque()
    for i, (topic, payload, props, _) in enumerate(payloads):
        ahead = began + i / rate - time.perf_counter()
        if ahead > 0.001:
            time.sleep(ahead)  # pacing the load generator, not synchronisation
        # paho refuses a message whose packet id (16 bits) is still queued: a generator more than 65,535
        # messages behind the broker's PUBACKs must wait for the oldest, not die (ERR_QUEUE_SIZE)
        if len(infos) >= PUBLISH_BACKLOG:
            infos.popleft().wait_for_publish(120)
        infos.append(pub.publish(topic, payload, qos=1, properties=props))
    for info in infos:
        info.wait_for_publish(120)
    conn.send({"published": len(payloads), "late": time.perf_counter() - began - len(payloads) / rate,
               "event_payload": sum(len(p) for _, p, _, _ in payloads) / len(payloads),
               "event_hop": sum(h for _, _, _, h in payloads) / len(payloads)})
    assert conn.recv() == "stop"
    conn.send({"receipts": counter.messages, "receipt_payload": counter.payload_bytes,
               "receipt_hop": counter.hop_bytes, "ranges": counter.ranges, "seqs": counter.seqs})
    pub.disconnect()
    pub.loop_stop()
    counter.disconnect()
    counter.loop_stop()


def _start_bridge(config: Any) -> tuple[Any, threading.Event, threading.Thread]:
    """A bridge running in a thread of this process, healthy (connected to both brokers)."""
    from bridge.service import Bridge

    bridge = Bridge(config)
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,))
    thread.start()
    while not bridge.health()[0]:
        time.sleep(0.01)
    return bridge, stop, thread


class TrafficRun(NamedTuple):
    rate: float  # events/s, first publish to the bridge's last PUBACK
    cpu: dict[str, float]  # bridge CPU seconds by thread over the run (last receipts included)
    load: dict[str, float]  # what the load generator published and the counter saw
    receipt_tail: float  # seconds from the last PUBACK to the last receipt sent (0 with receipts off)
    elapsed: float  # seconds over which ``cpu`` was taken


def run_traffic(brokers: LocalBrokers, shape: Shape, receipts: bool) -> TrafficRun:
    from bridge.config import BridgeConfig

    config = load_config(BridgeConfig, None, env={}, overrides={
        "mqtt.url": brokers.mosquitto.url, "mqtt.topic_prefix": TRAFFIC_PREFIX,
        "kafka.bootstrap": brokers.kafka.bootstrap, "uplink.client_id": f"traffic-{uuid.uuid4().hex[:6]}",
        "uplink.session_expiry": 0,  # nothing queued for a finished run's session
        "topics.raw": new_topic(brokers.kafka.bootstrap), "uplink.receipts": receipts,
        "downlink.enabled": False, "metrics.enabled": False})
    bridge, stop, thread = _start_bridge(config)
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    child = multiprocessing.get_context("spawn").Process(target=_traffic_child,
                                                         args=(brokers.mosquitto.port, shape, theirs))
    child.start()
    assert ours.poll(300) and ours.recv() == "ready"
    paho = bridge.uplink.source._client._thread
    names = {thread.native_id or 0: "service", getattr(paho, "native_id", 0) or 0: "paho"}
    get = bridge.metrics.registry.get_sample_value
    cpu_before = thread_cpu(names)
    began = time.perf_counter()
    ours.send("go")
    total = shape.devices * max(1, round(shape.rate * shape.seconds))
    while (get("edgebridge_bridge_acked_messages_total") or 0) < total:
        if not child.is_alive():  # a generator that cannot keep its pace dies in wait_for_publish
            raise RuntimeError(f"the load generator exited (code {child.exitcode}) after "
                               f"{get('edgebridge_bridge_acked_messages_total') or 0:.0f} of {total} "
                               "messages: its stderr above says why")
        time.sleep(0.01)
    acked = time.perf_counter()
    # the bridge's own counter only as the point to stop the clock; the figures are the counter's
    while receipts and (get("edgebridge_bridge_receipted_events_total") or 0) < total:
        time.sleep(0.01)
    done = time.perf_counter()
    cpu_after = thread_cpu(names)
    load = ours.recv()
    time.sleep(0.5)  # the last receipts on their way to the counter
    ours.send("stop")
    load.update(ours.recv())
    child.join(30)
    stop.set()
    thread.join()
    cpu = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_after.items()
           if k in ("service", "paho") or k.startswith("rdk:")}
    return TrafficRun(total / (acked - began), cpu, load, done - acked, done - began)


def traffic_section(brokers: LocalBrokers, shape: Shape, repeats: int) -> None:
    """Receipts on vs off under one traffic shape, in pairs whose order alternates."""
    n = shape.devices * max(1, round(shape.rate * shape.seconds))
    runs: dict[bool, list[TrafficRun]] = {True: [], False: []}
    for i in range(repeats):
        order = (False, True) if i % 2 == 0 else (True, False)
        for receipts in order:
            runs[receipts].append(run_traffic(brokers, shape, receipts))
        on, off = runs[True][-1], runs[False][-1]
        print(f"  traffic {shape} pair {i + 1} ({'on' if order[0] else 'off'} first): on {on.rate:,.0f} "
              f"ev/s, off {off.rate:,.0f} ev/s (offered {shape.devices * shape.rate:,.0f}), ratio "
              f"{on.rate / off.rate:.2f}; CPU us/msg on {sum(on.cpu.values()) * 1e6 / n:.1f} "
              f"({per(on.cpu, n)}), off {sum(off.cpu.values()) * 1e6 / n:.1f} ({per(off.cpu, n)}); "
              f"receipts seen {on.load['receipts']:,} covering {on.load['seqs']:,} of {n:,} events, "
              f"with receipts off {off.load['receipts']}; last receipt {on.receipt_tail * 1e3:.0f} ms "
              f"after the last PUBACK", flush=True)
    on_runs, off_runs = runs[True], runs[False]
    ratios = [a.rate / b.rate for a, b in zip(on_runs, off_runs, strict=True)]
    cpu_on = statistics.median(sum(r.cpu.values()) for r in on_runs) * 1e6 / n
    cpu_off = statistics.median(sum(r.cpu.values()) for r in off_runs) * 1e6 / n
    load = on_runs[0].load
    k = 1000 / n  # per 1,000 events
    receipts = statistics.median(r.load["receipts"] for r in on_runs)
    payload = statistics.median(r.load["receipt_payload"] for r in on_runs)
    hop = statistics.median(r.load["receipt_hop"] for r in on_runs)
    ranges = statistics.median(r.load["ranges"] for r in on_runs)
    rate_on, rate_off = (statistics.median(r.rate for r in rs) for rs in (on_runs, off_runs))
    print(f"traffic {shape} ({n:,} events, {len(on_runs)} pairs): on {rate_on:,.0f} ev/s, off "
          f"{rate_off:,.0f} ev/s, median of per-pair ratios "
          f"{statistics.median(ratios):.2f} ({[round(r, 2) for r in ratios]}); bridge CPU us/msg on "
          f"{cpu_on:.1f} ({median_cpu([r.cpu for r in on_runs], n)}), off {cpu_off:.1f} "
          f"({median_cpu([r.cpu for r in off_runs], n)}), on/off {cpu_on / cpu_off:.2f}", flush=True)
    # Paced traffic: much of the CPU is per second, not per message (the service loop's 5 ms idle
    # wait, librdkafka's timers), so also the share of a core, and what a receipt adds to the bridge.
    core_on, core_off = (statistics.median(sum(r.cpu.values()) / r.elapsed for r in rs) * 100
                         for rs in (on_runs, off_runs))
    if not receipts:
        print("  no receipts seen", flush=True)
        return
    per_event = receipts / n
    # librdkafka's broker thread swings by tens of us per message from run to run whatever the mode
    # (linger and wake-ups), so a receipt's cost is taken from the Python threads, which do its work
    py_on, py_off = (statistics.median(sum(v for k, v in r.cpu.items() if k in ("paho", "service"))
                                       for r in rs) * 1e6 / n for rs in (on_runs, off_runs))
    print(f"  bridge CPU: {core_on:.1f} % of a core with receipts, {core_off:.1f} % without; Python threads "
          f"(paho + service) {py_on:.1f} vs {py_off:.1f} us/msg"
          + (f": {(py_on - py_off) * n / receipts:.1f} us per receipt" if per_event >= 0.1 else
             " (too few receipts to price one: the difference is noise)"), flush=True)
    ev_hop, rc_hop = load["event_hop"], hop / receipts
    print(f"  receipt traffic (independent subscriber, medians): {receipts * k:,.1f} receipts per 1,000 "
          f"events, {payload * k:,.0f} B payload, {hop * k:,.0f} B per hop per 1,000 events; a receipt "
          f"{payload / receipts:.0f} B payload / {rc_hop:.0f} B per hop, {ranges / receipts:.2f} ranges; "
          f"an event {load['event_payload']:.0f} B payload / {ev_hop:.0f} B per hop", flush=True)
    fleet = 100_000  # events/s of this shape
    print(f"  at {fleet:,} events/s of this shape: {fleet * per_event:,.0f} receipts/s; broker PUBLISH/s "
          f"{2 * fleet:,.0f} without receipts (in + out per event), {2 * fleet * (1 + per_event):,.0f} "
          f"with; over two hops {2 * fleet * rc_hop * per_event / 1e6:.1f} MB/s of receipts vs "
          f"{2 * fleet * ev_hop / 1e6:.1f} MB/s of events (+{100 * rc_hop * per_event / ev_hop:.0f} %)",
          flush=True)


if __name__ == "__main__":
    main()
