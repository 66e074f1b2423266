"""``edgebridge enricher run``: the exactly-once enricher as a service.

Exit status: 0 after a clean stop (SIGTERM/SIGINT: the open transaction is committed first), 1 when the
producer was fenced or failed fatally (the supervisor restarts us; the restart aborts what was open),
2 for a configuration error.
"""

from __future__ import annotations

import argparse
import logging
import threading

from edgebridge.config import add_config_arguments, config_or_exit_code
from edgebridge.errors import ConfigError
from edgebridge.lifecycle import install_stop_handlers
from edgebridge.logs import setup_logging
from edgebridge.metrics import MetricsServer
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
    setup_logging(config.log.level, config.log.format)
    from enricher.checkpoint import FatalKafkaError
    from enricher.processor import Processor

    stop = threading.Event()
    restore = install_stop_handlers(stop)
    try:
        processor = Processor(config)
        server = MetricsServer(config.metrics.host, config.metrics.port, processor.metrics.registry,
                               health=processor.progress.health)
        if config.metrics.enabled:
            server.start()
        try:
            processor.run(stop)
        finally:
            server.stop()
    except ConfigError as exc:
        log.error("configuration error", extra={"error": str(exc)})
        return 2
    except FatalKafkaError as exc:
        log.error("fatal kafka error, exiting for a restart", extra={"error": str(exc)})
        return 1
    finally:
        restore()
    log.info("enricher stopped")
    return 0
