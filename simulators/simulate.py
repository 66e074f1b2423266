"""`edgebridge simulate`: simulated devices to point a deployment or an agent at.

Subcommands (one module each, imported only when chosen):

- ``serial``: a virtual serial sensor on a pty (:mod:`simulators.serial_sensor`) for an agent's
  ``[serial]`` source to read, with readings from a sensor model (:mod:`simulators.sensors`).
- ``fleet``: N virtual devices, each a real agent, in one process (:mod:`simulators.fleet`).
- ``audit``: a Kafka topic checked against what a fleet committed (:mod:`simulators.expectation`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from edgebridge.arguments import positive_float
from simulators.fleet_cli import add_audit_parser, add_fleet_parser, audit_main, fleet_main
from simulators.sensors import PROFILES, sensor
from simulators.serial_sensor import PROTOCOLS, SerialSensor, agent_serial_settings

__all__ = ["main"]

SERIAL_EXAMPLES = """\
examples:
  # a JSON-lines sensor at 2 readings/s behind ./sensor; point the agent's [serial] port at ./sensor
  edgebridge simulate serial --link ./sensor --protocol json --rate 2

  # CSV with a header, 5 % garbage lines, unplugged and replugged every 30 s, for 5 minutes
  edgebridge simulate serial --link ./sensor --protocol csv --garbage 0.05 --unplug-every 30 --duration 300

  # a faulty outdoor sensor whose day passes in 24 minutes (60 model seconds a second), reproducible
  edgebridge simulate serial --link ./sensor --protocol kv --profile faulty --speed 60 --seed 7

The agent config it needs is printed at start (units for json and kv, csv_columns for csv). Lines are
written only while a reader has the port open; the summary at the end counts good and garbage lines.
"""


def _unit_fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Simulated devices.",
        epilog="example:\n  edgebridge simulate serial --link ./sensor --protocol csv --garbage 0.05\n\n"
        f"Run `{prog} serial --help` (or fleet, audit) for its options and more examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="what", required=True, metavar="{serial,fleet,audit}")
    serial = sub.add_parser(
        "serial",
        prog=f"{prog} serial",
        help="a virtual serial sensor on a pty, for an agent's [serial] source",
        description="A virtual serial sensor: a pty behind a stable link, writing readings as lines.",
        epilog=SERIAL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serial.add_argument("--link", type=Path, required=True, help="the stable path to the pty (a symlink)")
    serial.add_argument("--protocol", choices=PROTOCOLS, default="json", help="line protocol (default json)")
    serial.add_argument("--rate", type=positive_float, default=1.0, help="lines per second (default 1)")
    serial.add_argument("--profile", choices=sorted(PROFILES), default="indoor",
                        help="sensor model (default indoor)")  # fmt: skip
    serial.add_argument("--speed", type=positive_float, default=1.0,
                        help="model seconds per real second (default 1: a day takes a day)")  # fmt: skip
    serial.add_argument("--garbage", type=_unit_fraction, default=0.0, help="fraction of garbage lines")
    serial.add_argument("--partial", type=_unit_fraction, default=0.0,
                        help="fraction of lines written in two pieces")  # fmt: skip
    serial.add_argument("--unplug-every", type=positive_float, default=None, metavar="SECONDS",
                        help="unplug and replug the pty this often")  # fmt: skip
    serial.add_argument("--seed", type=int, default=0, help="random seed: the same seed, the same lines")
    serial.add_argument("--duration", type=positive_float, default=None, metavar="SECONDS",
                        help="stop after this long (default: until Ctrl-C or SIGTERM)")  # fmt: skip
    add_fleet_parser(sub, prog)
    add_audit_parser(sub, prog)
    return parser


def _serial(args: argparse.Namespace) -> int:
    if args.garbage + args.partial > 1.0:
        print("--garbage and --partial add up to more than 1", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    model = sensor(args.profile, args.seed)
    dev = SerialSensor(args.link, args.protocol, model, seed=args.seed, step=args.speed / args.rate)
    settings = agent_serial_settings(args.link.absolute(), args.protocol)
    print(f"serial sensor at {settings['port']} ({args.protocol}, {args.profile}); agent config:")
    print("[serial]")
    for key in ("enabled", "port", "protocol"):
        value = settings[key]
        print(f"{key} = {str(value).lower() if isinstance(value, bool) else repr(value)}".replace("'", '"'))
    table = "csv_columns" if args.protocol == "csv" else "units"
    print(f"[serial.{table}]")
    for key, value in settings[table].items():
        print(f'{key} = "{value}"')
    sys.stdout.flush()
    try:
        stats = dev.run(args.rate, args.duration, args.garbage, args.partial, args.unplug_every, stop)
    finally:
        dev.close()
    print(f"wrote {stats.good} good lines, {stats.garbage} garbage lines; {stats.unplugs} unplugs")
    return 0


def main(argv: Sequence[str], prog: str = "edgebridge simulate") -> int:
    args = _parser(prog).parse_args(list(argv))
    return {"serial": _serial, "fleet": fleet_main, "audit": audit_main}[args.what](args)
