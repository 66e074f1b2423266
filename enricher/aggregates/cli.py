"""``edgebridge aggregator run``: windowed aggregates of iot.events.processed, exactly once; and
``edgebridge aggregator check`` (:mod:`~enricher.aggregates.check_cli`): the topic against a recomputation.

Exit status: 0 after a clean stop (SIGTERM/SIGINT: the open transaction is committed first), 1 when the
producer was fenced or failed fatally (the supervisor restarts us; the restart aborts what was open),
2 for a configuration error.
"""

from __future__ import annotations

import argparse
import logging
import threading

from edgebridge import service
from edgebridge.config import add_config_arguments, config_or_exit_code
from enricher.aggregates import check_cli
from enricher.config import EnricherConfig

log = logging.getLogger("aggregator")

EXAMPLES = """\
examples:
  edgebridge aggregator run --config /etc/edgebridge/enricher.toml
  edgebridge aggregator run --config enricher-5m.toml  a second rule (window_seconds = 300): its own
                                                      [topics] aggregates, aggregates_state and group_id
  edgebridge tail iot.aggregates --device pi-0042      its windows, latest figures last
  edgebridge aggregator check --config enricher.toml  every window against a recomputation (exit 1: not equal)
"""


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Per device and measurement, tumbling windows by event time with an allowed "
        "lateness (count, min, max, mean, last) of iot.events.processed into iot.aggregates, exactly "
        "once with Kafka transactions. Configured by the enricher's file: [aggregates], [kafka], [topics].")
    sub = parser.add_subparsers(dest="command", required=True, metavar="run|check")
    run = sub.add_parser("run", help="run the aggregator until SIGTERM",
                         description="Run the aggregator until SIGTERM (commits, then exits 0).")
    add_config_arguments(run)
    check = sub.add_parser("check", help="iot.aggregates against a recomputation from processed (exit 1: "
                           "a difference)", description=check_cli.DESCRIPTION, epilog=check_cli.EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    check_cli.add_arguments(check)
    args = parser.parse_args(argv)
    if args.command == "check":
        return check_cli.run(args, f"{prog} check")
    config = config_or_exit_code(EnricherConfig, args, prog)
    if isinstance(config, int):
        return config
    from enricher.aggregates.aggregator import with_metrics_port

    return service.run(with_metrics_port(config), _build, name="aggregator", log=log)


def _build(config: EnricherConfig) -> service.Service:
    from enricher.aggregates.aggregator import Aggregator
    from enricher.checkpoint import FatalKafkaError

    aggregator = Aggregator(config)

    def run(stop: threading.Event) -> None:
        aggregator.run(stop)

    return service.Service(run, health=aggregator.progress.health,
                           registry=lambda: aggregator.metrics.registry,
                           fatal={FatalKafkaError: "fatal kafka error, exiting for a restart"})
