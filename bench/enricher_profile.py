"""cProfile of the enricher's hot path: one in-process Processor over a pre-filled raw topic.

    .venv/bin/python -m bench.enricher_profile [--events 50000] [--interval-ms 100] [--top 40]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from bench.common import thread_cpu
from bench.enricher_throughput import Bench, create, kafka_with_raw
from edgebridge.config import load_config
from enricher.config import EnricherConfig


def show_threads(before: dict[str, float], after: dict[str, float], events: int) -> None:
    rows = sorted(((after[k] - before.get(k, 0.0), k) for k in after), reverse=True)
    for seconds, name in rows:
        if seconds > 0:
            print(f"  {name:<24} {seconds:6.2f} s  {seconds / events * 1e6:6.1f} us/event")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--threads", action="store_true",
                        help="no cProfile: report the CPU of each thread (Python main, librdkafka's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgebridge-prof-") as tmp, \
            kafka_with_raw(Path(tmp), args.events, 2, "prof") as (bs, raw):
        bench = Bench(bs, raw, 2, Path(tmp))
        names = {k: f"prof-{k}-{uuid.uuid4().hex[:6]}"
                 for k in ("processed", "dlq", "alerts", "state")}
        create(bench.admin, [(names["processed"], 2, {}), (names["dlq"], 1, {}), (names["alerts"], 1, {}),
                             (names["state"], 2, {"cleanup.policy": "compact"})])
        group = f"prof-{uuid.uuid4().hex[:6]}"
        config = load_config(EnricherConfig, None, env={}, overrides={
            "instance_id": "p", "group_id": group, "transactional_id_prefix": group,
            "kafka.bootstrap": bs, "metrics.enabled": False, "commit.interval_ms": args.interval_ms,
            "topics.raw": raw, "topics.devices": bench.devices_topic,
            "topics.processed": names["processed"],
            "topics.deadletter": names["dlq"], "topics.alerts": names["alerts"],
            "topics.enricher_state": names["state"]})
        from enricher.processor import Processor

        processor = Processor(config)
        stop = threading.Event()
        total = sum(bench.target)

        def watch() -> None:
            c = Consumer({"bootstrap.servers": bs, "group.id": group})
            parts = [TopicPartition(raw, p) for p in range(2)]
            while sum(max(0, tp.offset) for tp in c.committed(parts, timeout=30)) < total:
                time.sleep(0.05)
            c.close()
            stop.set()

        threading.Thread(target=watch, daemon=True).start()
        profile = cProfile.Profile()
        began = time.monotonic()
        cpu = time.process_time()
        before = thread_cpu()
        if args.threads:
            processor.run(stop)
        else:
            profile.runcall(processor.run, stop)
        wall = time.monotonic() - began
        print(f"{total} events in {wall:.1f} s wall ({total / wall:,.0f} ev/s), "
              f"{time.process_time() - cpu:.1f} s CPU")
        if args.threads:
            show_threads(before, thread_cpu(), total)
            return
        stats = pstats.Stats(profile)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
