"""`edgebridge demo`: the main job of the README's `make demo`: a simulated fleet end to end.

1. Local brokers up (real Mosquitto, real Kafka in KRaft mode: one node, or ``--kafka-nodes`` with the
   topics replicated as `brokers up --kafka-nodes` does) and the contract's topics.
2. ``--bridges`` bridges (several share the device topics through one MQTT 5 shared subscription) and
   one enricher as child processes, exactly as an operator runs them.
3. ``--devices`` edge agents, each a child process with its own SQLite outbox and a simulated sensor
   that produces ``--events`` readings at ``--rate`` per second.
4. A live view, once a second: committed at the edge, acknowledged by the bridge, in
   ``iot.events.raw``, enriched into ``iot.events.processed``.
5. An audit per device and epoch once the fleet is done: every seq 1..N present in the raw topic (duplicates
   allowed) and exactly once in the processed topic (read_committed); and the aggregator's windows in
   ``iot.aggregates`` equal to a recomputation from the processed topic (``edgebridge aggregator check``,
   :mod:`enricher.aggregates.check`, once the aggregator has caught up). Exit 0 only if all three hold.

With ``--chaos`` (``--seed``, ``--rounds``) faults are injected at seeded random moments
(:mod:`simulators.chaos`): kill -9 of the bridge, the enricher, the aggregator or an agent, kill -9 of
Mosquitto, Kafka frozen or killed; components that exit are restarted as a supervisor would. The audit
must come out the same (guarantees 1 and 2 under crashes, and the aggregates exactly once), and any
announced gap fails the run (the demo's outboxes are far from their bound, so nothing may be evicted).

Device ids carry a run id, so a broker state reused across runs never mixes runs in the audit.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from edgebridge.arguments import positive_float, positive_int
from edgebridge.devbrokers import LocalBrokers, default_state_dir
from edgebridge.devbrokers._process import free_port
from edgebridge.devbrokers.cli import kafka_nodes_argument
from edgebridge.errors import EdgeBridgeError
from edgebridge.kafka_admin import ensure_topics
from edgebridge.ops.audit import format_table, passed, summary
from edgebridge.ops.reading import Position, read
from edgebridge.ops.tally import Tally
from edgebridge.topics import KafkaTopics
from enricher.aggregates.config import AggregateSettings
from simulators.chaos import FAULTS, Chaos
from simulators.processes import ComponentProcess

if TYPE_CHECKING:
    from enricher.aggregates.check import CheckResult

__all__ = ["main"]

PROCESSED_METRIC = 'edgebridge_enricher_produced_total{output="processed"}'
CATCH_UP_S = 60.0  # how long the aggregator may take to apply what the enricher committed, at the end


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the whole pipeline locally: brokers, bridge, enricher and a simulated fleet of "
        "edge agents, with a live view and a per-device audit at the end.",
    )
    # checked here, before any broker starts: a zero rate or device count used to divide by zero later
    parser.add_argument("--devices", type=positive_int, default=5, help="simulated edge agents (default 5)")
    parser.add_argument("--events", type=positive_int, default=2000,
                        help="readings per device (default 2000)")
    parser.add_argument("--rate", type=positive_float, default=200.0, help="readings per second per device")
    parser.add_argument("--timeout", type=positive_float, default=300.0,
                        help="give up after this many seconds")
    parser.add_argument("--state-dir", default=None, help=f"brokers' state (default {default_state_dir()})")
    parser.add_argument("--keep", action="store_true", help="leave the brokers running afterwards")
    parser.add_argument("--kafka-nodes", type=kafka_nodes_argument, default=None, metavar="N",
                        help="Kafka nodes, as `edgebridge brokers up --kafka-nodes` (default: as the last "
                        "`up` of the state folder, else 1)")
    parser.add_argument("--bridges", type=positive_int, default=1,
                        help="bridge replicas sharing the device topics (MQTT 5 shared subscription)")
    parser.add_argument("--chaos", action="store_true",
                        help="inject faults mid-run: kill -9 of bridge, enricher, aggregator, agents and "
                        "Mosquitto, Kafka frozen and killed (see --rounds, --seed)")
    parser.add_argument("--rounds", type=int, default=len(FAULTS),
                        help=f"with --chaos: faults injected (default {len(FAULTS)}: each kind once)")
    parser.add_argument("--seed", type=int, default=None, help="with --chaos: the seed (default random)")
    parser.add_argument("--dashboard", action="store_true",
                        help="also run the SQLite sink and `edgebridge dashboard` (127.0.0.1, no login), "
                        "print its URL, and keep it serving after the audit until Ctrl-C")
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    # the chaos rounds signal the one Kafka node and the one bridge; on a cluster or with replicas they
    # would pick one of several, which is what tests/e2e/test_scaleout.py does with proofs of its own
    if args.chaos and ((args.kafka_nodes or 1) > 1 or args.bridges > 1):
        parser.error("--chaos runs with one Kafka node and one bridge")


def _high_watermarks(consumer: object, topic: str) -> int | None:
    """The sum of the topic's high watermarks; ``None`` while Kafka does not answer (chaos)."""
    from confluent_kafka import KafkaException, TopicPartition

    try:
        meta = consumer.list_topics(topic, timeout=2)  # type: ignore[attr-defined]
        total = 0
        for p in meta.topics[topic].partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=2)  # type: ignore[attr-defined]
            total += high
    except KafkaException:
        return None
    return total


