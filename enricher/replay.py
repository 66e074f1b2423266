"""``edgebridge replay``: reprocess ``iot.events.raw`` from a time or an offset into a topic of its own.

The current registry and pipeline steps (the enricher's configuration file) applied again to history,
into ``--to TOPIC``, by the enricher's own :class:`~enricher.processor.Processor` under names of the
replay's own, so that the live enricher is not disturbed and the replay is exactly once by the same
mechanism:

- consumer group and transactional id ``edgebridge-replay-{name}`` (:mod:`edgebridge.kafka_ids`): its
  offsets and transactions are its own; the live enricher's group and producer are never touched;
- its own dedup state ``{to}.state`` (compacted), its alerts ``{to}.alerts`` and dead letters
  ``{to}.deadletter``: the live topics get nothing from a replay;
- the raw topic is only read.

Resumable: the first run commits the start position (``--from``) as the replay group's offsets; a run
with the same name and ``--to`` finds the group's offsets and the dedup state and goes on from there
(``--from`` is then ignored). The replay stops once every partition of the raw topic is processed up to
its end as it was when the replay started; progress is printed as it goes. With ``--follow`` it says
``caught up`` there and goes on processing the raw records that arrive, like the live enricher, until
SIGTERM/SIGINT: a versioned processed topic that catches up, then stays current.

Exit status: 0 done (or stopped by SIGTERM/SIGINT after its last commit: run it again to resume), 1 a
Kafka failure, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
import time
from typing import Any

from edgebridge.arguments import positive_float
from edgebridge.config import add_config_arguments, config_or_exit_code
from edgebridge.kafka_ids import REPLAY_PREFIX
from edgebridge.ops.reading import BEGINNING, END, Position, position_argument
from enricher.config import EnricherConfig

__all__ = ["main", "replay_config"]

log = logging.getLogger("enricher.replay")

EXAMPLES = """\
examples:
  edgebridge replay --to iot.events.processed.v2 --config /etc/edgebridge/enricher.toml
  edgebridge replay --to iot.events.processed.v2 --from 2026-12-05T00:00:00Z  from a time
  edgebridge replay --to iot.events.processed.v2 --from 1d                    the last day
  edgebridge replay --to iot.events.processed.v2                              again: resumes
  edgebridge replay --to iot.events.processed.v2 --follow                     catch up, then stay current
