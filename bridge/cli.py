"""`edgebridge bridge`: run the MQTT ⇄ Kafka bridge."""

from __future__ import annotations

import argparse
import logging

from bridge.config import BridgeConfig
from edgebridge import service
from edgebridge.config import add_config_arguments, config_or_exit_code

__all__ = ["main"]

log = logging.getLogger("bridge")


def main(argv: list[str], prog: str = "edgebridge bridge") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="MQTT to Kafka bridge that acknowledges a device's message only after Kafka has "
        "every event in it, and Kafka to MQTT for commands.",
        epilog="Exit status: 0 after a clean stop (SIGTERM/SIGINT), 1 on a fatal error, 2 on a bad "
        "configuration.",
    )
    sub = parser.add_subparsers(dest="action", metavar="run")
    run = sub.add_parser("run", help="run the bridge until SIGTERM", description="Run the bridge.")
    add_config_arguments(run)
    args = parser.parse_args(argv)
    if args.action != "run":
        parser.print_help()
        return 2
    config = config_or_exit_code(BridgeConfig, args, prog)
    if isinstance(config, int):
        return config
    return service.run(config, _build, name="bridge", log=log)


def _build(config: BridgeConfig) -> service.Service:
    from bridge.service import Bridge  # imports paho and confluent-kafka: only when running

    bridge = Bridge(config)
    return service.Service(bridge.run, health=bridge.health, registry=lambda: bridge.metrics.registry)
