"""Enricher throughput at exactly-once: ours against the same enrichment with Quix Streams, and a sweep
of the commit interval.

One raw topic is filled once with ``--events`` readings (1,000 registered devices, 5 % duplicates, three
measurements each: degF temperature, humidity, hPa pressure, so that every step has work). Each run is a
fresh consumer group and fresh output topics reading it from the beginning, as its own process:
``edgebridge enricher run`` (ours) or ``bench/enricher_quix_app.py`` in ``bench/.venv-quix`` (baseline).
A run is timed from the first committed offset to the moment the group's committed offsets reach the
end of the raw topic (polled every 20 ms from outside, read_uncommitted so an open transaction is not
waited for); the start-up (imports, group join, registry and state) is reported apart. The process's
own CPU seconds (``wait4`` rusage, its threads included, the brokers excluded) give events per CPU
second, the figure least disturbed by other load on a shared machine. Ours and the baseline alternate
run by run (ABAB...), ``--repeats`` times each; medians and the ratio of medians.

    .venv/bin/python -m bench.enricher_throughput [--events 200000] [--repeats 3] [--partitions 2]
        [--interval-ms 100] [--sweep 50,100,250,500,1000,2000] [--no-quix] [--against TREE] [--scale N]

``--scale N`` adds N of our processes in one consumer group (the designed way up: one process per raw
partition or more), timed the same way, their CPU summed.

Set up the baseline once:
``python3 -m venv bench/.venv-quix && bench/.venv-quix/bin/pip install quixstreams``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import confluent_kafka
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from edgebridge.config import dump_config, load_config
from edgebridge.devbrokers import LocalBrokers
from enricher.config import EnricherConfig

ROOT = Path(__file__).resolve().parents[1]
QUIX_PYTHON = ROOT / "bench" / ".venv-quix" / "bin" / "python"
DEVICES = 1000


@dataclass
class Run:
    name: str
    events: int
    startup: float  # process start -> first committed offset
    seconds: float  # first committed offset -> all committed
    first_committed: int
    cpu: float  # the process's user + system CPU seconds

    @property
    def rate(self) -> float:
        return (self.events - self.first_committed) / self.seconds

    @property
    def per_cpu(self) -> float:
        return self.events / self.cpu


def registry() -> dict[str, dict[str, Any]]:
    return {f"dev-{d}": {"name": f"Sensor {d}", "site": f"site-{d % 7}", "location": f"hall {d % 3}",
                         "model": "TH-100",
                         "calibration": {"temperature": {"offset": -0.4, "scale": 1.01}},
                         "thresholds": {"temperature": {"min": -40, "max": 85},
                                        "humidity": {"min": 0, "max": 100}},
                         "units": {"temperature": "Cel", "humidity": "%RH", "pressure": "Pa"}}
            for d in range(DEVICES)}


def raw_events(n: int) -> list[tuple[bytes, bytes]]:
    """``n`` records: readings in seq order per device, plus 5 % re-sends of the event just before."""
    out: list[tuple[bytes, bytes]] = []
    uid = uuid.uuid4().hex[:20]
    i = 0
    while len(out) < n:
        d, seq = i % DEVICES, i // DEVICES + 1
        dev = f"dev-{d}"
        value = orjson.dumps({
            "specversion": "1.0", "id": f"{uid}-{i:012d}", "source": f"/devices/{dev}",
            "type": "edgebridge.reading.v1", "time": "2026-11-26T12:00:00.000Z", "deviceid": dev, "seq": seq,
            "data": {"temperature": {"v": 60 + (i % 300) / 10, "u": "degF"},
                     "humidity": {"v": 30 + (seq + d) % 40, "u": "%RH"},
                     "pressure": {"v": 1000 + (seq * 7 + d) % 30, "u": "hPa"}}})
        out.append((dev.encode(), value))
        if i % 20 == 19 and len(out) < n:
            out.append(out[-1])  # a re-send: the enricher must drop it
        i += 1
    return out[:n]


def create(admin: AdminClient, topics: list[tuple[str, int, dict[str, str]]]) -> None:
    futures = admin.create_topics([NewTopic(t, num_partitions=p, replication_factor=1, config=c)
                                   for t, p, c in topics])
    for f in futures.values():
        f.result(30)


def fill(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                         "compression.type": "lz4", "enable.idempotence": True})
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0


@contextlib.contextmanager
def kafka_with_raw(workdir: Path, events: int, partitions: int, prefix: str) -> Iterator[tuple[str, str]]:
    """A Kafka of the run's own, with a raw topic of ``partitions`` filled with ``events`` records of
    :func:`raw_events`: yields (bootstrap, raw topic); the broker is stopped afterwards."""
    brokers = LocalBrokers(workdir / "brokers", only=("kafka",))
    brokers.up()
    try:
        bs = brokers.kafka.bootstrap
        raw = f"{prefix}-raw-{uuid.uuid4().hex[:6]}"
        create(AdminClient({"bootstrap.servers": bs}), [(raw, partitions, {})])
        began = time.monotonic()
        fill(bs, raw, raw_events(events))
        print(f"filled {raw} in {time.monotonic() - began:.1f} s", flush=True)
        yield bs, raw
    finally:
        brokers.down()


def ends(bootstrap: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-ends"})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    finally:
        c.close()


def timed(name: str, cmds: list[list[str]], env: dict[str, str], bootstrap: str, group: str, topic: str,
          target: list[int], log: Path, cwd: Path = ROOT) -> Run:
    """Run ``cmds`` (one process each, one consumer group) until the group's committed offsets reach
    ``target``; the CPU is the sum over the processes."""
    watcher = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                        "isolation.level": "read_uncommitted"})
    parts = [TopicPartition(topic, p) for p in range(len(target))]
    total = sum(target)
    procs: list[subprocess.Popen[bytes]] = []
    cpu = 0.0
    with open(log, "wb") as out:
        began = time.monotonic()
        procs = [subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
                 for cmd in cmds]
    try:
        first_at, first = 0.0, 0
        deadline = began + 600
        while True:
            done = sum(max(0, tp.offset) for tp in watcher.committed(parts, timeout=30))
            now = time.monotonic()
            if done and not first_at:
                first_at, first = now, done
            if done >= total:
                break
            if any(proc.poll() is not None for proc in procs) or now > deadline:
                raise RuntimeError(f"{name}: exited or timed out at {done}/{total}, see {log}")
            time.sleep(0.02)  # polling interval of the measurement, not a synchronisation
        finished = time.monotonic()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu += usage.ru_utime + usage.ru_stime
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        watcher.close()
    return Run(name, total, first_at - began, max(finished - first_at, 1e-3), first, cpu)


class Bench:
    def __init__(self, bootstrap: str, raw: str, partitions: int, workdir: Path) -> None:
        self.bootstrap, self.raw, self.partitions, self.workdir = bootstrap, raw, partitions, workdir
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.target = ends(bootstrap, raw, partitions)
        self.devices_topic = f"bench-devices-{uuid.uuid4().hex[:6]}"
        create(self.admin, [(self.devices_topic, 1, {"cleanup.policy": "compact"})])
        p = Producer({"bootstrap.servers": bootstrap})
        for dev, info in registry().items():
            p.produce(self.devices_topic, orjson.dumps(info), dev.encode())
        assert p.flush(30) == 0
        (workdir / "registry.json").write_text(json.dumps(registry()))
        self.n = 0

    def ours(self, interval_ms: int, tree: Path = ROOT, label: str = "ours", instances: int = 1) -> Run:
        """Our enricher as a process (``instances`` processes in one group: the scale-out run);
        ``tree``: another source tree of it (``--against``)."""
        self.n += 1
        tag = f"{label}{self.n}"
        names = {k: f"bench-{k}-{tag}-{uuid.uuid4().hex[:6]}" for k in
                 ("processed", "deadletter", "alerts", "state")}
        create(self.admin, [(names["processed"], self.partitions, {}), (names["deadletter"], 1, {}),
                            (names["alerts"], 1, {}),
                            (names["state"], self.partitions, {"cleanup.policy": "compact"})])
        group = f"bench-group-{tag}-{uuid.uuid4().hex[:6]}"
        cmds = []
        for i in range(instances):
            config = load_config(EnricherConfig, None, env={}, overrides={
                "instance_id": f"{tag}-{i}", "group_id": group, "transactional_id_prefix": group,
                "kafka.bootstrap": self.bootstrap, "metrics.enabled": False, "log.level": "WARNING",
                "commit.interval_ms": interval_ms,
                "topics.raw": self.raw, "topics.devices": self.devices_topic,
                "topics.processed": names["processed"], "topics.deadletter": names["deadletter"],
                "topics.alerts": names["alerts"], "topics.enricher_state": names["state"]})
            path = self.workdir / f"{tag}-{i}.toml"
            path.write_text(dump_config(config))
            cmds.append([sys.executable, "-m", "edgebridge", "enricher", "run", "--config", str(path)])
        env = {**os.environ, "PYTHONPATH": str(tree)}
        return timed(tag, cmds, env, self.bootstrap, group, self.raw, self.target,
                     self.workdir / f"{tag}.log", cwd=tree)

    def quix(self, interval_ms: int) -> Run:
        self.n += 1
        tag = f"quix{self.n}"
        out = f"bench-processed-{tag}-{uuid.uuid4().hex[:6]}"
        create(self.admin, [(out, self.partitions, {})])
        group = f"bench-group-{tag}-{uuid.uuid4().hex[:6]}"
        cmd = [str(QUIX_PYTHON), str(ROOT / "bench" / "enricher_quix_app.py"), "--bootstrap", self.bootstrap,
               "--raw", self.raw, "--out", out, "--group", group, "--registry",
               str(self.workdir / "registry.json"), "--state-dir", str(self.workdir / f"{tag}-state"),
               "--commit-interval", str(interval_ms / 1000)]
        return timed(tag, [cmd], dict(os.environ), self.bootstrap, group, self.raw, self.target,
                     self.workdir / f"{tag}.log")


def show(run: Run) -> None:
    print(f"  {run.name:8} {run.rate:>9,.0f} ev/s  {run.per_cpu:>9,.0f} ev/CPU-s  "
          f"startup {run.startup:5.2f} s  processing {run.seconds:6.2f} s  cpu {run.cpu:6.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument("--sweep", default="50,100,250,500,1000,2000")
    parser.add_argument("--no-quix", action="store_true")
    parser.add_argument("--scale", type=int, default=0,
                        help="also run this many of our processes in one group (needs as many partitions)")
    parser.add_argument("--against", type=Path,
                        help="another source tree of the enricher (the last commit's: `git archive HEAD "
                        "enricher`, edgebridge linked in) to run alternately with ours")
    args = parser.parse_args()
    quix = not args.no_quix
    if quix and not QUIX_PYTHON.exists():
        sys.exit(f"{QUIX_PYTHON} missing: python3 -m venv bench/.venv-quix && "
                 "bench/.venv-quix/bin/pip install quixstreams (or --no-quix)")
    print(f"machine: {os.cpu_count()} cores, {_ram_gb():.0f} GB RAM, "
          f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
          f"confluent-kafka {confluent_kafka.__version__}, "
          f"librdkafka {confluent_kafka.libversion()[0]}")
    print(f"events {args.events:,} ({DEVICES} devices, 5 % duplicates), raw partitions {args.partitions}, "
          f"ours: linger.ms=50, consume batch 500, commit.max_messages=5000; quix: its defaults", flush=True)
    with tempfile.TemporaryDirectory(prefix="edgebridge-bench-") as tmp:
        work = Path(tmp)
        with kafka_with_raw(work, args.events, args.partitions, "bench") as (bs, raw):
            bench = Bench(bs, raw, args.partitions, work)
            print(f"\nexactly-once throughput, commit interval {args.interval_ms} ms (alternating runs):")
            ours_runs, quix_runs, base_runs = [], [], []
            for _ in range(args.repeats):
                ours_runs.append(bench.ours(args.interval_ms))
                show(ours_runs[-1])
                if args.against:
                    base_runs.append(bench.ours(args.interval_ms, args.against.resolve(), "base"))
                    show(base_runs[-1])
                if quix:
                    quix_runs.append(bench.quix(args.interval_ms))
                    show(quix_runs[-1])
            o_rate = statistics.median(r.rate for r in ours_runs)
            o_cpu = statistics.median(r.per_cpu for r in ours_runs)
            print(f"  median ours: {o_rate:,.0f} ev/s, {o_cpu:,.0f} ev/CPU-s "
                  f"({1e6 / o_cpu:.1f} us of CPU per event)")
            if base_runs:
                b_rate = statistics.median(r.rate for r in base_runs)
                b_cpu = statistics.median(r.per_cpu for r in base_runs)
                print(f"  median base ({args.against}): {b_rate:,.0f} ev/s, {b_cpu:,.0f} ev/CPU-s "
                      f"({1e6 / b_cpu:.1f} us of CPU per event)")
                print(f"  ratio ours/base: {o_rate / b_rate:.2f} (ev/s), {o_cpu / b_cpu:.2f} (ev/CPU-s)")
            if quix:
                q_rate = statistics.median(r.rate for r in quix_runs)
                q_cpu = statistics.median(r.per_cpu for r in quix_runs)
                print(f"  median quix: {q_rate:,.0f} ev/s, {q_cpu:,.0f} ev/CPU-s")
                print(f"  ratio ours/quix: {o_rate / q_rate:.2f} (ev/s), {o_cpu / q_cpu:.2f} (ev/CPU-s)")
            if args.scale > 1:
                print(f"\nscale-out: {args.scale} processes in one group on {args.partitions} partitions "
                      f"({args.repeats} runs; CPU summed over the processes):")
                scaled = []
                for _ in range(args.repeats):
                    scaled.append(bench.ours(args.interval_ms, label=f"x{args.scale}-", instances=args.scale))
                    show(scaled[-1])
                s_rate = statistics.median(r.rate for r in scaled)
                print(f"  median x{args.scale}: {s_rate:,.0f} ev/s, "
                      f"{statistics.median(r.per_cpu for r in scaled):,.0f} ev/CPU-s; "
                      f"vs one process: {s_rate / o_rate:.2f}")
            if args.sweep:
                print("\ncommit interval sweep (ours, one run each):")
                for ms in (int(x) for x in args.sweep.split(",")):
                    run = bench.ours(ms)
                    run.name = f"{ms} ms"
                    show(run)


def _ram_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return 0.0


if __name__ == "__main__":
    main()