def _sample(metrics: dict[str, float], name: str) -> int | None:
    """One sample of a scraped /metrics, None when the scrape found nothing (the process is down)."""
    return int(metrics.get(name, 0)) if metrics else None


class RunningTotal:
    """A counter summed over the lives of a process: a restarted process counts from zero again, so a
    value lower than the last one starts a new life (as Prometheus' rate() reads counter resets)."""

    def __init__(self) -> None:
        self.earlier = 0
        self.last = 0

    def update(self, value: int | None) -> int:
        """``value``: the process' counter now, None when its /metrics did not answer (keep the last)."""
        if value is None:
            return self.earlier + self.last
        if value < self.last:
            self.earlier += self.last
        self.last = value
        return self.earlier + value


class Demo:
    def __init__(self, args: argparse.Namespace, brokers: LocalBrokers, workdir: Path) -> None:
        self.args = args
        self.brokers = brokers
        self.workdir = workdir
        self.run_id = uuid.uuid4().hex[:6]
        self.topics = KafkaTopics()
        self.devices = [f"demo-{self.run_id}-{i:02d}" for i in range(1, args.devices + 1)]
        # The last seq each device will have committed; a restarted agent's source starts counting anew.
        self.expected = dict.fromkeys(self.devices, args.events)
        self.chaos: Chaos | None = None
        self.seed = args.seed if args.seed is not None else random.randrange(2**31)
        mqtt = {"url": brokers.mosquitto.url}
        kafka = {"bootstrap": brokers.kafka_bootstrap}
        log = {"level": "WARNING"}
        # replicas: each its own client id, one share group; one bridge subscribes plainly, as before
        share = {"share_group": "demo-bridges"} if args.bridges > 1 else {}
        self.bridges = [ComponentProcess("bridge", f"bridge-{i}", {
            "mqtt": mqtt, "kafka": kafka, "log": log,
            "uplink": {"client_id": f"demo-bridge-{i}", **share},
            "downlink": {"enabled": i == 1},  # commands go down through one bridge's consumer group
        }, workdir) for i in range(1, args.bridges + 1)]
        self.bridge = self.bridges[0]
        self.enricher = ComponentProcess("enricher", "enricher", {
            "instance_id": "demo-enricher-1", "kafka": kafka, "log": log,
        }, workdir)
        # its /metrics and /healthz are on [aggregates] metrics_port (it shares the enricher's file layout);
        # the rest of [aggregates] is the defaults, which the final check recomputes with
        port = free_port()
        self.aggregates = AggregateSettings(instance_id="demo-aggregator-1", metrics_port=port)
        self.aggregator = ComponentProcess("aggregator", "aggregator", {
            "kafka": kafka, "log": log,
            "aggregates": {"instance_id": self.aggregates.instance_id, "metrics_port": port},
        }, workdir)
        self.aggregator.metrics_port = port
        self.processed_total = 0  # the enricher's processed records of this run, from the live view
        self.checked: CheckResult | None = None  # the aggregates check, taken when the aggregator caught up
        self.check_error: str | None = None
        self.agents = [
            ComponentProcess("agent", device, {
                "device_id": device, "state_dir": str(workdir / device), "mqtt": mqtt, "log": log,
                "simulated": {"enabled": True, "interval": 1.0 / args.rate, "limit": args.events},
                "systemd": {"notify": False},
            }, workdir, metrics=False)
            for device in self.devices
        ]

    def start(self) -> None:
        for proc in (*self.bridges, self.enricher, self.aggregator):
            proc.start()
            if not proc.wait_healthy(60):
                raise RuntimeError(f"{proc.name} did not become healthy; see {proc.log_path}")
        for agent in self.agents:
            agent.start()
        print(f"2. {len(self.bridges)} bridge(s), the enricher and the aggregator up; "
              f"{len(self.agents)} agents started "
              f"({self.args.events} readings each at {self.args.rate:g}/s); logs in {self.workdir}")
        if self.args.chaos:
            span = 0.85 * self.args.events / self.args.rate
            self.chaos = Chaos(self.brokers, self.bridge, self.enricher, self.aggregator, self.agents,
                               self.args.rounds, span, self.seed, on_agent_killed=self._agent_killed)
            print(f"   chaos: {self.args.rounds} faults over {span:.0f} s, seed {self.seed} "
                  f"(repeat with --chaos --seed {self.seed} --rounds {self.args.rounds})")

    def _edge(self) -> tuple[dict[str, int], int]:
        """Per device the last committed seq, and the backlog of all outboxes (read-only): what is
        committed and not in the backlog has been receipted (Kafka holds it)."""
        from edge_agent.outbox import read_status

        committed: dict[str, int] = {}
        backlog = 0
        for device in self.devices:
            db = self.workdir / device / "outbox.db"
            try:
                status = read_status(db)
            except Exception:  # the agent may still be creating its outbox
                continue
            last_seq: dict[str, int] = status["last_seq"]  # type: ignore[assignment]
            committed[device] = last_seq.get(device, 0)
            backlog += int(status["backlog_rows"])  # type: ignore[call-overload]
        return committed, backlog

    def _agent_killed(self, agent: ComponentProcess) -> None:
        """A restarted agent's source counts its readings anew: it will commit ``events`` more."""
        committed, _ = self._edge()
        self.expected[agent.name] = committed.get(agent.name, 0) + self.args.events

    def _processed_complete(self) -> bool:
        return all(a.complete for a in self._tally(self.topics.processed).report(self.expected).values())

    def _tally(self, topic: str) -> Tally:
        """``edgebridge audit``'s reading and counting of ``topic``, this run's devices only (the
        brokers' state may hold earlier runs)."""
        ours = f'"deviceid":"demo-{self.run_id}-'.encode()
        tally = Tally()
        client = {"bootstrap.servers": self.brokers.kafka_bootstrap}
        for record in read(client, topic, Position("beginning"), idle=5.0):
            if record.value is not None and ours in record.value:
                tally.add_value(record.value)
        return tally

    def watch(self) -> bool:
        from confluent_kafka import Consumer

        probe = Consumer({"bootstrap.servers": self.brokers.kafka_bootstrap, "group.id": "demo-watch"})
        began = time.monotonic()
        checked = 0.0
        totals = [RunningTotal() for _ in range(2 + len(self.bridges))]
        try:
            while time.monotonic() - began < self.args.timeout:
                if self.chaos is not None:
                    for fault in self.chaos.tick():
                        print(f"  chaos t={fault.at:5.1f}s: {fault.kind} {fault.detail}".rstrip(), flush=True)
                target = sum(self.expected.values())
                per_device, backlog = self._edge()
                committed = sum(per_device.values())
                raw = _high_watermarks(probe, self.topics.raw)
                # summed over restarts: a killed bridge or enricher would otherwise show only its last life
                enricher = self.enricher.metrics()
                events = sum(total.update(_sample(b.metrics(), "edgebridge_bridge_events_total"))
                             for b, total in zip(self.bridges, totals[2:], strict=True))
                processed = self.processed_total = totals[0].update(_sample(enricher, PROCESSED_METRIC))
                dups = totals[1].update(_sample(enricher, "edgebridge_enricher_duplicates_dropped_total"))
                print(f"  t={time.monotonic() - began:5.1f}s  edge committed {committed:>7}/{target} "
                      f"receipted {committed - backlog:>7} | bridge events {events:>7} | raw offsets "
                      f"{raw if raw is not None else '?':>7} | processed {processed:>7} "
                      f"(duplicates dropped {dups})", flush=True)
                edge_done = backlog == 0 and all(
                    per_device.get(d, 0) >= n for d, n in self.expected.items())
                if edge_done and (self.chaos is None or self.chaos.done):
                    # Counters of restarted processes start at zero: then ask the topic itself.
                    if self.chaos is None and self.enricher.starts == 1:
                        if processed >= target:
                            return True
                    elif time.monotonic() - checked > 10 and self._processed_complete():
                        return True
                    else:
                        checked = time.monotonic()
                time.sleep(1.0)
            return False
        finally:
            if self.chaos is not None:
                self.chaos.finish()
            probe.close()

    def stop(self) -> None:
        codes = {a.name: a.terminate() for a in self.agents}
        codes.update({b.name: b.terminate() for b in self.bridges})
        codes["enricher"] = self.enricher.terminate()
        # the aggregator reads what the enricher committed: check it once it has caught up, then stop it
        self.checked = self._check_aggregates()
        codes["aggregator"] = self.aggregator.terminate()
        bad = {k: v for k, v in codes.items() if v != 0}
        print(f"4. stopped with SIGTERM: {len(codes) - len(bad)} of {len(codes)} processes exited 0"
              + (f"; not 0: {bad}" if bad else ""))

    def _check_aggregates(self) -> CheckResult | None:
        """``edgebridge aggregator check`` of this run's devices, repeated until the aggregator's group
        has committed every processed record read (it commits its offsets with its window records, so
        the windows read after are then complete) or :data:`CATCH_UP_S` passed: the last result."""
        from enricher.aggregates.check import check

        ours = f"demo-{self.run_id}-"
        client = {"bootstrap.servers": self.brokers.kafka_bootstrap}
        deadline = time.monotonic() + CATCH_UP_S
        while True:
            try:
                result = check(client, self.topics.processed, self.topics.aggregates, self.aggregates,
                               device=lambda d: d.startswith(ours), group=self.aggregates.group_id)
            except Exception as exc:  # Kafka failed: the run cannot be judged, it fails
                self.check_error = f"{type(exc).__name__}: {exc}"
                return None
            if result.behind == 0 or result.behind is None or time.monotonic() > deadline:
                return result
            proc = self.aggregator.proc
            if proc is not None and not self.aggregator.running and proc.returncode != 0:
                print(f"   aggregator exited {proc.returncode}; restarted", flush=True)  # as a supervisor
                self.aggregator.start()
            time.sleep(1.0)

    def audit(self) -> bool:
        ok = True
        for name, topic, exactly_once in (("raw", self.topics.raw, False),
                                          ("processed", self.topics.processed, True)):
            tally = self._tally(topic)
            audits = tally.report(self.expected)
            total = summary(tally, audits)
            print(f"5. audit of {topic} ({tally.records} records of this run; `edgebridge audit --topic "
                  f"{name}` audits every device):")
            print("   " + format_table(audits).replace("\n", "\n   "))
            complete = total["missing"] == 0
            dup_free = passed(0, total["duplicates"], duplicates_allowed=not exactly_once)
            # the demo's outboxes never reach their bound: an announced gap is an event given up
            gaps = total["announced"]
            verdict = "complete" if complete else "MISSING EVENTS"
            if exactly_once:
                verdict += ", exactly once" if dup_free else ", DUPLICATES"
            verdict += f", {gaps} seqs announced as gaps" if gaps else ", no gap announced"
            print(f"   {name}: {verdict}")
            ok = ok and complete and dup_free and not gaps
        self.sample_windows()
        if self.checked is None:
            print(f"   aggregates: not checked ({self.check_error})")
            ok = False
        else:
            from enricher.aggregates.check_cli import format_result

            print("   " + format_result(self.checked, self.topics.processed, self.topics.aggregates,
                                        most=20).replace("\n", "\n   "))
            ok = ok and self.checked.ok
        if self.chaos is not None:
            faults = ", ".join(f"{f.at:.0f}s {f.kind} {f.detail}".rstrip() for f in self.chaos.log)
            restarts = ", ".join(f"{f.at:.0f}s {f.kind} ({f.detail})" for f in self.chaos.restarts)
            print(f"6. chaos, seed {self.seed}: {len(self.chaos.log)} events: {faults}")
            print(f"   restarted after exiting: {restarts or 'none'}")
        return ok

    def sample_windows(self) -> None:
        """A few of this run's windows from iot.aggregates (informative: the check's verdict follows)."""
        ours = f"demo-{self.run_id}-".encode()
        latest: dict[bytes, dict[str, object]] = {}
        client = {"bootstrap.servers": self.brokers.kafka_bootstrap}
        for record in read(client, self.topics.aggregates, Position("beginning"), idle=5.0):
            if record.key is not None and record.key.startswith(ours) and record.value:
                latest[record.key] = orjson.loads(record.value)
        windows = [w for w in latest.values() if w.get("kind") == "window"]
        late = sum(int(str(w.get("count", 0))) for w in latest.values() if w.get("kind") == "too_late")
        print(f"   aggregates ({self.topics.aggregates}, `edgebridge tail aggregates --device D`): "
              f"{len(windows)} windows, {sum(bool(w.get('final')) for w in windows)} final, "
              f"{late} readings too late")
        for w in sorted(windows, key=lambda w: (str(w["deviceid"]), str(w["measurement"])))[:4]:
            print(f"   window {w['deviceid']} {w['measurement']} {w['start']}: count {w['count']} "
                  f"min {w['min']} max {w['max']} mean {float(str(w['mean'])):.3f} last {w['last']} "
                  f"{w.get('unit') or ''}")


