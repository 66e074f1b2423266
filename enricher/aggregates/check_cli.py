"""``edgebridge aggregator check``: iot.aggregates against a recomputation from iot.events.processed.

A subcommand of the aggregator rather than an option of ``edgebridge audit``: it needs the aggregator's
rule (``[aggregates]`` of the enricher's file) and code (``enricher.aggregates``), which the core package
``edgebridge/`` that holds ``audit`` may not import (docs/architecture.md).

Exit status: 0 every window and count equal; 1 a difference (or Kafka failed); 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edgebridge.arguments import device_id
from edgebridge.config import add_config_arguments, config_or_exit_code
from edgebridge.ops.reading import BEGINNING, Position, position_argument

__all__ = ["EXAMPLES", "add_arguments", "format_result", "run"]

EXAMPLES = """\
examples:
  edgebridge aggregator check --config /etc/edgebridge/enricher.toml
  edgebridge aggregator check --config enricher.toml --device pi-0042      one device's windows
  edgebridge aggregator check --config enricher.toml --json | jq .differences
  edgebridge aggregator check --config enricher.toml --from 2026-12-06T00:00:00Z
                                                   processed from a time (older records deleted)

It reads the whole processed topic (read committed) and applies the aggregator's rule ([aggregates]
window_seconds, lateness_seconds, max_ahead_seconds, max_open_windows of the same file) to each record
once, per device in partition order, then compares the latest record of every key of iot.aggregates.
Run it once the aggregator has caught up: windows it has not applied yet differ (a note says how
many processed records its group ([aggregates] group_id) had not committed when the check began).
Memory is not bounded: it keeps every window of both topics until the comparison.

exit status: 0 equal, 1 a window or count missing, extra or different (or Kafka failed), 2 bad usage
"""

DESCRIPTION = ("Check iot.aggregates against a recomputation from iot.events.processed with the same "
               "window rule: windows missing, extra, or with other figures (count, min, max, mean, last, "
               "final), and too-late and ahead counts.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--device", type=device_id, help="only this device")
    parser.add_argument("--from", dest="start", type=position_argument, default=Position(BEGINNING),
                        metavar="WHERE", help="where the processed read starts: beginning (default), an "
                        "offset, P:OFFSET, an RFC 3339 time or an age; windows of records before it show "
                        "as extra")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    parser.add_argument("--most", type=int, default=50, metavar="N",
                        help="table rows of differences at most (default 50; --json lists all)")


def _short(value: Any) -> str:
    """A record in a table cell: its kind and count, and whether final (``window n=12 final``)."""
    if isinstance(value, dict):
        return f"{value.get('kind')} n={value.get('count')}" + (" final" if value.get("final") else "")
    return "-" if value is None else str(value)


def format_result(result: Any, processed: str, aggregates: str, most: int = 50) -> str:
    """The differences as a table, then the verdict line (the demo prints it too)."""
    lines = []
    if result.differences:
        lines.append(f"{'difference':<10} {'key':<56} {'field':<6} {'aggregates':>20} {'recomputed':>20}")
        for d in result.differences[:most]:
            lines.append(f"{d.kind:<10} {d.key:<56} {d.field or '-':<6} {_short(d.topic):>20} "
                         f"{_short(d.recomputed):>20}")
        if len(result.differences) > most:
            lines.append(f"... and {len(result.differences) - most} more (--json lists all)")
    lines.append(verdict(result, processed))
    if result.behind:
        lines.append(f"note: the aggregator (its group's committed offsets) was {result.behind} processed "
                     "records behind when the check began: differences may be windows it had not applied yet")
    return "\n".join(lines)


def verdict(result: Any, processed: str) -> str:
    if result.ok:
        return (f"aggregates: {result.windows} windows, {result.counts} too-late/ahead counts, equal to a "
                f"recomputation from {processed} ({result.processed} records, {result.devices} devices)")
    kinds = [d.kind for d in result.differences]
    return (f"aggregates: DIFFERENT from a recomputation from {processed}: {kinds.count('missing')} "
            f"missing, {kinds.count('extra')} extra, {kinds.count('different')} different (of "
            f"{result.windows} windows and {result.counts} counts in the topic)")


def run(args: argparse.Namespace, prog: str) -> int:
    from enricher.config import EnricherConfig

    # the enricher's file, or a small one of the operator's: [kafka], [topics] and [aggregates] are read
    config = config_or_exit_code(EnricherConfig, args, prog, sections=("kafka", "topics", "aggregates"))
    if isinstance(config, int):
        return config
    from enricher.aggregates.check import check

    topics = config.topics
    only = args.device
    try:
        result = check(config.kafka.client_config({}), topics.processed, topics.aggregates, config.aggregates,
                       device=None if only is None else (lambda d: d == only), start=args.start,
                       group=config.aggregates.group_id)
    except KeyboardInterrupt:
        return 1
    except Exception as exc:  # EdgeBridgeError, KafkaException: one line for the operator
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"processed": topics.processed, "aggregates": topics.aggregates, **result.to_json()},
                         default=str))
    else:
        print(format_result(result, topics.processed, topics.aggregates, args.most))
    return 0 if result.ok else 1
