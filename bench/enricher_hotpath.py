"""CPU per event of the enricher's processing loop, the real code with real librdkafka clients, no broker.

``Processor._step`` runs over pre-built ``confluent_kafka.Message`` objects (the records of
``bench/enricher_throughput.py``) handed out by a stand-in consumer, 500 per call like the real one;
outputs go to a real (non-transactional) ``Producer`` that queues them in memory for a broker that
never answers; the commit keeps step 1 (the dedup state records), the hand-off and the held records,
and leaves out the broker round trips.
So the figure is the main thread's CPU per raw record: decode, pipeline, encode, produce, bookkeeping,
without the fetches, the transaction calls and the background threads that ``enricher_throughput`` adds.
Steady enough to compare two versions of the loop on a shared machine (``--against TREE``: the same
harness on another checkout's ``enricher``, interleaved run by run).

    .venv/bin/python -m bench.enricher_hotpath [--events 100000] [--repeats 5] [--against TREE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def measure(events: int) -> float:
    """One run in this process: us of main-thread CPU per raw record."""
    from confluent_kafka import Message, Producer

    from bench.enricher_throughput import raw_events, registry
    from edgebridge.config import load_config
    from enricher.config import EnricherConfig
    from enricher.processor import Processor
    from enricher.registry import parse_device

    config = load_config(EnricherConfig, None, env={}, overrides={
        "kafka.bootstrap": "127.0.0.1:9", "metrics.enabled": False})
    processor = Processor(config)
    processor.registry.devices = {d: parse_device(d, info) for d, info in registry().items()}
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "linger.ms": 50,
                         "queue.buffering.max.messages": 10_000_000,
                         "queue.buffering.max.kbytes": 8_000_000, "log_level": 0})
    cp = processor.checkpoint
    processor.producer = cp.producer = producer
    cp._produce = producer.produce
    cp._begin = _begin(cp)  # type: ignore[method-assign]
    cp._finish = _finish  # type: ignore[method-assign]
    processor.assignment.assigned.update({0, 1})
    base = 1_795_700_000_000
    messages = [Message(topic=config.topics.raw, partition=i % 2, offset=i // 2, key=key, value=value,
                        timestamp=(1, base + i // 20))
                for i, (key, value) in enumerate(raw_events(events))]
    processor.consumer = processor.assignment.consumer = _Consumer(messages)  # type: ignore[assignment]
    began = time.thread_time()
    while processor.consumer.left():  # type: ignore[attr-defined]
        processor._step()
    processor.checkpoint.commit()
    spent = time.thread_time() - began
    producer.purge()
    return spent / events * 1e6


class _Consumer:
    def __init__(self, messages: list[Any]) -> None:
        self.messages = messages
        self.at = 0

    def left(self) -> bool:
        return self.at < len(self.messages)

    def consume(self, n: int, timeout: float) -> list[Any]:
        batch = self.messages[self.at:self.at + n]
        self.at += n
        return batch

    def close(self) -> None:
        pass


def _begin(cp: Any) -> Any:
    def begin() -> None:  # no broker: a transaction that is only a flag
        cp.open = True

    return begin


def _finish(offsets: Any, metadata: Any, began: float) -> None:  # steps 2-3 need a broker: left out
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--against", type=Path, help="another checkout to run the same harness on")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child run: print us
    args = parser.parse_args()
    if args.one:
        print(measure(args.events))
        return
    trees = [("this tree", ROOT)] + ([("against", args.against)] if args.against else [])
    results: dict[str, list[float]] = {name: [] for name, _ in trees}
    for _ in range(args.repeats):
        for name, tree in trees:
            # a fresh process per run, with the tree first on sys.path: each side imports its own code
            env = {**os.environ, "PYTHONPATH": f"{tree}:{ROOT}"}
            out = subprocess.run([sys.executable, "-m", "bench.enricher_hotpath", "--one",
                                  "--events", str(args.events)], cwd=tree, env=env, check=True,
                                 capture_output=True, text=True).stdout
            results[name].append(float(out.split()[-1]))
    for name, runs in results.items():
        print(f"{name:<10} {statistics.median(runs):6.2f} us CPU per record (median of {len(runs)}: "
              + " / ".join(f"{r:.2f}" for r in runs) + ")")
    if args.against:
        ours, other = (statistics.median(results[n]) for n, _ in trees)
        print(f"this tree / against: {ours / other:.2f}")


if __name__ == "__main__":
    main()