"""


def replay_config(base: EnricherConfig, to: str, name: str) -> EnricherConfig:
    """The enricher's configuration with the replay's own topics, group and transactional id."""
    topics = dataclasses.replace(base.topics, processed=to, enricher_state=f"{to}.state",
                                 alerts=f"{to}.alerts", deadletter=f"{to}.deadletter")
    return dataclasses.replace(
        base, instance_id=name, group_id=f"{REPLAY_PREFIX}-{name}", transactional_id_prefix=REPLAY_PREFIX,
        static_membership=False, topics=topics, metrics=dataclasses.replace(base.metrics, enabled=False))


def _start_offsets(consumer: Any, raw: str, parts: list[int], start: Position) -> dict[int, int]:
    """Where ``start`` is in each partition of the raw topic."""
    from confluent_kafka import TopicPartition

    marks = {p: consumer.get_watermark_offsets(TopicPartition(raw, p), timeout=15) for p in parts}
    if start.kind == BEGINNING:
        return {p: low for p, (low, _) in marks.items()}
    if start.kind == END:
        return {p: high for p, (_, high) in marks.items()}
    if start.kind == "offset":
        return {p: max(low, min(high, start.value)) if start.partition in (None, p) else high
                for p, (low, high) in marks.items()}
    found = consumer.offsets_for_times([TopicPartition(raw, p, start.value) for p in parts], timeout=15)
    return {tp.partition: tp.offset if tp.offset >= 0 else marks[tp.partition][1] for tp in found}


def fence(config: EnricherConfig) -> None:
    """Fence an earlier run of this replay and abort the transaction it left open.

    A run killed between sending its offsets to its transaction and committing it leaves those offsets
    pending: a read_committed ``committed()`` (what :meth:`Progress.seed` asks) waits for them to be
    stable, i.e. until ``transaction.timeout.ms`` (a minute by default) ends the transaction, and times
    out before that. ``init_transactions`` under the replay's transactional id aborts it at once, so a
    resume reads stable offsets right away. The processor's own ``init_transactions`` then fences this
    producer in turn, which is never used again.
    """
    from confluent_kafka import Producer

    from enricher.processor import producer_config

    producer = Producer(producer_config(config))
    producer.init_transactions(config.commit.transaction_timeout_ms / 1000 + 60)
    producer.flush(0)


class Progress:
    """The replay group's committed offsets against each raw partition's end at the start."""

    def __init__(self, client: dict[str, Any], group: str, raw: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.raw = raw
        self.consumer = Consumer({**client, "group.id": group, "enable.auto.commit": False,
                                  "isolation.level": "read_committed", "enable.partition.eof": True})
        meta = self.consumer.list_topics(raw, timeout=15).topics.get(raw)
        if meta is None or meta.error is not None or not meta.partitions:
            raise SystemExit(f"raw topic {raw!r} not found")
        self.parts = sorted(meta.partitions)
        self.replication_factor = len(meta.partitions[self.parts[0]].replicas)
        self.ends = {p: self.consumer.get_watermark_offsets(TopicPartition(raw, p), timeout=15)[1]
                     for p in self.parts}
        self._tp = TopicPartition

    def committed(self) -> dict[int, int]:
        found = self.consumer.committed([self._tp(self.raw, p) for p in self.parts], timeout=15)
        return {tp.partition: tp.offset for tp in found}

    def seed(self, start: Position) -> tuple[bool, dict[int, int]]:
        """(resumed, offsets): the group's offsets if it has any, else ``start``'s, committed now."""
        committed = self.committed()
        if any(offset >= 0 for offset in committed.values()):
            return True, committed
        offsets = _start_offsets(self.consumer, self.raw, self.parts, start)
        self.consumer.commit(offsets=[self._tp(self.raw, p, o) for p, o in offsets.items()],
                             asynchronous=False)
        return False, offsets

    def nothing_left(self, partition: int, offset: int) -> bool:
        """No committed record from ``offset`` to the end at the start: only transaction markers or
        aborted records (which a read_committed consumer never hands over) lie in between."""
        self.consumer.assign([self._tp(self.raw, partition, offset)])
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                for msg in self.consumer.consume(1, 0.5):
                    if msg.error() is None:
                        return (msg.offset() or 0) >= self.ends[partition]
                    return True  # end of partition
            return False
        finally:
            self.consumer.unassign()

    def close(self) -> None:
        self.consumer.close()


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reprocess the raw topic from a time or an offset with the current registry and steps "
        "into a topic of its own, exactly once, with its own dedup state, group and transactional id; the "
        "live enricher is not disturbed. Run again with the same --to to resume.")
    add_config_arguments(parser)
    parser.add_argument("--to", required=True, metavar="TOPIC", help="the topic to write (created if "
                        "missing, with TOPIC.state, TOPIC.alerts and TOPIC.deadletter)")
    parser.add_argument("--from", dest="start", type=position_argument, default=Position(BEGINNING),
                        metavar="WHERE", help="beginning (default), OFFSET, PARTITION:OFFSET, an RFC 3339 "
                        "time or an age (2h, 1d); ignored when resuming")
    parser.add_argument("--name", help="the replay's name: its group and transactional id (default: --to)")
    parser.add_argument("--follow", action="store_true", help="after the raw end seen at the start, go on "
                        "processing new raw records as they arrive, until SIGTERM or Ctrl-C")
    parser.add_argument("--every", type=positive_float, default=2.0, metavar="SECONDS",
                        help="seconds between progress lines (default 2)")
    return parser


def main(argv: list[str], prog: str) -> int:
    args = _parser(prog).parse_args(argv)
    base = config_or_exit_code(EnricherConfig, args, prog)
    if isinstance(base, int):
        return base
    live = {base.topics.raw, base.topics.processed, base.topics.alerts, base.topics.deadletter,
            base.topics.enricher_state, base.topics.devices}
    if args.to in live:
        print(f"{prog}: --to {args.to!r} is a live topic of the pipeline; give a topic of the replay's own",
              file=sys.stderr)
        return 2
    from edgebridge.logs import setup_logging

    setup_logging(base.log.level)
    config = replay_config(base, args.to, args.name or args.to)
    try:
        return _run(config, args, prog)
    except Exception as exc:  # KafkaException, FatalKafkaError: one line, run it again to resume
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


def _run(config: EnricherConfig, args: argparse.Namespace, prog: str) -> int:
    from edgebridge.kafka_admin import ensure_topics
    from enricher.processor import Processor

    client = config.kafka.client_config({})
    progress = Progress(client, config.group_id, config.topics.raw)
    try:
        t = config.topics  # the replay's own topics only: the live ones are left as they are
        ensure_topics(config.kafka, t, len(progress.parts), progress.replication_factor,
                      only={t.processed, t.enricher_state, t.alerts, t.deadletter})
        fence(config)  # before the offsets are read: they may be pending in a killed run's transaction
        resumed, first = progress.seed(args.start)
        total = sum(max(0, progress.ends[p] - first[p]) for p in progress.parts)
        print(f"{'resuming' if resumed else 'replaying'} {config.topics.raw} -> {config.topics.processed}: "
              f"{total} records to the end at the start (group {config.group_id}, transactional id "
              f"{config.transactional_id})", flush=True)
        if not args.follow and not any(first[p] < end for p, end in progress.ends.items()):
            # nothing to do: not even started (a processor stopped while joining its group may hang in
            # librdkafka's close, see enricher.hang_watchdog)
            print(f"done: {config.topics.processed} holds the replay", flush=True)
            return 0
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        processor = Processor(config)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                processor.run(stop)
            except BaseException as exc:  # reported by the main thread
                failure.append(exc)
                stop.set()

        worker = threading.Thread(target=run, name="replay", daemon=True)
        worker.start()
        done = _watch(progress, first, total, stop, args.every, args.follow)
        stop.set()
        worker.join()
        if failure:
            raise failure[0]
        again = f"{prog} --to {config.topics.processed}" + (" --follow" if args.follow else "")
        print(f"{'done' if done else 'stopped'}: {config.topics.processed} "
              + ("holds the replay" if done else f"(run `{again}` to resume)"), flush=True)
        return 0
    finally:
        progress.close()


def _watch(progress: Progress, first: dict[int, int], total: int, stop: threading.Event,
           every: float, follow: bool = False) -> bool:
    """Print progress until every partition is processed to its end at the start (True) or ``stop``.
    ``follow``: there, print ``caught up`` and go on, a line each time more is committed, until ``stop``."""
    from confluent_kafka import KafkaException

    stalled_since = time.monotonic()
    last: dict[int, int] = {}
    caught_up: dict[int, int] | None = None  # the committed offsets when it caught up
    while not stop.wait(every):
        try:
            committed = progress.committed()
        except KafkaException:
            # the processor's transaction in flight holds its offsets pending (read_committed waits for
            # them) past our timeout on a slow commit: a progress line missed, not a failure
            continue
        if caught_up is not None:
            if committed != last:
                since = sum(committed[p] - caught_up[p] for p in progress.parts)
                print(f"  following: {since} records since caught up", flush=True)
                last = committed
            continue
        done = sum(max(0, min(committed[p], progress.ends[p]) - first[p]) for p in progress.parts)
        print(f"  {done}/{total} records ({100 * done / max(total, 1):.0f} %)", flush=True)
        if committed != last:
            last, stalled_since = committed, time.monotonic()
        pending = [p for p in progress.parts if committed[p] < progress.ends[p]]
        # a partition whose last records are transaction markers never gets its offset to the end
        if pending and time.monotonic() - stalled_since > 3 * every:
            pending = [p for p in pending if not progress.nothing_left(p, max(committed[p], first[p]))]
        if not pending:
            if not follow:
                return True
            caught_up = last = committed
            print(f"caught up: {total} records to the end at the start; following {progress.raw} until "
                  "SIGTERM", flush=True)
    return False
