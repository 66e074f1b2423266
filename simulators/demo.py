"""`edgebridge demo`: the main job of the README's `make demo`: a simulated fleet end to end.

1. Local brokers up (real Mosquitto, real single-node Kafka in KRaft mode) and the contract's topics.
2. One bridge and one enricher as child processes, exactly as an operator runs them.
3. ``--devices`` edge agents, each a child process with its own SQLite outbox and a simulated sensor
   that produces ``--events`` readings at ``--rate`` per second.
4. A live view, once a second: committed at the edge, acknowledged by the bridge, in
   ``iot.events.raw``, enriched into ``iot.events.processed``.
5. An audit per device and epoch once the fleet is done: every seq 1..N present in the raw topic (duplicates
   allowed) and exactly once in the processed topic (read_committed). Exit 0 only if both hold.

With ``--chaos`` the bridge, the enricher and one agent are each killed with SIGKILL mid-run and
restarted: the audit must come out the same (guarantees 1 and 2 under crashes).

Device ids carry a run id, so a broker state reused across runs never mixes runs in the audit.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from edgebridge.arguments import positive_float, positive_int
from edgebridge.devbrokers import LocalBrokers, default_state_dir
from edgebridge.errors import EdgeBridgeError
from edgebridge.kafka_admin import ensure_topics
from edgebridge.topics import KafkaTopics
from simulators.audit import audit_records, format_table, read_topic
from simulators.processes import ComponentProcess

__all__ = ["main"]

PROCESSED_METRIC = 'edgebridge_enricher_produced_total{output="processed"}'


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
    parser.add_argument("--chaos", action="store_true",
                        help="kill -9 the bridge, the enricher and one agent mid-run, and restart them")
    return parser


def _high_watermarks(consumer: object, topic: str) -> int:
    from confluent_kafka import TopicPartition

    meta = consumer.list_topics(topic, timeout=5)  # type: ignore[attr-defined]
    total = 0
    for p in meta.topics[topic].partitions:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)  # type: ignore[attr-defined]
        total += high
    return total


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
        self.chaos_steps = ["bridge", "enricher", "agent"] if args.chaos else []
        self.enricher_restarted = False
        mqtt = {"url": brokers.mosquitto.url}
        kafka = {"bootstrap": brokers.kafka.bootstrap}
        log = {"level": "WARNING"}
        self.bridge = ComponentProcess("bridge", "bridge", {
            "mqtt": mqtt, "kafka": kafka, "log": log,
            "uplink": {"client_id": "demo-bridge-1"},
        }, workdir)
        self.enricher = ComponentProcess("enricher", "enricher", {
            "instance_id": "demo-enricher-1", "kafka": kafka, "log": log,
        }, workdir)
        self.agents = [
            ComponentProcess("agent", device, {
                "device_id": device, "state_dir": str(workdir / device), "mqtt": mqtt, "log": log,
                "simulated": {"enabled": True, "interval": 1.0 / args.rate, "limit": args.events},
                "systemd": {"notify": False},
            }, workdir, metrics=False)
            for device in self.devices
        ]

    def start(self) -> None:
        for proc in (self.bridge, self.enricher):
            proc.start()
            if not proc.wait_healthy(60):
                raise RuntimeError(f"{proc.name} did not become healthy; see {proc.log_path}")
        for agent in self.agents:
            agent.start()
        print(f"2. bridge and enricher up; {len(self.agents)} agents started "
              f"({self.args.events} readings each at {self.args.rate:g}/s); logs in {self.workdir}")

    def _edge(self) -> tuple[dict[str, int], int]:
        """Per device the last committed seq, and the backlog of all outboxes (read-only)."""
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

    def _chaos(self, fraction: float, began: float) -> None:
        """Kill -9 one more component once the fleet is far enough along; restart it at once."""
        if not self.chaos_steps or fraction < 0.25 + 0.2 * (3 - len(self.chaos_steps)):
            return
        step = self.chaos_steps.pop(0)
        if step == "agent":
            proc = self.agents[0]
            proc.kill()
            committed, _ = self._edge()
            self.expected[proc.name] = committed.get(proc.name, 0) + self.args.events
        else:
            proc = self.bridge if step == "bridge" else self.enricher
            proc.kill()
            self.enricher_restarted |= step == "enricher"
        proc.start()
        print(f"  chaos t={time.monotonic() - began:5.1f}s: kill -9 {proc.name}, restarted", flush=True)

    def _processed_complete(self) -> bool:
        values = self._records(self.topics.processed)
        return all(a.complete for a in audit_records(values, self.expected).values())

    def _records(self, topic: str) -> list[bytes]:
        ours = f'"deviceid":"demo-{self.run_id}-'.encode()
        return [v for v in read_topic(self.brokers.kafka.bootstrap, topic, idle=1.0) if ours in v]

    def watch(self) -> bool:
        from confluent_kafka import Consumer

        probe = Consumer({"bootstrap.servers": self.brokers.kafka.bootstrap, "group.id": "demo-watch"})
        began = time.monotonic()
        try:
            while time.monotonic() - began < self.args.timeout:
                target = sum(self.expected.values())
                per_device, backlog = self._edge()
                committed = sum(per_device.values())
                self._chaos(committed / target, began)
                raw = _high_watermarks(probe, self.topics.raw)
                events = int(self.bridge.metric("edgebridge_bridge_events_total"))
                processed = int(self.enricher.metric(PROCESSED_METRIC))
                dups = int(self.enricher.metric("edgebridge_enricher_duplicates_dropped_total"))
                print(f"  t={time.monotonic() - began:5.1f}s  edge committed {committed:>7}/{target} "
                      f"backlog {backlog:>6} | bridge events {events:>7} | raw offsets {raw:>7} | "
                      f"processed {processed:>7} (duplicates dropped {dups})", flush=True)
                edge_done = backlog == 0 and all(
                    per_device.get(d, 0) >= n for d, n in self.expected.items())
                # A restarted enricher's counters start at zero: then ask the topic itself.
                if edge_done and (processed >= target if not self.enricher_restarted
                                  else self._processed_complete()):
                    return True
                time.sleep(1.0)
            return False
        finally:
            probe.close()

    def stop(self) -> None:
        codes = {a.name: a.terminate() for a in self.agents}
        codes["bridge"] = self.bridge.terminate()
        codes["enricher"] = self.enricher.terminate()
        bad = {k: v for k, v in codes.items() if v != 0}
        print(f"4. stopped with SIGTERM: {len(codes) - len(bad)} of {len(codes)} processes exited 0"
              + (f"; not 0: {bad}" if bad else ""))

    def audit(self) -> bool:
        ok = True
        for name, topic, exactly_once in (("raw", self.topics.raw, False),
                                          ("processed", self.topics.processed, True)):
            values = self._records(topic)
            audits = audit_records(values, self.expected)
            print(f"5. audit of {topic} ({len(values)} records of this run):")
            print("   " + format_table(audits).replace("\n", "\n   "))
            complete = all(a.complete for a in audits.values())
            dup_free = all(a.duplicates == 0 for a in audits.values()) if exactly_once else True
            verdict = "complete" if complete else "MISSING EVENTS"
            if exactly_once:
                verdict += ", exactly once" if dup_free else ", DUPLICATES"
            print(f"   {name}: {verdict}")
            ok = ok and complete and dup_free
        return ok


def main(argv: Sequence[str], prog: str = "edgebridge demo") -> int:
    args = _parser(prog).parse_args(list(argv))
    brokers = LocalBrokers(args.state_dir)
    began = time.monotonic()
    try:
        status = brokers.up()
        created = ensure_topics(brokers.kafka.bootstrap)
    except EdgeBridgeError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    m, k = status["mosquitto"], status["kafka"]
    print(f"1. brokers up in {time.monotonic() - began:.1f}s: mosquitto {m['url']} "
          f"(max_inflight_messages={m['max_inflight_messages']}, "
          f"max_queued_messages={m['max_queued_messages']}), "
          f"kafka {k['bootstrap']} {k['version']} KRaft (rss {k['rss_mb']} MB); "
          f"topics created: {', '.join(created) or 'none (already there)'}")
    workdir = Path(tempfile.mkdtemp(prefix="edgebridge-demo-"))
    demo = Demo(args, brokers, workdir)
    ok = False
    try:
        demo.start()
        print("3. live view (edge -> bridge -> Kafka -> enricher):")
        finished = demo.watch()
        if not finished:
            print(f"   not complete after {args.timeout:.0f}s")
        demo.stop()
        ok = demo.audit() and finished
    except (RuntimeError, EdgeBridgeError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
    finally:
        for proc in (*demo.agents, demo.bridge, demo.enricher):
            proc.kill()
        if args.keep:
            print("brokers left running: `edgebridge brokers env` / `edgebridge brokers down`")
        else:
            brokers.down()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
    print("RESULT: every event of every device arrived; processed exactly once" if ok
          else f"RESULT: FAILED (logs kept in {workdir})")
    return 0 if ok else 1
