"""How many virtual devices one simulator process sustains at 1 reading/s each: a thread per device
(the baseline, ``--loops 0``) against shared loops (``--loops K``), in the same run, on the same brokers.

Each run is `edgebridge simulate fleet --procs 1` as a child process, every device a real agent (outbox
with FULL sync, receipts on), through a real bridge into Kafka so that receipts empty the outboxes as in
the field. Measured on the child: CPU (from /proc, over the steady part: after the ramp-up, before the
drain), peak RSS, threads, open descriptors, MQTT connections (the live line), and whether it kept up:
readings committed at the asked rate (>= 95 %), a backlog (readings not yet receipted) that does not
grow over the steady part by more than a second's readings, and 0 left after the drain. No assertion
on speed: this prints figures.

    .venv/bin/python -m bench.simulator_scale --devices 1000 --duration 120 --modes 0,8,8:NORMAL
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from edgebridge.devbrokers import LocalBrokers
from edgebridge.kafka_admin import ensure_topics
from edgebridge.topics import KafkaTopics
from simulators.processes import ComponentProcess

LIVE = re.compile(r"\[\s*([\d.]+) s\] devices (\d+)/(\d+) connected (\d+) committed (\d+) receipted (\d+) "
                  r"backlog (\d+)")
SUMMARY = re.compile(r"fleet summary: .*\((\d+) started, (\d+) failed\), (\d+) readings committed, (\d+) "
                     r"receipted, (\d+) left.*cpu (\d+) % of a core, peak rss (\d+) MiB")


@dataclass
class Run:
    mode: int  # 0: a thread per device; K: K shared loops
    devices: int
    sync: str  # the outboxes' SQLite synchronous setting
    cpu: float = 0.0  # % of one core over the steady part
    rss: float = 0.0  # peak MiB
    threads: int = 0  # peak
    fds: int = 0  # peak
    connected: int = 0  # peak
    rate: float = 0.0  # readings/s committed over the steady part
    backlog_start: int = -1  # at the start of the steady part
    backlog: int = 0  # at the end of the steady part
    left: int = -1  # after the drain
    failed: int = -1
    lines: list[str] = field(default_factory=list)

    @property
    def kept_up(self) -> bool:
        # the backlog (readings not yet receipted) may be as long as the receipts' latency, but not grow
        grew = self.backlog - max(self.backlog_start, 0)
        return (self.rate >= 0.95 * self.devices and grew <= self.devices and self.left == 0
                and self.failed == 0 and self.connected == self.devices)

    def row(self) -> str:
        name = ("thread per device" if self.mode == 0 else f"{self.mode} shared loops") + f", {self.sync}"
        return (f"| {name} | {self.devices} | {self.rate:,.0f} | {self.cpu:.0f} % | {self.rss:.0f} MiB | "
                f"{self.threads} | {self.fds} | {self.connected} | {self.backlog_start} -> {self.backlog} | "
                f"{self.left} | "
                f"{'yes' if self.kept_up else 'no'} |")


def _proc_sample(pid: int) -> tuple[float, int, int]:
    """CPU seconds, threads, open descriptors of ``pid``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    threads = int(fields[17])
    return cpu, threads, len(os.listdir(f"/proc/{pid}/fd"))


def run_fleet(mqtt_url: str, prefix: str, devices: int, mode: int, sync: str, duration: float,
              ramp_up: float, workdir: Path) -> Run:
    cmd = [sys.executable, "-m", "edgebridge", "simulate", "fleet", "--url", mqtt_url, "--topic-prefix",
           prefix, "--devices", str(devices), "--rate", "1", "--duration", str(duration), "--ramp-up",
           str(ramp_up), "--procs", "1", "--loops", str(mode), "--outbox-sync", sync, "--drain", "60",
           "--id-prefix", f"scale{mode}-", "--state-dir", str(workdir / f"state-{uuid.uuid4().hex[:6]}")]
    run = Run(mode, devices, sync)
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    began = time.monotonic()
    steady_from, steady_to = ramp_up + 10.0, duration  # seconds since the start, the child's clock
    marks: dict[str, tuple[float, float, int]] = {}  # "from"/"to" -> (wall, cpu, committed)
    latest = {"committed": 0}

    def sample() -> None:
        while proc.poll() is None:
            try:
                cpu, threads, fds = _proc_sample(proc.pid)
            except OSError:
                return
            run.threads, run.fds = max(run.threads, threads), max(run.fds, fds)
            elapsed = time.monotonic() - began
            for name, at in (("from", steady_from), ("to", steady_to)):
                if name not in marks and elapsed >= at:
                    marks[name] = (elapsed, cpu, latest["committed"])
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for line in proc.stderr:
        if line.startswith("%"):
            continue
        run.lines.append(line.rstrip())
        live = LIVE.search(line)
        if live:
            at = float(live[1])
            run.connected = max(run.connected, int(live[4]))
            latest["committed"] = int(live[5])
            if steady_from <= at and run.backlog_start < 0:
                run.backlog_start = int(live[7])
            if at <= steady_to:
                run.backlog = int(live[7])
        summary = SUMMARY.search(line)
        if summary:
            run.failed, run.left, run.rss = int(summary[2]), int(summary[5]), float(summary[7])
    proc.wait()
    sampler.join()
    if "from" in marks and "to" in marks:
        (w0, c0, n0), (w1, c1, n1) = marks["from"], marks["to"]
        run.cpu = 100 * (c1 - c0) / (w1 - w0)
        run.rate = (n1 - n0) / (w1 - w0)
    return run


