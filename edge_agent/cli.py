"""``edgebridge agent``: run the edge agent, or show its outbox.

edgebridge agent run --config /etc/edge-agent/agent.toml
edgebridge agent status --config /etc/edge-agent/agent.toml [--json]
edgebridge agent --print-config --config agent.toml
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING

from edgebridge.config import add_config_arguments, config_or_exit_code
from edgebridge.errors import EdgeBridgeError

if TYPE_CHECKING:
    from edge_agent.agent import Agent
    from edgebridge.metrics import MetricsServer

__all__ = ["main", "serve_metrics"]

log = logging.getLogger("edge_agent")


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The edge agent: sensors to a durable SQLite outbox to MQTT, never losing a committed "
        "event. 'run' runs it (systemd Type=notify aware); 'status' reads the outbox: backlog, oldest "
        "event age, evictions, last ack.",
    )
    add_config_arguments(parser)
    parser.add_argument("action", nargs="?", choices=["run", "status"], default=None, help="what to do")
    parser.add_argument("--json", action="store_true", help="status: print JSON")
    return parser


def main(argv: list[str], prog: str = "edgebridge agent") -> int:
    from edge_agent.config import AgentConfig

    parser = _parser(prog)
    args = parser.parse_args(argv)
    config = config_or_exit_code(AgentConfig, args, prog)
    if isinstance(config, int):
        return config
    if args.action == "status":
        return _status(config, args.json, prog)
    if args.action == "run":
        return _run(config)
    parser.print_usage(sys.stderr)
    return 2


def _status(config: object, as_json: bool, prog: str) -> int:
    from edge_agent.outbox import read_status

    path = config.outbox_path  # type: ignore[attr-defined]
    if not path.exists():
        print(f"{prog}: no outbox at {path}", file=sys.stderr)
        return 3
    status = read_status(path)
    if as_json:
        print(json.dumps(status))
    else:
        for key, value in status.items():
            print(f"{key}: {value}")
    return 0


def serve_metrics(agent: Agent) -> MetricsServer | None:
    """Start ``/metrics`` and ``/healthz`` (:meth:`Agent.health`) for ``agent`` per its ``[metrics]``;
    ``None`` when disabled. prometheus_client is imported only here, so an agent without metrics
    does not pay for it in memory."""
    if not agent.config.metrics.enabled:
        return None
    from edge_agent.metrics import register
    from edgebridge.metrics import MetricsServer, new_registry

    registry = new_registry()
    register(agent, registry)
    m = agent.config.metrics
    server = MetricsServer(m.host, m.port, registry, health=agent.health)
    server.start()
    return server


def _run(config: object) -> int:
    from edge_agent.agent import Agent
    from edge_agent.config import AgentConfig
    from edgebridge.lifecycle import install_stop_handlers
    from edgebridge.logs import setup_logging

    assert isinstance(config, AgentConfig)
    setup_logging(config.log.level, config.log.format)
    agent = Agent(config)
    restore = install_stop_handlers(agent.stop)
    server = None
    try:
        server = serve_metrics(agent)
        return agent.run()
    except EdgeBridgeError as exc:
        log.error("agent failed", extra={"error": str(exc)})
        return 1
    finally:
        if server is not None:
            server.stop()
        restore()
