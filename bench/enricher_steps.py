"""Per-event CPU of the enricher's Python work, no brokers: decode, the pipeline (fused and step by step,
interleaved), and encoding the outputs, over the records of ``bench/enricher_throughput.py``.

    .venv/bin/python -m bench.enricher_steps [--events 50000] [--repeats 5]

What it leaves out is librdkafka's share (consume, produce, transactions, its threads): the difference
between ``1e6 / (events per CPU second)`` of ``enricher_throughput`` and the sum printed here.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from bench.enricher_throughput import raw_events, registry
from edgebridge import envelope
from enricher.config import PipelineSettings
from enricher.dedup import DedupTable
from enricher.output import Output
from enricher.registry import DeviceInfo, parse_device
from enricher.steps import Context, Item, Pipeline, build_pipeline


class _Devices:
    def __init__(self) -> None:
        self.devices = {d: parse_device(d, info) for d, info in registry().items()}

    def get(self, deviceid: str) -> DeviceInfo | None:
        return self.devices.get(deviceid)


def _cpu(run: Callable[[], object]) -> float:
    began = time.process_time()
    run()
    return time.process_time() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    records = [value for _, value in raw_events(args.events)]
    devices = _Devices()
    settings = PipelineSettings()
    events = [envelope.decode(v) for v in records]
    encoder = Output("bench")
    encoder.batch()

    def decode() -> None:
        for value in records:
            envelope.decode(value)

    def pipeline(p: Pipeline) -> Callable[[], list[Item]]:
        def run() -> list[Item]:
            ctx = Context(devices, DedupTable(settings.max_seen_ranges), settings)
            out = []
            for event in events:
                item = p.run(Item(event, event.deviceid, 1_795_700_000_000), ctx)
                if item is not None:
                    out.append(item)
            return out

        return run

    fused, steps = pipeline(build_pipeline(settings)), pipeline(build_pipeline(settings, fuse=False))
    items = fused()

    def encode() -> None:
        for item in items:
            encoder.encode(item)

    results: dict[str, list[float]] = {"decode": [], "steps": [], "fused": [], "encode": []}
    for _ in range(args.repeats):
        for name, run in (("decode", decode), ("steps", steps), ("fused", fused), ("encode", encode)):
            results[name].append(_cpu(run) / len(records) * 1e6)
    print(f"{len(records):,} records, {len(items):,} processed, medians of {args.repeats} interleaved runs, "
          "us of CPU per record:")
    for name, runs in results.items():
        print(f"  {name:7} {statistics.median(runs):6.2f}  ({' / '.join(f'{r:.2f}' for r in runs)})")
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"  pipeline fused / step by step: {med['fused'] / med['steps']:.2f}")


if __name__ == "__main__":
    main()
