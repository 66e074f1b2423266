"""Agent benchmarks, each against its baseline in the same run on the same Mosquitto.

    .venv/bin/python -m bench.agent_forwarding [--events 20000] [--batch-events 200000]
                                               [--backlog 1000000] [--repeats 3]
                                               [--receipt-events 100000]
                                               [--receipt-batch-events 500000]
                                               [--only {single,batch,rss,receipts}]...

1. per-message forwarding, FULL outbox (source -> commit -> publish -> PUBACK -> delete) vs a bare
   paho QoS 1 publish loop with the same window and payload size (one encoded simulated event), run
   interleaved in pairs; medians, the median of per-pair ratios, and the work per message that does
   not depend on the machine's momentary load: CPU time and voluntary context switches;
2. batch mode events/s from source to PUBACK;
3. agent RSS while a backlog builds with the broker unreachable (subprocess, sampled), and the RSS of
   a fresh interpreter after the agent's imports (the floor);
4. bytes written to disk per event (``/proc/<pid>/io`` write_bytes);
5. ``receipts``: the agent end to end through Mosquitto, a real bridge (a subprocess) and Kafka, with
   receipts on (a row is deleted when the bridge's receipt covers it) and off (deleted on its PUBACK),
   alternated in pairs, per-message and batch mode: events/s from source to "deleted from the outbox",
   the agent process's CPU per event, disk bytes per event, the peak of events waiting for a receipt,
   and the on/off ratio per pair with its median; and events/s from source until Kafka holds them all
   (the bridge acknowledged every message), the same end point in both modes: with receipts off the
   agent is done at the broker's PUBACK while the bridge is still draining into Kafka.

Scenarios 1-4 have no bridge, so they run with ``receipts = "off"`` (nothing would ever receipt them).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig
from edgebridge.config import load_config
from edgebridge.devbrokers import LocalBrokers

WINDOW = 100


def _write_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


def _usage() -> tuple[float, int]:
    """CPU seconds (user + system) and voluntary context switches of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_nvcsw


def _event_size() -> int:
    """The encoded size of one simulated event with the default sensors: the baseline's payload."""
    from edge_agent.clock import Clock
    from edge_agent.sources.simulated import SimulatedSource
    from edgebridge.envelope import encode

    event = SimulatedSource("bench-1", Clock("never"), ["temperature", "humidity", "pressure"], 0, 1).poll(1)[
        0
    ]
    return len(encode(event._replace(seq=12345)))


