"""``edgebridge enricher run``: the exactly-once enricher as a service.

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
from enricher.config import EnricherConfig

log = logging.getLogger("enricher")


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Exactly-once enrichment of iot.events.raw into iot.events.processed with Kafka "
        "transactions: dedup, registry join, calibration, units, derived values, flags, alerts.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="run")
    run = sub.add_parser("run", help="run the enricher until SIGTERM",
                         description="Run the enricher until SIGTERM (commits, then exits 0).")
    add_config_arguments(run)
    args = parser.parse_args(argv)
    config = config_or_exit_code(EnricherConfig, args, prog)
    if isinstance(config, int):
        return config
    return service.run(config, _build, name="enricher", log=log)


def _build(config: EnricherConfig) -> service.Service:
    from enricher.checkpoint import FatalKafkaError
    from enricher.processor import Processor

    processor = Processor(config)

    def run(stop: threading.Event) -> None:
        processor.run(stop)
        log.info("enricher stopped")

    return service.Service(run, health=processor.progress.health, registry=lambda: processor.metrics.registry,
                           fatal={FatalKafkaError: "fatal kafka error, exiting for a restart"})
