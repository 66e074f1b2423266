"""``edgebridge deploy init | add-devices | rotate``: a deployment's CA, certificates, passwords and ACL.

Run on the operator's machine with ``edgebridge[deploy]`` installed. No secret is ever an argument
(it would sit in the shell's history and in every process listing): the passwords are made here and
written to files, 0600. See docs/deploy.md for what each file is and where it goes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from edgebridge.arguments import positive_int

__all__ = ["main"]

RELOAD = ("make Mosquitto reload its password file: SIGHUP "
          "(`docker-compose -f deploy/compose.yaml kill -s HUP mosquitto`)")


def _ids(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _ids_of_file(path: Path) -> Iterator[str]:
    """One id a line; blank lines and ``#`` comments are skipped."""
    from edgebridge.deploy.init import DeployError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeployError(f"--devices-file {path}: cannot read it ({exc})") from None
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


def _device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=_ids, default=[], metavar="ID,ID,...",
                        help="device ids, comma-separated (each is the device's MQTT username)")
    parser.add_argument("--devices-file", type=Path, metavar="FILE",
                        help="device ids, one a line (# comments and blank lines are skipped)")


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="A deployment's CA, certificates, MQTT "
                                     "passwords and ACL, written to files (docs/deploy.md).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{init,add-devices,rotate}")

    p = sub.add_parser("init", help="write a new deployment directory (never over an existing one)",
                       description="Write a new deployment directory: CA, Mosquitto's certificate, "
                       "password file and ACL, the bridge's users and env files, one folder per device.")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the directory to create")
    _device_args(p)
    p.add_argument("--hosts", type=_ids, default=None, metavar="NAME,ADDR,...",
                   help="names and addresses the servers are reached by, in their certificates "
                   "(default: localhost,127.0.0.1,mosquitto,kafka)")
    p.add_argument("--device-url", metavar="URL",
                   help="mqtts://host:port devices connect to (default: mqtts://<first of --hosts>:8883)")
    p.add_argument("--bridge-url", metavar="URL", default="mqtts://localhost:8883",
                   help="mqtts://host:port the bridge connects to (default: %(default)s)")
    p.add_argument("--bridges", type=positive_int, default=1, metavar="N",
                   help="bridge replicas, each with its own MQTT users (default: %(default)s)")
    p.add_argument("--topic-prefix", default="devices", metavar="PREFIX",
                   help="the MQTT topic prefix (default: %(default)s)")
    p.add_argument("--cloud-ca-file", default="/etc/edgebridge/ca.crt", metavar="PATH",
                   help="where the cloud containers see DIR/ca.crt (default: %(default)s)")
    p.add_argument("--device-ca-file", default="/etc/edge-agent/ca.crt", metavar="PATH",
                   help="where a device keeps its ca.crt (default: %(default)s)")
    p.add_argument("--mosquitto-uid", type=int, default=1883, metavar="UID",
                   help="the user Mosquitto runs as, given DIR/mosquitto when run as root "
                   "(default: %(default)s, the broker image's)")

    p = sub.add_parser("add-devices", help="give new devices credentials; every existing secret stays",
                       description="Add devices to a deployment directory made by `deploy init`.")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the deployment directory")
    _device_args(p)

    p = sub.add_parser("rotate", help="new passwords for named devices or the deployment's own users",
                       description="New MQTT passwords for the named devices or bridge users "
                       "(bridge-uplink-N, bridge-downlink-N); every other secret stays.")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the deployment directory")
    p.add_argument("--users", type=_ids, required=True, metavar="NAME,NAME,...",
                   help="device ids, bridge users (bridge-uplink-N, bridge-downlink-N) or health, "
                   "whose password to renew")
    return parser


def _devices(args: argparse.Namespace) -> list[str]:
    ids = list(args.devices)
    if args.devices_file is not None:
        ids += _ids_of_file(args.devices_file)
    return ids


def main(argv: list[str], prog: str = "edgebridge deploy") -> int:
    args = _parser(prog).parse_args(argv)
    # imported once the arguments are good: cryptography is the [deploy] extra's
    from edgebridge.deploy import init as deploy_init
    from edgebridge.deploy import mqtt_part
    from edgebridge.deploy.kafka_part import KAFKA_UID

    try:
        if args.command == "init":
            hosts = tuple(args.hosts) if args.hosts is not None else deploy_init.DEFAULT_HOSTS
            plan = deploy_init.Plan(
                devices=tuple(_devices(args)), hosts=hosts, bridges=args.bridges,
                topic_prefix=args.topic_prefix,
                device_url=args.device_url or f"mqtts://{_url_host(hosts[0] if hosts else '')}:8883",
                bridge_url=args.bridge_url, cloud_ca_file=args.cloud_ca_file,
                device_ca_file=args.device_ca_file, mosquitto_uid=args.mosquitto_uid,
            )
            files = deploy_init.init(args.out, plan)
            print(f"{args.out}: {len(files)} files for {len(plan.devices)} devices and "
                  f"{plan.bridges} bridge replica(s); see docs/deploy.md for where each goes")
            if os.geteuid() != 0:
                # only root may give files away; the brokers' users must read their keys and passwords
                mosquitto, kafka = args.out / "mosquitto", args.out / "kafka"
                print(f"not root: give {mosquitto} and {kafka} to the brokers' users before they start: "
                      f"sudo chown -R {plan.mosquitto_uid}:{plan.mosquitto_uid} {mosquitto} && "
                      f"sudo chown -R {KAFKA_UID}:{KAFKA_UID} {kafka}")
        elif args.command == "add-devices":
            added = mqtt_part.add_devices(args.out, _devices(args))
            print(f"{args.out}: added {', '.join(added)}; {RELOAD}")
        else:
            rotated = mqtt_part.rotate(args.out, args.users)
            print(f"{args.out}: new passwords for {', '.join(rotated)}; install the new files where the "
                  f"old ones were, then {RELOAD}")
    except deploy_init.DeployError as exc:
        print(f"{prog} {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog} {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
