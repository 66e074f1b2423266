"""``edgebridge deadletters list | redrive``: what is in the dead-letter topic, and putting it back.

``list`` groups the dead letters by reason and device (count, how many were redriven already, first
and last time, the latest error). ``redrive`` puts selected ones back into the raw topic, once
(:mod:`edgebridge.ops.redrive`); ``--dry-run`` shows what would go and what would not, and why.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from edgebridge import deadletters as dlq
from edgebridge import envelope
from edgebridge.arguments import device_id
from edgebridge.config import add_config_arguments
from edgebridge.errors import ConfigError
from edgebridge.ops.config import OpsConfig, config_or_exit_code
from edgebridge.ops.reading import Position, Record, position_argument, read
from edgebridge.ops.redrive import DONE, REDRIVE, Candidate, marker_key, read_markers, redrive, topic_exists

__all__ = ["Group", "group", "main"]

EXAMPLES = """\
examples:
  edgebridge deadletters list                                  by reason and device
  edgebridge deadletters list --reason unknown_device --json
  edgebridge deadletters redrive --reason unknown_device --dry-run   what would go, what would not
  edgebridge deadletters redrive --reason unknown_device --device dev-9
  edgebridge deadletters redrive --offset 0:1234               one dead letter (partition:offset)

After `edgebridge devices put dev-9 ...`, the unknown_device dead letters of dev-9 can go back; a second
redrive moves nothing (each redriven dead letter has a marker in [redrive] marker_topic).
exit status: 0 done (or nothing to do), 1 an error, 2 a usage or configuration error.
"""


@dataclass
class Group:
    reason: str
    device: str
    count: int = 0
    redriven: int = 0
    first: int | None = None  # Kafka timestamps, ms
    last: int | None = None
    error: str = ""
    offsets: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "device": self.device, "count": self.count, "redriven": self.redriven,
                "first": _time(self.first), "last": _time(self.last), "error": self.error}


def _time(ms: int | None) -> str:
    return dlq.rfc3339(ms / 1000) if ms else "-"


def group(records: Iterable[Record], markers: set[str]) -> list[Group]:
    """Dead letters by (reason, device), in that order."""
    groups: dict[tuple[str, str], Group] = {}
    for r in records:
        reason = r.header(dlq.REASON) or "?"
        device = (r.key or b"").decode("utf-8", "replace") or "-"
        g = groups.setdefault((reason, device), Group(reason, device))
        g.count += 1
        g.redriven += marker_key(r) in markers
        ts = r.timestamp_ms
        if ts is not None:
            g.first = ts if g.first is None else min(g.first, ts)
            g.last = ts if g.last is None else max(g.last, ts)
        g.error = f"{r.header(dlq.ERROR_CLASS)}: {r.header(dlq.ERROR)}"
    return [groups[k] for k in sorted(groups)]


def _table(groups: list[Group]) -> str:
    lines = [f"{'reason':<18} {'device':<20} {'count':>6} {'redriven':>8}  {'first':<24} {'last':<24} error"]
    for g in groups:
        lines.append(f"{g.reason:<18} {g.device:<20} {g.count:>6} {g.redriven:>8}  {_time(g.first):<24} "
                     f"{_time(g.last):<24} {g.error[:100]}")
    lines.append(f"{sum(g.count for g in groups)} dead letters, {len(groups)} groups")
    return "\n".join(lines)


def _selector(args: argparse.Namespace) -> Callable[[Record], bool]:
    reasons, devices = set(args.reason or ()), set(args.device or ())
    offsets = set(args.offset or ())

    def select(r: Record) -> bool:
        return ((not reasons or r.header(dlq.REASON) in reasons)
                and (not devices or (r.key or b"").decode("utf-8", "replace") in devices)
                and (not offsets or (r.partition, r.offset) in offsets))
    return select


def _offset(text: str) -> tuple[int, int]:
    partition, colon, offset = text.partition(":")
    if not colon or not partition.isdigit() or not offset.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected PARTITION:OFFSET of a dead letter, e.g. 0:42")
    return int(partition), int(offset)



def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read the dead-letter topic by reason and device; redrive selected dead letters "
        "back into the raw topic, once.")
    sub = parser.add_subparsers(dest="action", metavar="{list,redrive}")
    for name, text in (("list", "dead letters grouped by reason and device"),
                       ("redrive", "put selected dead letters back into the raw topic, once")):
        p = sub.add_parser(name, help=text, epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_config_arguments(p)  # on each subcommand: `deadletters list --config F` reads as one expects
        p.add_argument("--reason", action="append", metavar="REASON",
                       help=f"only this reason (repeatable); known: {', '.join(sorted(dlq.REASONS))}")
        p.add_argument("--device", action="append", type=device_id, help="only this device (repeatable)")
        p.add_argument("--from", dest="start", type=position_argument, default=Position("beginning"),
                       metavar="WHERE",
                       help="beginning (default), an RFC 3339 time or an age (1h, 2d)")
        if name == "list":
            p.add_argument("--json", action="store_true", help="one JSON object per group")
        else:
            p.add_argument("--offset", action="append", type=_offset, metavar="P:O",
                           help="only the dead letter at partition P, offset O (repeatable)")
            p.add_argument("--all", action="store_true", help="every dead letter (without a filter, "
                           "redrive refuses: most reasons would only fail again)")
            p.add_argument("--dry-run", action="store_true", help="show what would go, write nothing")
            p.add_argument("--no-registry-check", action="store_true",
                           help="redrive unknown_device dead letters of devices still not registered")
            p.add_argument("--known-type", action="append", default=[], metavar="TYPE",
                           help="an event type the enricher now takes besides readings and gaps (its "
                           "[pipeline] known_types; repeatable): unknown_type dead letters of it go back")
    args = parser.parse_args(argv)
    if args.action is None:
        parser.print_usage(sys.stderr)
        return 2
    config = config_or_exit_code(args, prog)
    if isinstance(config, int):
        return config
    if args.action == "redrive" and not (args.reason or args.device or args.offset or args.all):
        print(f"{prog} redrive: choose what to redrive: --reason, --device, --offset, or --all",
              file=sys.stderr)
        return 2
    if args.action == "redrive":
        try:
            args.known_types = envelope.device_types(envelope.DEVICE_TYPES | set(args.known_type))
        except ConfigError as exc:
            print(f"{prog} redrive: --known-type: {exc.message}", file=sys.stderr)
            return 2
    try:
        if args.action == "list":
            return _list(config, args)
        return _redrive(config, args)
    except Exception as exc:  # EdgeBridgeError, KafkaException: one line for the operator
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


def _list(config: OpsConfig, args: argparse.Namespace) -> int:
    client = config.kafka.client_config({})
    select = _selector(argparse.Namespace(reason=args.reason, device=args.device, offset=None))
    marker_topic = config.redrive.marker_topic
    # no redrive yet: the marker topic does not exist, nothing was redriven
    markers = read_markers(client, marker_topic) if topic_exists(client, marker_topic) else set()
    groups = group((r for r in read(client, config.topics.deadletter, args.start) if select(r)), markers)
    if args.json:
        for g in groups:
            print(json.dumps(g.as_json(), ensure_ascii=False))
    else:
        print(_table(groups))
    return 0


def _redrive(config: OpsConfig, args: argparse.Namespace) -> int:
    candidates = redrive(config, _selector(args), dry_run=args.dry_run,
                         check_registry=not args.no_registry_check, start=args.start,
                         known_types=args.known_types)
    went = [c for c in candidates if c.verdict == REDRIVE]
    done = [c for c in candidates if c.verdict == DONE]
    refused = [c for c in candidates if c.verdict not in (REDRIVE, DONE)]
    verb = "would redrive" if args.dry_run else "redriven"
    for c in candidates:
        print(f"{_line(c, verb)}")
    print(f"{verb} {len(went)}, already redriven {len(done)}, not redriven {len(refused)} "
          f"(of {len(candidates)} selected) -> {config.topics.raw}")
    return 0


def _line(c: Candidate, verb: str) -> str:
    r = c.record
    what = verb if c.verdict == REDRIVE else ("skipped: " + c.verdict)
    return f"{r.partition}:{r.offset} {c.reason:<16} {c.device or '-':<20} {what}"
