"""The `edgebridge` command: one entry point, one subcommand per component, imported lazily.

Each subcommand lives in its component as a module with ``main(argv: list[str], prog: str) -> int``.
Only the chosen module is imported, so `edgebridge agent ...` on a device never imports confluent-kafka
(the agent's extras do not even install it). A component registers itself by adding a line to
:data:`COMMANDS`; `tests/test_cli.py` checks that every registered command answers ``--help``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from edgebridge import __version__

__all__ = ["COMMANDS", "main"]

# name -> (dotted path of a module with main(argv, prog), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "brokers": ("edgebridge.devbrokers.cli", "start, stop and show the local Mosquitto and Kafka"),
    "enricher": ("enricher.cli", "exactly-once enrichment of iot.events.raw into iot.events.processed"),
    "aggregator": ("enricher.aggregates.cli", "windowed aggregates of iot.events.processed, exactly once"),
    "sink": ("enricher.sinks.cli", "processed events into SQLite or PostgreSQL, exactly once"),
    "devices": ("enricher.devices_cli", "put, get, list and import devices of the registry (iot.devices)"),
    "bridge": ("bridge.cli", "MQTT to Kafka (ack only what Kafka has) and Kafka commands to MQTT"),
    "agent": ("edge_agent.cli", "the edge agent: sensors to a durable outbox to MQTT (run, status, install)"),
    "topics": ("edgebridge.kafka_admin", "create the Kafka topics of the wire contract (idempotent)"),
    "demo": ("simulators.demo", "the main job: local brokers and simulated devices end to end"),
    "simulate": ("simulators.simulate", "simulated devices: serial sensor, fleet of agents, audit"),
    "deploy": ("edgebridge.deploy.cli", "a deployment's CA, certificates, MQTT passwords and ACL (init)"),
    "audit": ("edgebridge.ops.audit", "per device and epoch: events, duplicates, gaps, holes (exit 1: lost)"),
    "tail": ("edgebridge.ops.tail", "print a topic's records (dead letters with reason, error, origin)"),
    "deadletters": ("edgebridge.ops.deadletters_cli", "dead letters by reason and device; redrive them once"),
    "replay": ("enricher.replay", "reprocess iot.events.raw into a new topic, exactly once, resumable"),
    "command": ("edgebridge.ops.command", "send a command to a device and wait for its answer"),
    "dashboard": ("dashboard.cli", "a live web page of the fleet and the pipeline (read-only, with a login)"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: edgebridge [--version] <command> [options]",
        "",
        "edgebridge: from IoT devices over MQTT into Apache Kafka, losing nothing.",
        "",
        "commands:",
        *(f"  {name.ljust(width)}  {text}" for name, (_, text) in sorted(COMMANDS.items())),
        "",
        "Run `edgebridge <command> --help` for a command's options.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"edgebridge {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"edgebridge: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    result: int = module.main(rest, prog=f"edgebridge {name}")
    return result


if __name__ == "__main__":
    sys.exit(main())