def _median_connected(runs: list[Run], mode: int) -> float:
    """The devices a mode really ran (a thread per device may not even start them all)."""
    return max(1.0, statistics.median(r.connected for r in runs if r.mode == mode))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulator_scale")
    parser.add_argument("--devices", default="1000", help="device counts, comma separated (default 1000)")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds per run (default 120)")
    parser.add_argument("--ramp-up", type=float, default=20.0, help="seconds to start the devices")
    parser.add_argument("--modes", default="0,8",
                        help="0 = a thread per device (the baseline), K = K shared loops; :NORMAL after one "
                             "for that outbox sync instead of FULL (default 0,8)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--mqtt-url", help="use these brokers (with --bootstrap) instead of starting them")
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-simscale-") as tmp:
        workdir = Path(tmp)
        brokers = None
        if args.mqtt_url and args.bootstrap:
            mqtt_url, bootstrap = args.mqtt_url, args.bootstrap
        else:
            brokers = LocalBrokers(workdir / "brokers")
            brokers.up()
            mqtt_url, bootstrap = brokers.mosquitto.url, brokers.kafka_bootstrap
        suffix = uuid.uuid4().hex[:6]
        topics = KafkaTopics(**{f: f"{getattr(KafkaTopics(), f)}.scale-{suffix}"
                                for f in KafkaTopics.__dataclass_fields__})
        ensure_topics(bootstrap, partitions=2, topics=topics)
        prefix = f"scale-{suffix}"
        bridge = ComponentProcess("bridge", "bridge", {
            "mqtt": {"url": mqtt_url, "topic_prefix": prefix},
            "kafka": {"bootstrap": bootstrap},
            "log": {"level": "WARNING"},
            "uplink": {"client_id": f"{prefix}-bridge"},
            "topics": {"raw": topics.raw, "status": topics.status,
                       "command_responses": topics.command_responses, "deadletter": topics.deadletter},
            "downlink": {"enabled": False},
        }, workdir).start()
        try:
            assert bridge.wait_healthy(60), f"bridge not healthy: {bridge.log_path}"
            runs: list[Run] = []
            for devices in (int(n) for n in args.devices.split(",")):
                for _ in range(args.repeats):
                    for spec in args.modes.split(","):  # alternating modes
                        mode, _, sync = spec.partition(":")
                        run = run_fleet(mqtt_url, prefix, devices, int(mode), sync or "FULL", args.duration,
                                        args.ramp_up, workdir)
                        runs.append(run)
                        print(run.row(), flush=True)
                        print("\n".join(line for line in run.lines if "fleet summary" in line), flush=True)
                        if not run.kept_up:
                            print("\n".join(run.lines[-5:]), flush=True)
            print("\n| mode | devices | committed ev/s (steady) | CPU (steady, of one core) | peak RSS | "
                  "threads | fds | MQTT connections | backlog steady start -> end | left after drain | "
                  "kept up |")
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            for run in runs:
                print(run.row())
            for devices in sorted({r.devices for r in runs}):
                for sync in sorted({r.sync for r in runs}):
                    same = [r for r in runs if r.devices == devices and r.sync == sync]
                    base = [r.cpu for r in same if r.mode == 0]
                    for mode in sorted({r.mode for r in same if r.mode}):
                        ours = [r.cpu for r in same if r.mode == mode]
                        if base and ours:
                            ratio = statistics.median(ours) / max(statistics.median(base), 1e-9)
                            print(f"{devices} devices, {sync}: CPU of {mode} shared loops / thread per "
                                  f"device = {ratio:.2f}; per connected device "
                                  f"{ratio * _median_connected(same, 0) / _median_connected(same, mode):.2f}")
            print(f"bridge rss {bridge.rss_mb():.0f} MiB; machine: {os.cpu_count()} cores, "
                  f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 20} MB RAM, "
                  f"{platform.platform()}, python {platform.python_version()}; load {os.getloadavg()}")
        finally:
            bridge.terminate()
            if brokers is not None:
                brokers.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