def _serve_until_stopped(url: str) -> None:
    """After the audit, the dashboard goes on showing the run until Ctrl-C or SIGTERM."""
    import threading

    from edgebridge.lifecycle import install_stop_handlers

    stop = threading.Event()
    restore = install_stop_handlers(stop)
    try:
        print(f"dashboard still serving at {url}; Ctrl-C to stop", flush=True)
        stop.wait()
    finally:
        restore()


def main(argv: Sequence[str], prog: str = "edgebridge demo") -> int:
    parser = _parser(prog)
    args = parser.parse_args(list(argv))
    _check(parser, args)
    brokers = LocalBrokers(args.state_dir, kafka_nodes=args.kafka_nodes)
    began = time.monotonic()
    try:
        status = brokers.up()
        created = ensure_topics(brokers.kafka_bootstrap)
    except EdgeBridgeError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    m, k = status["mosquitto"], status["kafka"]
    kafka = (f"kafka {k['bootstrap']} {k['version']} KRaft (rss {k['rss_mb']} MB)" if "nodes" not in k else
             f"kafka {len(k['nodes'])} KRaft nodes {k['bootstrap']}, topics replication factor "
             f"{k['replication_factor']}")
    print(f"1. brokers up in {time.monotonic() - began:.1f}s: mosquitto {m['url']} "
          f"(max_inflight_messages={m['max_inflight_messages']}, "
          f"max_queued_messages={m['max_queued_messages']}), {kafka}; "
          f"topics created: {', '.join(created) or 'none (already there)'}")
    workdir = Path(tempfile.mkdtemp(prefix="edgebridge-demo-"))
    demo = Demo(args, brokers, workdir)
    dashboard = None
    ok = False
    try:
        demo.start()
        if args.dashboard:
            from simulators.demo_dashboard import DemoDashboard

            dashboard = DemoDashboard(brokers, workdir, {"bridge": demo.bridge.metrics_port,
                                                         "enricher": demo.enricher.metrics_port})
            print(f"   dashboard: {dashboard.start()}  (sink into {dashboard.db})", flush=True)
        print("3. live view (edge -> bridge -> Kafka -> enricher):")
        finished = demo.watch()
        if not finished:
            print(f"   not complete after {args.timeout:.0f}s")
        demo.stop()
        ok = demo.audit() and finished
        if dashboard is not None:
            _serve_until_stopped(dashboard.url or "")
    except (RuntimeError, EdgeBridgeError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
    finally:
        if dashboard is not None:
            dashboard.stop()
        for proc in (*demo.agents, *demo.bridges, demo.enricher, demo.aggregator):
            proc.kill()
        if args.keep:
            print("brokers left running: `edgebridge brokers env` / `edgebridge brokers down`")
        else:
            brokers.down()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
    print("RESULT: every event of every device arrived; processed exactly once; aggregates equal to a "
          "recomputation" if ok
          else f"RESULT: FAILED (logs kept in {workdir})")
    return 0 if ok else 1
