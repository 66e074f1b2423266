"""``edgebridge agent``: run the edge agent, or show its outbox.

edgebridge agent run --config /etc/edge-agent/agent.toml
edgebridge agent status --config /etc/edge-agent/agent.toml [--json]
edgebridge agent --print-config --config agent.toml
edgebridge agent install [--root DIR]    # systemd unit + config on a device (edge_agent/install.py)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING

from edgebridge import service
from edgebridge.config import add_config_arguments, config_or_exit_code
from edgebridge.errors import EdgeBridgeError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from edge_agent.agent import Agent
    from edge_agent.config import AgentConfig
    from edgebridge.metrics import MetricsServer

__all__ = ["main", "serve_metrics"]

log = logging.getLogger("edge_agent")


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The edge agent: sensors to a durable SQLite outbox to MQTT, never losing a committed "
        "event. 'run' runs it (systemd Type=notify aware); 'status' reads the outbox: backlog, oldest "
        "event age, evictions, last ack. 'install' puts the systemd unit and a config on this device "
        "(see 'edgebridge agent install --help').",
    )
    add_config_arguments(parser)
    parser.add_argument("action", nargs="?", choices=["run", "status"], default=None, help="what to do")
    parser.add_argument("--json", action="store_true", help="status: print JSON")
    return parser


def main(argv: list[str], prog: str = "edgebridge agent") -> int:
    if argv[:1] == ["install"]:  # its own options: it reads no agent configuration
        from edge_agent.install import main as install

        return install(argv[1:], prog=f"{prog} install")
    from edge_agent.config import AgentConfig

    parser = _parser(prog)
    args = parser.parse_args(argv)
    config = config_or_exit_code(AgentConfig, args, prog)
    if isinstance(config, int):
        return config
    if args.action == "status":
        return _status(config, args.json, prog)
    if args.action == "run":
        return service.run(config, _build, name="agent", log=log)
    parser.print_usage(sys.stderr)
    return 2


def _status(config: AgentConfig, as_json: bool, prog: str) -> int:
    from edge_agent.outbox import read_status

    path = config.outbox_path
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
    ``None`` when disabled (then prometheus_client is not even imported: on a device every MB counts)."""
    return service.serve_metrics(agent.config.metrics, lambda: _registry(agent), agent.health)


def _registry(agent: Agent) -> CollectorRegistry:
    from edge_agent.metrics import register
    from edgebridge.metrics import new_registry

    registry = new_registry()
    register(agent, registry)
    return registry


def _build(config: AgentConfig) -> service.Service:
    from edge_agent.agent import Agent

    agent = Agent(config)
    # Agent.run watches its own stop event (and wakes its poll): the shell's event is passed on by stop
    return service.Service(lambda stop: agent.run(), health=agent.health,
                           registry=lambda: _registry(agent), stop=agent.stop,
                           fatal={EdgeBridgeError: "agent failed"})