def import_rss_kb() -> int:
    """RSS of a fresh interpreter that imported what ``edgebridge agent run`` imports, before any work."""
    code = (
        "import edge_agent.agent, edge_agent.cli, edgebridge.logs, edgebridge.lifecycle, re; "
        "print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    )
    return int(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )


def bare_paho(host: str, port: int, n: int, payload: bytes) -> float:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bare-{os.getpid()}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(WINDOW)
    client.max_queued_messages_set(0)
    done = threading.Event()
    acked = [0]

    def on_publish(*_a: object) -> None:
        acked[0] += 1
        if acked[0] == n:
            done.set()

    client.on_publish = on_publish
    client.connect(host, port)
    client.loop_start()
    began = time.perf_counter()
    for _ in range(n):
        client.publish("bench/bare/events", payload, qos=1)
    done.wait(300)
    elapsed = time.perf_counter() - began
    client.disconnect()
    client.loop_stop()
    return n / elapsed


class AgentRun(NamedTuple):
    rate: float  # events/s from source to the last deletion from the outbox
    disk: float  # bytes written to disk per event (the whole bench process: the agent's SQLite)
    cpu: float  # CPU us per event of the bench process (the agent's threads; the bridge runs apart)
    peak_unreceipted: int  # most events published and not yet receipted at once (sampled every 5 ms)
    messages: int  # MQTT messages the agent published, resends included
    tail: float  # seconds from the last PUBACK to the last deletion: the receipt's latency, not work


def agent_run(
    url: str,
    state: Path,
    n: int,
    batch: bool,
    *,
    receipts: str = "off",
    prefix: str = "bench",
    device: str = "bench-1",
    overrides: dict[str, object] | None = None,
) -> AgentRun:
    """``n`` simulated events from source until the outbox is empty: with ``receipts = "off"`` a row is
    deleted on its PUBACK, with ``"on"`` when a receipt covers it (a bridge on ``prefix`` must run)."""
    config = load_config(
        AgentConfig,
        overrides={
            "device_id": device,
            "state_dir": str(state),
            "mqtt.url": url,
            "mqtt.topic_prefix": prefix,
            "simulated.enabled": True,
            "simulated.interval": 0.0,
            "simulated.limit": n,
            "forwarder.window": WINDOW,
            "forwarder.batch": batch,
            "forwarder.batch_max_events": 500,
            "forwarder.receipts": receipts,
            "metrics.enabled": False,
            "systemd.notify": False,
            "log.level": "WARNING",
            **(overrides or {}),
        },
        env={},
    )
    agent = Agent(config)
    thread = threading.Thread(target=agent.run)
    written = _write_bytes()
    cpu = _usage()[0]
    peak = 0
    acked_at = None
    began = time.perf_counter()
    thread.start()
    while agent.outbox.stats.last_ack_seq < n or agent.outbox.stats.rows:
        time.sleep(0.005)
        peak = max(peak, agent.forwarder.unreceipted)
        if acked_at is None and agent.forwarder.stats.acked_events >= n:
            acked_at = time.perf_counter()
    end = time.perf_counter()
    elapsed = end - began
    cpu = _usage()[0] - cpu
    written = _write_bytes() - written
    messages = agent.forwarder.stats.published_messages
    agent.stop()
    thread.join(60)
    return AgentRun(n / elapsed, written / n, cpu * 1e6 / n, peak, messages, end - (acked_at or end))


class BridgeProcess:
    """A real bridge (``edgebridge bridge run``) as a subprocess on its own topic prefix, so that its CPU
    is not the agent's; its ``/metrics`` tell when it has acknowledged everything the agent sent."""

    def __init__(self, brokers: LocalBrokers, tmp: Path, prefix: str, receipts: bool,
                 receipt_interval: float = 0.5) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        raw = f"{prefix}-raw"
        admin = AdminClient({"bootstrap.servers": brokers.kafka.bootstrap})
        admin.create_topics([NewTopic(raw, num_partitions=3, replication_factor=1)])[raw].result(30)
        config = tmp / f"bridge-{prefix}.toml"
        config.write_text(f"""
[mqtt]
url = "{brokers.mosquitto.url}"
topic_prefix = "{prefix}"
[kafka]
bootstrap = "{brokers.kafka.bootstrap}"
[uplink]
client_id = "bench-bridge-{prefix}"
receipts = {str(receipts).lower()}
receipt_interval = {receipt_interval}
[downlink]
enabled = false
[topics]
raw = "{raw}"
[metrics]
port = {self.port}
[log]
level = "WARNING"
""")
        self.log = tmp / f"bridge-{prefix}.log"  # librdkafka's and the bridge's stderr, kept off the output
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edgebridge", "bridge", "run", "--config", str(config)],
                stdout=log, stderr=log,
            )
        self.sent = 0  # MQTT messages the agents published on this prefix

    def _get(self, path: str) -> tuple[int, str]:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""
        except OSError:
            return 0, ""

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self._get("/healthz")[0] != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bridge not healthy, see {self.log}")
            time.sleep(0.2)

    def metric(self, name: str) -> float:
        for line in self._get("/metrics")[1].splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def wait_caught_up(self, timeout: float = 300) -> None:
        """Until the bridge acknowledged every message sent to it, so that a run's leftover work (with
        receipts off the agent is done at the broker's PUBACK) does not spill into the next run."""
        deadline = time.monotonic() + timeout
        while self.metric("edgebridge_bridge_acked_messages_total") < self.sent:
            if time.monotonic() > deadline:
                raise RuntimeError(f"bridge did not catch up, see {self.log}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def backlog_rss(state: Path, target: int) -> list[tuple[int, int]]:
    """(backlog rows, RSS kB) samples of an agent subprocess whose broker is unreachable."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # nothing listens there once closed
    config = state / "agent.toml"
    state.mkdir(parents=True, exist_ok=True)
    config.write_text(f"""
device_id = "bench-rss"
state_dir = "{state}"
[mqtt]
url = "mqtt://127.0.0.1:{dead_port}"
[simulated]
enabled = true
interval = 0.0
[outbox]
max_rows = {target * 2}
max_bytes = {target * 2000}
min_free_bytes = 0
[metrics]
enabled = false
[log]
level = "ERROR"
""")
    proc = subprocess.Popen([sys.executable, "-m", "edgebridge", "agent", "run", "--config", str(config)])
    samples: list[tuple[int, int]] = []
    try:
        from edge_agent.outbox import read_status

        db = state / "outbox.db"
        next_sample = 0
        while True:
            time.sleep(0.5)
            try:
                rows = int(read_status(db)["backlog_rows"])  # type: ignore[call-overload]
            except Exception:
                continue
            if rows >= next_sample:
                with open(f"/proc/{proc.pid}/status") as f:
                    rss = int(next(x for x in f if x.startswith("VmRSS")).split()[1])
                samples.append((rows, rss))
                next_sample = rows + target // 10
            if rows >= target:
                written = _write_bytes(proc.pid)
                samples.append((-1, written // rows))
                break
    finally:
        proc.terminate()
        proc.wait(60)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_forwarding")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch-events", type=int, default=200_000)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--receipt-events", type=int, default=100_000,
                        help="per-message events per run of the receipts pairs (0: skip)")
    parser.add_argument("--receipt-batch-events", type=int, default=500_000,
                        help="batch-mode events per run of the receipts pairs (0: skip)")
    parser.add_argument(
        "--only",
        action="append",
        choices=("single", "batch", "rss", "receipts"),
        help="run only this scenario (repeatable): single = per-message pairs with disk bytes, "
        "batch = batch mode, rss = import floor and the backlog RSS with its disk bytes, "
        "receipts = on/off pairs end to end through a bridge and Kafka",
    )
    args = parser.parse_args()
    only = set(args.only or ("single", "batch", "rss", "receipts"))
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        brokers = LocalBrokers(Path(tmp) / "brokers",
                               only=("mosquitto", "kafka") if "receipts" in only else ("mosquitto",))
        brokers.up()
        try:
            m = brokers.mosquitto
            print(
                f"mosquitto max_inflight_messages={m.options.max_inflight_messages} "
                f"max_queued_messages={m.options.max_queued_messages}; window={WINDOW}"
            )
            if "single" in only:
                single(m, Path(tmp), args.events, args.repeats)
            if "batch" in only:
                batch_mode(m.url, Path(tmp), args.batch_events, args.repeats)
            if "rss" in only:
                rss(Path(tmp), args.backlog)
            if "receipts" in only:
                receipts_pairs(brokers, Path(tmp), args.receipt_events, args.receipt_batch_events,
                               args.repeats)
            print(
                f"machine: {os.cpu_count()} cores, "
                f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 20} MB RAM, "
                f"{platform.platform()}, python {platform.python_version()}"
            )
        finally:
            brokers.down()
    return 0


def single(m: Any, tmp: Path, events: int, repeats: int) -> None:
    """Per-message pairs (bare paho, then the agent), interleaved: each pair shares the momentary load."""
    payload = b"x" * _event_size()  # the size of one encoded simulated event, 3 sensors
    bare, ours, disk, ratios = [], [], [], []
    work: dict[str, list[tuple[float, float]]] = {"bare": [], "ours": []}
    for i in range(repeats):
        before = _usage()
        bare.append(bare_paho("127.0.0.1", m.port, events, payload))
        mid = _usage()
        run = agent_run(m.url, tmp / f"single-{i}", events, batch=False)
        after = _usage()
        ours.append(run.rate)
        disk.append(run.disk)
        ratios.append(run.rate / bare[-1])
        for name, (u0, u1) in (("bare", (before, mid)), ("ours", (mid, after))):
            work[name].append(((u1[0] - u0[0]) * 1e6 / events, (u1[1] - u0[1]) / events))
    b, o = statistics.median(bare), statistics.median(ours)
    print(
        f"per-message: ours {o:,.0f} ev/s, bare paho {b:,.0f} msg/s ({len(payload)} B), "
        f"median of per-pair ratios {statistics.median(ratios):.2f}, ratio of medians {o / b:.2f} "
        f"(runs ours={[round(x) for x in ours]}, bare={[round(x) for x in bare]}, "
        f"ratios={[round(x, 2) for x in ratios]})"
    )
    for name, runs in work.items():
        print(
            f"  {name}: CPU per message {statistics.median(c for c, _ in runs):.0f} us "
            f"(runs {[round(c) for c, _ in runs]}), voluntary context switches per message "
            f"{statistics.median(v for _, v in runs):.2f}"
        )
    print(f"disk bytes written per event (per-message run): {statistics.median(disk):,.0f}")


def batch_mode(url: str, tmp: Path, events: int, repeats: int) -> None:
    batch = [agent_run(url, tmp / f"batch-{i}", events, batch=True) for i in range(repeats)]
    print(
        f"batch mode: {statistics.median(r.rate for r in batch):,.0f} ev/s source->PUBACK "
        f"(runs {[round(r.rate) for r in batch]}), "
        f"CPU per event {statistics.median(r.cpu for r in batch):.1f} us "
        f"(runs {[round(r.cpu, 1) for r in batch]}), "
        f"disk bytes/event {statistics.median(r.disk for r in batch):,.0f}"
    )


def receipts_pairs(brokers: LocalBrokers, tmp: Path, events: int, batch_events: int, repeats: int) -> None:
    """Receipts on vs off, end to end, in pairs whose order alternates (off-on, on-off, ...) so that
    the machine's drift and any order effect hit both; per-message mode, then batch mode."""
    bridges = {
        "on": BridgeProcess(brokers, tmp, "rcpton", receipts=True),
        "off": BridgeProcess(brokers, tmp, "rcptoff", receipts=False),
    }
    try:
        for b in bridges.values():
            b.wait_healthy()
        print("bridges: receipt_interval 0.5 s (default), receive_maximum 1000; agent window "
              f"{WINDOW}, batch_max_events 500, max_unreceipted 50,000 (defaults)", flush=True)
        for batch, n in ((False, events), (True, batch_events)):
            if n <= 0:
                continue
            mode = "batch" if batch else "per-message"
            runs: dict[str, list[AgentRun]] = {"on": [], "off": []}
            # events/s from source until Kafka holds them all (the bridge acknowledged every message,
            # polled every 0.1 s): the same end point for both modes, unlike AgentRun.rate
            to_kafka: dict[str, list[float]] = {"on": [], "off": []}
            for i in range(repeats):
                order = ("off", "on") if i % 2 == 0 else ("on", "off")
                for receipts in order:
                    bridge = bridges[receipts]
                    device = f"rcpt-{mode[:5]}-{receipts}-{i}"
                    began = time.perf_counter()
                    run = agent_run(brokers.mosquitto.url, tmp / device, n, batch, receipts=receipts,
                                    prefix=f"rcpt{receipts}", device=device)
                    bridge.sent += run.messages
                    bridge.wait_caught_up()
                    to_kafka[receipts].append(n / (time.perf_counter() - began))
                    runs[receipts].append(run)
                on, off = runs["on"][-1], runs["off"][-1]
                k_on, k_off = to_kafka["on"][-1], to_kafka["off"][-1]
                print(f"  {mode} pair {i + 1} ({order[0]} first): source->Kafka on {k_on:,.0f} ev/s, off "
                      f"{k_off:,.0f} ev/s, ratio {k_on / k_off:.2f}; agent alone on {on.rate:,.0f} ev/s, "
                      f"off {off.rate:,.0f} ev/s, ratio {on.rate / off.rate:.2f}; CPU us/event on "
                      f"{on.cpu:.1f}, off {off.cpu:.1f}; peak unreceipted {on.peak_unreceipted:,}; "
                      f"last PUBACK to last deletion on {on.tail * 1e3:.0f} ms, off {off.tail * 1e3:.0f} ms",
                      flush=True)
            ratios = [a.rate / b.rate for a, b in zip(runs["on"], runs["off"], strict=True)]
            k_ratios = [a / b for a, b in zip(to_kafka["on"], to_kafka["off"], strict=True)]
            k_med = {k: statistics.median(v) for k, v in to_kafka.items()}
            print(f"receipts, {mode}, {n:,} events, source->Kafka: on {k_med['on']:,.0f} ev/s, off "
                  f"{k_med['off']:,.0f} ev/s (medians); median of per-pair "
                  f"ratios {statistics.median(k_ratios):.2f} (pairs {[round(r, 2) for r in k_ratios]})",
                  flush=True)
            med = {k: (statistics.median(r.rate for r in v), statistics.median(r.cpu for r in v),
                       statistics.median(r.disk for r in v), max(r.peak_unreceipted for r in v))
                   for k, v in runs.items()}
            print(f"receipts, {mode}, {n:,} events: on {med['on'][0]:,.0f} ev/s source->receipt->deleted, "
                  f"off {med['off'][0]:,.0f} ev/s source->PUBACK->deleted (medians); median of per-pair "
                  f"ratios {statistics.median(ratios):.2f} (pairs {[round(r, 2) for r in ratios]}); "
                  f"CPU us/event on {med['on'][1]:.1f}, off {med['off'][1]:.1f}; disk bytes/event on "
                  f"{med['on'][2]:,.0f}, off {med['off'][2]:,.0f}; peak events waiting for a receipt "
                  f"{med['on'][3]:,}", flush=True)
    finally:
        for b in bridges.values():
            b.stop()


def rss(tmp: Path, backlog: int) -> None:
    print(f"RSS of the interpreter after the agent's imports: {import_rss_kb():,} kB")
    samples = backlog_rss(tmp / "rss", backlog)
    kb = [s for s in samples if s[0] >= 0]
    print("backlog rows -> RSS kB:", kb)
    steady = [k for rows, k in kb if rows >= backlog // 10]
    if steady:
        print(f"RSS from {backlog // 10:,} rows on: min {min(steady):,} kB, max {max(steady):,} kB")
    print("disk bytes written per event while the backlog built:", samples[-1][1])


if __name__ == "__main__":
    sys.exit(main())
