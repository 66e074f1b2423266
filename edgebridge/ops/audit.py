"""``edgebridge audit``: per device and epoch, what a topic holds, twice, or lacks; exit 1 when it must not.

Reads ``iot.events.processed`` (read committed, the default) or any events topic (``--topic raw``) from
``--from`` to ``--until`` (``beginning``/``end``, offsets, times, ages: :mod:`edgebridge.ops.reading`),
streaming, into a :class:`~edgebridge.ops.tally.Tally` whose memory grows with the devices and their holes,
not with the events. Duplicates are allowed in the raw topic (at-least-once upstream) and a failure
anywhere else (exactly once after the enricher). ``--expect FILE`` checks against what a simulated fleet
committed (:mod:`edgebridge.ops.expectation`), as ``edgebridge simulate audit`` does.

Exit status: 0 nothing missing or duplicated where it must not be; 1 something is (or Kafka failed);
2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgebridge.arguments import device_id
from edgebridge.config import add_config_arguments
from edgebridge.ops.config import config_or_exit_code
from edgebridge.ops.expectation import DeviceCheck, Expectation, ExpectationCheck, format_checks, totals
from edgebridge.ops.reading import BEGINNING, Position, Record, position_argument, read
from edgebridge.ops.tail import topic_name
from edgebridge.ops.tally import DeviceAudit, Tally, decode

__all__ = ["audit_main", "expectation_checks", "format_table", "main", "passed", "summary"]

EXAMPLES = """\
examples:
  edgebridge audit                                      iot.events.processed, every device, whole topic
  edgebridge audit --topic raw --problems               the raw topic (duplicates allowed), problems only
  edgebridge audit --from 2026-12-06T00:00:00Z --until 2026-12-06T12:00:00Z --json
  edgebridge audit --from 2h --device pump-7            the last two hours of one device
  edgebridge audit --from 0:1200 --until 0:5000         partition 0, offsets 1200 to 4999
  edgebridge audit --expect fleet.json                  against what `simulate fleet --expect` committed
  edgebridge aggregator check --config enricher.toml    iot.aggregates against a recomputation (its own
                                                        command: it runs the aggregator's code)

exit status: 0 nothing missing (and no duplicate outside the raw topic), 1 something is, 2 bad usage
"""


def format_table(audits: Mapping[tuple[str, str], DeviceAudit], problems_only: bool = False) -> str:
    """One row per (device, epoch); the legacy epoch and an unknown time show as ``-``."""
    lines = [f"{'device':<16} {'epoch':<16} {'records':>8} {'distinct':>8} {'dups':>6} {'max seq':>8} "
             f"{'first time':<24} {'last time':<24} {'gaps announced':<18} missing"]
    for a in audits.values():
        if problems_only and a.complete and not a.duplicates:
            continue
        gaps = _ranges(a.announced, "-")
        lines.append(f"{a.device:<16} {a.epoch or '-':<16} {a.records:>8} {a.distinct:>8} {a.duplicates:>6} "
                     f"{a.max_seq:>8} {a.first_time or '-':<24} {a.last_time or '-':<24} {gaps:<18} "
                     f"{_ranges(a.missing, 'none')}")
    return "\n".join(lines)


def _ranges(ranges: list[tuple[int, int]], empty: str, most: int = 5) -> str:
    text = ",".join(f"{x}-{y}" for x, y in ranges[:most]) or empty
    return text + (f",... ({len(ranges)} ranges)" if len(ranges) > most else "")


def summary(tally: Tally, audits: Mapping[tuple[str, str], DeviceAudit]) -> dict[str, int]:
    return {
        "devices": len({device for device, _ in audits}),
        "epochs": len(audits),
        "records": tally.records,
        "distinct": sum(a.distinct for a in audits.values()),
        "duplicates": sum(a.duplicates for a in audits.values()),
        "announced": sum(b - a + 1 for x in audits.values() for a, b in x.announced),
        "missing": sum(b - a + 1 for x in audits.values() for a, b in x.missing),
        "undecodable": tally.undecodable,
    }


def passed(missing: int, duplicates: int, duplicates_allowed: bool) -> bool:
    """The verdict: nothing missing, and no duplicate unless the topic is allowed some (raw)."""
    return missing == 0 and (duplicates_allowed or duplicates == 0)


def expectation_checks(records: Iterable[Record], expectation: Expectation) -> dict[str, DeviceCheck]:
    """The expectation's check of a stream of records (``simulate audit`` and ``audit --expect``)."""
    checker = ExpectationCheck(expectation)
    for record in records:
        event = decode(record.value)
        if event is not None:
            checker.add(event.device, event.epoch, event.seq)
    return checker.result()


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Audit an events topic per device and epoch: events, distinct, duplicates, gaps "
        "announced by the devices, unexplained holes, first and last event time. Read committed, streaming.")
    add_config_arguments(parser)
    parser.add_argument("--topic", default="processed", help="processed (default), raw, or a topic name; "
                        "duplicates are allowed in the raw topic only")
    parser.add_argument("--from", dest="start", type=position_argument, default=Position(BEGINNING),
                        metavar="WHERE", help="beginning (default), OFFSET, PARTITION:OFFSET, an RFC 3339 "
                        "time or an age (10m, 2h); from anywhere but the beginning, holes count from each "
                        "epoch's first seq read")
    parser.add_argument("--until", type=position_argument, default=None, metavar="WHERE",
                        help="stop there (same forms; default: each partition's end when the audit starts)")
    parser.add_argument("--device", type=device_id, help="only this device (the records' key)")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    parser.add_argument("--problems", action="store_true", help="table rows only for epochs with a problem")
    parser.add_argument("--expect", type=Path, metavar="FILE",
                        help="check against a fleet's expectation file (`simulate fleet --expect`)")
    return parser


