"""The Kafka floor under the enricher: exactly-once consume -> produce in Python with no processing.

The same pre-filled raw topic as ``bench/enricher_throughput.py``; one in-process loop consumes it
``read_committed`` (500 per call), produces each record's bytes unchanged to an output topic inside a
transaction, and commits every 100 ms with ``send_offsets_to_transaction``, like the enricher but
with no decode, pipeline or encode. Also a consume-only pass. What it says: how much of the
enricher's per-event budget the Kafka client and broker take on this machine (CPU per thread).

    .venv/bin/python -m bench.kafka_eos_floor [--events 200000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.common import thread_cpu
from bench.enricher_profile import show_threads
from bench.enricher_throughput import create, kafka_with_raw


def run(bootstrap: str, raw: str, out: str, events: int, produce: bool) -> None:
    group = f"floor-{uuid.uuid4().hex[:6]}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": group, "linger.ms": 50})
    producer.init_transactions(30)
    consumer.subscribe([raw])
    positions: dict[int, int] = {}
    n, began, last, open_ = 0, 0.0, time.monotonic(), False
    before = thread_cpu()

    def commit() -> None:
        offsets = [TopicPartition(raw, p, o) for p, o in positions.items()]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)

    while n < events:
        messages = consumer.consume(500, 0.5)
        if messages and not began:  # timed from the first record: the group join is not the floor
            began, before = time.monotonic(), thread_cpu()
        for msg in messages:
            if msg.error() is not None:
                continue
            if produce:
                if not open_:
                    producer.begin_transaction()
                    open_ = True
                producer.produce(out, msg.value(), msg.key())
                positions[msg.partition() or 0] = (msg.offset() or 0) + 1
            else:
                msg.value()
            n += 1
        if open_ and time.monotonic() - last >= 0.1:
            commit()
            open_, last = False, time.monotonic()
    if open_:
        commit()
    seconds = time.monotonic() - began
    print(f"{'consume -> produce, transactions every 100 ms' if produce else 'consume only'}: "
          f"{events / seconds:,.0f} ev/s")
    show_threads(before, thread_cpu(), events)
    consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgebridge-floor-") as tmp, \
            kafka_with_raw(Path(tmp), args.events, 2, "floor") as (bs, raw):
        out = f"floor-out-{uuid.uuid4().hex[:6]}"
        create(AdminClient({"bootstrap.servers": bs}), [(out, 2, {})])
        run(bs, raw, out, args.events, produce=False)
        run(bs, raw, out, args.events, produce=True)

if __name__ == "__main__":
    main()
