"""Agent benchmarks, each against its baseline in the same run on the same Mosquitto.

    .venv/bin/python -m bench.agent_forwarding [--events 20000] [--batch-events 200000]
                                               [--backlog 1000000] [--repeats 3]
                                               [--only {single,batch,rss}]...

1. per-message forwarding, FULL outbox (source -> commit -> publish -> PUBACK -> delete) vs a bare
   paho QoS 1 publish loop with the same window and payload size (one encoded simulated event), run
   interleaved in pairs; medians, the median of per-pair ratios, and the work per message that does
   not depend on the machine's momentary load: CPU time and voluntary context switches;
2. batch mode events/s from source to PUBACK;
3. agent RSS while a backlog builds with the broker unreachable (subprocess, sampled), and the RSS of
   a fresh interpreter after the agent's imports (the floor);
4. bytes written to disk per event (``/proc/<pid>/io`` write_bytes).
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
from typing import Any

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


def agent_run(url: str, state: Path, n: int, batch: bool) -> tuple[float, float]:
    """Events/s from source to PUBACK for ``n`` simulated events, and disk bytes written per event."""
    config = load_config(
        AgentConfig,
        overrides={
            "device_id": "bench-1",
            "state_dir": str(state),
            "mqtt.url": url,
            "mqtt.topic_prefix": "bench",
            "simulated.enabled": True,
            "simulated.interval": 0.0,
            "simulated.limit": n,
            "forwarder.window": WINDOW,
            "forwarder.batch": batch,
            "forwarder.batch_max_events": 500,
            "metrics.enabled": False,
            "systemd.notify": False,
            "log.level": "WARNING",
        },
        env={},
    )
    agent = Agent(config)
    thread = threading.Thread(target=agent.run)
    written = _write_bytes()
    began = time.perf_counter()
    thread.start()
    while agent.outbox.stats.last_ack_seq < n or agent.outbox.stats.rows:
        time.sleep(0.005)
    elapsed = time.perf_counter() - began
    written = _write_bytes() - written
    agent.stop()
    thread.join(60)
    return n / elapsed, written / n


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
    parser.add_argument(
        "--only",
        action="append",
        choices=("single", "batch", "rss"),
        help="run only this scenario (repeatable): single = per-message pairs with disk bytes, "
        "batch = batch mode, rss = import floor and the backlog RSS with its disk bytes",
    )
    args = parser.parse_args()
    only = set(args.only or ("single", "batch", "rss"))
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        brokers = LocalBrokers(Path(tmp) / "brokers", only=("mosquitto",))
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
        rate, per_event = agent_run(m.url, tmp / f"single-{i}", events, batch=False)
        after = _usage()
        ours.append(rate)
        disk.append(per_event)
        ratios.append(rate / bare[-1])
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
    batch, batch_cpu = [], []
    for i in range(repeats):
        before = _usage()
        batch.append(agent_run(url, tmp / f"batch-{i}", events, batch=True))
        batch_cpu.append((_usage()[0] - before[0]) * 1e6 / events)
    print(
        f"batch mode: {statistics.median(r for r, _ in batch):,.0f} ev/s source->PUBACK "
        f"(runs {[round(r) for r, _ in batch]}), "
        f"CPU per event {statistics.median(batch_cpu):.1f} us "
        f"(runs {[round(c, 1) for c in batch_cpu]}), "
        f"disk bytes/event {statistics.median(d for _, d in batch):,.0f}"
    )


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
