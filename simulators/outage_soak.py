"""Both brokers gone for a long time: memory and log volume of every component stay flat, nothing is lost.

``python -m simulators.outage_soak --minutes 30`` (the soak, outside CI; ``tests/e2e`` runs it for 3)::

1. private Mosquitto and Kafka, the contract's topics, a bridge, an enricher and an agent producing
   ``--rate`` readings per second, as child processes;
2. once processed events flow, both brokers are stopped (and proven stopped);
3. for ``--minutes`` the RSS of the three components and the size of their logs are sampled;
4. the brokers come back; every event the agent committed must be in ``iot.events.processed`` exactly
   once (read back with a separate read_committed consumer).

The report gives each component's RSS slope (MiB per minute, least squares over the samples after the
first minute of its process), its growth, its log bytes per minute during the outage, and the restarts
the harness made: an enricher caught mid-transaction by the outage exits by design (its restart fences
and aborts the transaction) and is restarted here as systemd or compose would; the new process waits
for Kafka without exiting again.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from edgebridge.devbrokers import LocalBrokers
from edgebridge.kafka_admin import ensure_topics
from simulators.audit import read_topic
from simulators.processes import ComponentProcess

__all__ = ["SoakReport", "main", "run"]


@dataclass
class SoakReport:
    minutes: float
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # name -> (s, MiB)
    slope_mib_per_min: dict[str, float] = field(default_factory=dict)
    growth_mib: dict[str, float] = field(default_factory=dict)
    log_kib_per_min: dict[str, float] = field(default_factory=dict)
    restarts: list[str] = field(default_factory=list)  # "name at N s (exit code)": a supervisor's job
    committed: int = 0
    processed: int = 0
    missing: int = 0
    duplicated: int = 0
    drain_seconds: float = 0.0
    drain_progress: list[tuple[float, int]] = field(default_factory=list)  # (s after the return, processed)
    workdir: str = ""


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB), in MiB per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(m for _, m in points) / n
    den = sum((t - mx) ** 2 for t, _ in points)
    return 60 * sum((t - mx) * (m - my) for t, m in points) / den if den else 0.0


def run(workdir: Path, minutes: float, rate: float = 50.0, every: float = 10.0) -> SoakReport:
    report = SoakReport(minutes=minutes, workdir=str(workdir))
    brokers = LocalBrokers(workdir / "brokers")
    procs: list[ComponentProcess] = []
    try:
        brokers.up()
        ensure_topics(brokers.kafka.bootstrap, partitions=2)
        mqtt, kafka = {"url": brokers.mosquitto.url}, {"bootstrap": brokers.kafka.bootstrap}
        log = {"level": "INFO"}
        bridge = ComponentProcess("bridge", "bridge", {"mqtt": mqtt, "kafka": kafka, "log": log}, workdir)
        enricher = ComponentProcess("enricher", "enricher", {
            "kafka": kafka, "log": log, "instance_id": "soak",
            "commit": {"transaction_timeout_ms": 10000}}, workdir)
        agent = ComponentProcess("agent", "soak-device", {
            "device_id": "soak-device", "state_dir": str(workdir / "agent"), "mqtt": mqtt, "log": log,
            "simulated": {"enabled": True, "interval": 1.0 / rate}, "systemd": {"notify": False},
            "forwarder": {"reconnect_max": 10.0}}, workdir)
        procs = [bridge, enricher, agent]
        for proc in procs:
            proc.start()
            if not proc.wait_healthy(60):
                raise RuntimeError(f"{proc.name} not healthy; see {proc.log_path}")
        _wait(lambda: _processed(brokers, {"soak-device"}), 60, "processed events flowing")
        brokers.mosquitto.stop()
        brokers.kafka.stop()
        if brokers.mosquitto.is_running() or brokers.kafka.is_running():
            raise RuntimeError("a broker is still running: the outage did not happen")
        began = time.monotonic()
        sizes = {p.name: p.log_path.stat().st_size for p in procs}
        samples: dict[str, list[tuple[float, float]]] = {p.name: [] for p in procs}
        started = dict.fromkeys(samples, 0.0)
        while (elapsed := time.monotonic() - began) < minutes * 60:
            for proc in procs:
                if not proc.running:
                    # by design an enricher caught mid-transaction exits (its restart fences and aborts
                    # the transaction): restart it as systemd or compose would, and measure the new one
                    assert proc.proc is not None
                    report.restarts.append(f"{proc.name} at {elapsed:.0f} s (exit {proc.proc.returncode})")
                    proc.start()
                    samples[proc.name] = []
                    started[proc.name] = elapsed
                    continue
                samples[proc.name].append((round(elapsed, 1), round(proc.rss_mb(), 2)))
            time.sleep(every)
        for proc in procs:
            settled = [s for s in samples[proc.name] if s[0] >= started[proc.name] + 60] or samples[proc.name]
            report.slope_mib_per_min[proc.name] = round(_slope(settled), 3)
            report.growth_mib[proc.name] = round(settled[-1][1] - settled[0][1], 2)
            grown = proc.log_path.stat().st_size - sizes[proc.name]
            report.log_kib_per_min[proc.name] = round(grown / 1024 / minutes, 1)
        report.samples = samples
        agent.terminate()  # the agent stops producing; its outbox keeps the backlog for the next start
        brokers.mosquitto.start()
        brokers.kafka.start()
        agent.start()
        back = time.monotonic()
        status = _agent_status(workdir / "agent" / "outbox.db")
        report.committed = status
        expected = {("soak-device", seq) for seq in range(1, status + 1)}
        got: Counter[tuple[str, int]] = Counter()

        def drained() -> bool:
            nonlocal got
            for proc in (bridge, enricher):
                if not proc.running:  # a fenced enricher exits by design; a supervisor restarts it
                    proc.start()
            got = _processed(brokers, {"soak-device"})
            report.drain_progress.append((round(time.monotonic() - back, 1), len(expected & set(got))))
            return expected <= set(got)

        try:
            _wait(drained, 600, "every committed event processed after the outage", every=2.0)
        except RuntimeError as exc:  # say where it stopped: CI shows this message, not the logs
            raise RuntimeError(f"{exc}; processed of {len(expected)}: {report.drain_progress[-3:]}; "
                               f"restarts {report.restarts}\n" + _tails(procs)) from None
        report.drain_seconds = round(time.monotonic() - back, 1)
        report.processed = sum(got[k] for k in expected)
        report.missing = len(expected - set(got))
        report.duplicated = sum(got[k] - 1 for k in expected if got[k] > 1)
        return report
    finally:
        for proc in procs:
            proc.kill()
        brokers.down()


def _tails(procs: list[ComponentProcess], lines: int = 8) -> str:
    """The last lines of each component's log, librdkafka's own left out."""
    out = []
    for proc in procs:
        text = proc.log_path.read_text(errors="replace").splitlines()
        ours = [line[:300] for line in text if "logger=librdkafka" not in line and not line.startswith("%")]
        state = "running" if proc.running else "exited"
        out.append(f"--- {proc.name} ({state})\n" + "\n".join(ours[-lines:]))
    return "\n".join(out)


def _agent_status(db: Path) -> int:
    from edge_agent.outbox import read_status

    seqs = read_status(db)["last_seq"]
    assert isinstance(seqs, dict)
    return int(seqs.get("soak-device", 0))


def _processed(brokers: LocalBrokers, devices: set[str]) -> Counter[tuple[str, int]]:
    out: Counter[tuple[str, int]] = Counter()
    for value in read_topic(brokers.kafka.bootstrap, "iot.events.processed", idle=1.0):
        event = orjson.loads(value)
        if event["deviceid"] in devices:
            out[(event["deviceid"], event["seq"])] += 1
    return out


def _wait(predicate: object, timeout: float, what: str, every: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.outage_soak",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the outage (default 30)")
    parser.add_argument("--rate", type=float, default=50.0, help="readings per second of the agent")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(list(argv))
    workdir = Path(tempfile.mkdtemp(prefix="edgebridge-soak-"))
    report = run(workdir, args.minutes, args.rate)
    if args.json:
        print(json.dumps(asdict(report)))
        return 0
    print(f"outage {report.minutes:g} min; logs in {report.workdir}")
    for name in report.slope_mib_per_min:
        first, last = report.samples[name][0][1], report.samples[name][-1][1]
        slope = report.slope_mib_per_min[name]
        print(f"  {name:<12} RSS {first:6.1f} -> {last:6.1f} MiB, slope {slope:+.3f} MiB/min after the "
              f"first minute; log {report.log_kib_per_min[name]:.1f} KiB/min")
    print(f"  restarts during the outage: {', '.join(report.restarts) or 'none'}")
    print(f"  after: {report.committed} committed, {report.missing} missing, {report.duplicated} duplicated "
          f"in processed; drained in {report.drain_seconds:.0f} s")
    return 0 if report.missing == 0 and report.duplicated == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