def main(argv: list[str], prog: str) -> int:
    args = _parser(prog).parse_args(argv)
    config = config_or_exit_code(args, prog)
    if isinstance(config, int):
        return config
    expectation = None
    if args.expect is not None:
        try:
            expectation = Expectation.read(args.expect)
        except ValueError as exc:
            print(f"{prog}: --expect {exc}", file=sys.stderr)
            return 2
    topic = topic_name(args.topic, config.topics)
    try:
        return audit_main(config.kafka.client_config({}), topic, args, expectation,
                          duplicates_allowed=topic == config.topics.raw)
    except KeyboardInterrupt:
        return 1
    except Exception as exc:  # EdgeBridgeError, KafkaException: one line for the operator
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


def audit_main(client: Mapping[str, Any], topic: str, args: argparse.Namespace,
               expectation: Expectation | None, duplicates_allowed: bool) -> int:
    records: Iterable[Record] = read(client, topic, args.start, until=args.until)
    if args.device is not None:
        key = args.device.encode()
        records = (r for r in records if r.key == key)
    if expectation is not None:
        checks = expectation_checks(records, expectation)
        total = totals(checks)
        ok = passed(total["lost"], total["duplicated"], duplicates_allowed)
        if args.json:
            print(json.dumps({"topic": topic, "ok": ok, "totals": total,
                              "devices": {d: vars(c) for d, c in checks.items()}}))
        else:
            print(f"{topic}:\n{format_checks(checks)}")
        return 0 if ok else 1
    tally = Tally()
    for record in records:
        tally.add_value(record.value)
    audits = tally.report(from_one=args.start.kind == BEGINNING)
    total = summary(tally, audits)
    ok = passed(total["missing"], total["duplicates"], duplicates_allowed)
    if args.json:
        print(json.dumps({"topic": topic, "ok": ok, "duplicates_allowed": duplicates_allowed, "totals": total,
                          "epochs": [vars(a) for a in audits.values()]}))
    else:
        print(format_table(audits, args.problems))
        verdict = "OK" if ok else "FAILED"
        print(f"{verdict}: " + ", ".join(f"{k} {v}" for k, v in total.items())
              + (" (duplicates allowed in this topic)" if duplicates_allowed else ""))
    return 0 if ok else 1
