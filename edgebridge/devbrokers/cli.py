"""`edgebridge brokers up | down | status | env`: the local development brokers."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from edgebridge.arguments import positive_int, user_password
from edgebridge.devbrokers.kafka_cluster import MAX_NODES
from edgebridge.devbrokers.local import BROKER_NAMES, LocalBrokers, default_state_dir
from edgebridge.devbrokers.mosquitto import MosquittoOptions
from edgebridge.errors import EdgeBridgeError

__all__ = ["main"]


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a real Mosquitto (system package) and a real Kafka in KRaft mode, one node or a "
        "replicated cluster (jars from KAFKA_HOME, or resolved once from Maven Central with mvn), on free "
        "127.0.0.1 ports.",
    )
    parser.add_argument("--state-dir", default=None,
                        help=f"config, data and logs of the brokers (default: {default_state_dir()})")
    parser.add_argument("--only", choices=BROKER_NAMES, action="append",
                        help="act on this broker only (repeatable)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="{up,down,status,env}")
    up = sub.add_parser("up", help="start the brokers and wait until each answers a protocol request")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for each broker")
    up.add_argument("--mqtt-user", action="append", default=[], metavar="USER:PASSWORD", type=user_password,
                    help="require username/password on Mosquitto (repeatable)")
    up.add_argument("--mqtt-tls", action="store_true", help="serve MQTT over TLS with a throwaway CA")
    up.add_argument("--kafka-nodes", type=kafka_nodes_argument, default=None, metavar="N",
                    help="Kafka nodes, each broker and controller (default: as the last `up` of this state "
                    "folder, else 1); with several, the internal and contract topics get replication "
                    "factor min(3, N) and min.insync.replicas one less")
    sub.add_parser("down", help="stop the brokers (their data is kept)")
    status = sub.add_parser("status", help="show addresses, pids, settings and memory")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("env", help="print EDGEBRIDGE_MQTT_URL=... and EDGEBRIDGE_KAFKA_BOOTSTRAP=... lines")
    return parser


def kafka_nodes_argument(text: str) -> int:
    """The argparse type of ``--kafka-nodes`` (`brokers up`, `demo`)."""
    value = positive_int(text)
    if value > MAX_NODES:
        raise argparse.ArgumentTypeError(f"at most {MAX_NODES} nodes, not {value}")
    return value


def _ids(ids: Sequence[int]) -> str:
    return ",".join(map(str, ids)) or "-"


def _print_cluster(info: dict[str, Any]) -> None:
    nodes = info["nodes"]
    some = any(n.get("running") for n in nodes)
    state = "running" if info.get("running") else "degraded" if some else "stopped"
    print(f"kafka      {state:8} {len(nodes)} nodes, cluster {info['cluster_id']}, replication factor "
          f"{info['replication_factor']}  bootstrap={info['bootstrap']}")
    for node in nodes:
        running = "running" if node.get("running") else "stopped"
        registered = {True: "registered", False: "not registered"}.get(node.get("registered"), "")
        print(f"  node {node['node_id']}   {running:8} {node['bootstrap']}  pid={node['pid']}  "
              f"controller_port={node['controller_port']}  heap={node['heap']}  rss_mb={node['rss_mb']}  "
              f"{registered}")
        print(f"           log: {node['log']}")
    if "metadata_error" in info:
        print(f"  no node answered: {info['metadata_error']}")
        return
    print(f"  {'topic':32} {'part':>4}  {'leader':>6}  {'replicas':10} isr")
    for p in info["partitions"]:
        lagging = "" if len(p["isr"]) == len(p["replicas"]) else "  under-replicated"
        print(f"  {p['topic']:32} {p['partition']:>4}  {p['leader']:>6}  {_ids(p['replicas']):10} "
              f"{_ids(p['isr'])}{lagging}")
    print(f"  under-replicated partitions: {info['under_replicated']} of {len(info['partitions'])}")


def _print_status(status: dict[str, Any]) -> None:
    for name, info in status.items():
        state = "running" if info.get("running") else "stopped"
        if name == "kafka" and "nodes" in info:
            _print_cluster(info)
            continue
        if name == "mosquitto":
            print(f"mosquitto  {state:8} {info['url']}  pid={info['pid']}  "
                  f"max_inflight_messages={info['max_inflight_messages']}  "
                  f"max_queued_messages={info['max_queued_messages']}  "
                  f"auth={info['auth']} tls={info['tls']}  ready_s={info['ready_seconds']}")
        else:
            print(f"kafka      {state:8} {info['bootstrap']}  pid={info['pid']}  version={info['version']} "
                  f"({info['origin']})  heap={info['heap']}  rss_mb={info['rss_mb']}  "
                  f"ready_s={info['ready_seconds']}")
        print(f"           log: {info['log']}")


def main(argv: Sequence[str], prog: str = "edgebridge brokers") -> int:
    args = build_parser(prog).parse_args(list(argv))
    mosquitto_options = None
    if args.action == "up" and (args.mqtt_user or args.mqtt_tls):
        users = dict(args.mqtt_user)
        mosquitto_options = MosquittoOptions(users=users, tls=args.mqtt_tls)
    try:
        brokers = LocalBrokers(args.state_dir, mosquitto=mosquitto_options, only=args.only or BROKER_NAMES,
                               kafka_nodes=getattr(args, "kafka_nodes", None))
        if args.action == "up":
            began = time.monotonic()
            status = brokers.up(timeout=args.timeout)
            brokers.detach()  # this command exits; the brokers stay up until `down`
            _print_status(status)
            print(f"ready in {time.monotonic() - began:.1f}s; `edgebridge brokers env` prints the addresses")
        elif args.action == "down":
            brokers.down()
            print("stopped")
        elif args.action == "status":
            status = brokers.status()
            if args.json:
                print(json.dumps(status, indent=2))
            else:
                _print_status(status)
            return 0 if all(info["running"] for info in status.values()) else 3
        else:
            for key, value in brokers.env().items():
                print(f"{key}={value}")
    except EdgeBridgeError as exc:
        print(f"edgebridge brokers: {exc}", file=sys.stderr)
        return 1
    return 0
