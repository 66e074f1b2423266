"""The options of `edgebridge simulate fleet` and `edgebridge simulate audit`, and their mains."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from edgebridge.arguments import positive_float, positive_int
from simulators.fleet_faults import KINDS, parse_kinds
from simulators.sensors import PROFILES

__all__ = ["add_audit_parser", "add_fleet_parser", "audit_main", "fleet_main"]

FLEET_EXAMPLES = """\
examples:
  # 200 devices at 1 reading/s each for 5 minutes, started over 20 s, against a local broker
  edgebridge simulate fleet --url mqtt://127.0.0.1:1883 --devices 200 --duration 300 --ramp-up 20

  # per-device credentials from a pattern, over TLS, 100 readings each, then an audit of Kafka
  edgebridge simulate fleet --url mqtts://broker.example:8883 --ca-file ca.pem --devices 50 \\
      --username '{device}' --password 'secret-{device}' --events 100 --expect fleet.json
  edgebridge simulate audit --expect fleet.json --bootstrap kafka.example:9092

  # passwords from a file of device:password lines, a faulty sensor model, reproducible
  edgebridge simulate fleet --url mqtt://broker:1883 --devices 10 --id-prefix pump- \\
      --passwords devices.txt --profile faulty --seed 7 --duration 60

  # 1,000 devices in one process, driven by 4 shared loops instead of 1,000 threads
  edgebridge simulate fleet --url mqtt://broker:1883 --devices 1000 --procs 1 --loops 4 \\
      --duration 300 --ramp-up 30 --expect fleet.json

  # faults on a seeded schedule, about one every 10 s per process, each logged with its time
  edgebridge simulate fleet --url mqtt://broker:1883 --devices 100 --duration 600 \\
      --faults all --fault-every 10 --seed 3 --expect fleet.json

Faults (--faults): disconnect (a tenth of the devices drop their connection at once), burst (a tenth
read 10x faster for 5 s), clock (a device's readings stamped 3 h ahead), malformed (a payload that is
not an event on a device's topic: the bridge dead-letters it), duplicate (a device's newest outbox
row published again: the enricher drops it), reflash (a device stopped, its state dir wiped and started
again: a new epoch, seqs from 1; both lives expected), diskfull (a device's disk full for 5 s: its
outbox refuses new events, counted and announced as a gap; refused events are not expected). The
expectation file follows what each device did; the audit reads it per fault kind.

Each device is a real agent (its own outbox under --state-dir, MQTT session, credentials; receipts
on): the pipeline must run a bridge that sends receipts. A line per second on stderr shows devices
started and connected, readings committed, receipted (deleted from the outboxes), the backlog and the
rate; Ctrl-C or SIGTERM stops the agents (each drains as on a stop) and prints the summary.
"""

AUDIT_EXAMPLES = """\
example:
  edgebridge simulate audit --expect fleet.json --bootstrap 127.0.0.1:9092 --topic iot.events.processed

Reads the topic (read committed) from the beginning to its end when called, and reports per device of
the expectation file the seqs lost (committed, not announced as a gap, not in the topic), duplicated
and unexpected; then per fault kind of the run what the faulted devices' events became: refused by a
full disk, wiped by a reflash, held through the fault, lost. Exit status 0 when nothing is lost or
duplicated, 1 otherwise.
"""


def _passwords(text: str) -> dict[str, str]:
    out = {}
    for n, line in enumerate(Path(text).read_text().splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            device, colon, password = line.strip().partition(":")
            if not colon or not device or not password:
                raise argparse.ArgumentTypeError(f"{text}:{n}: expected device:password")
            out[device] = password
    return out


def _loops(text: str) -> int:
    return 0 if text.strip() == "0" else positive_int(text)


def _fault_kinds(text: str) -> tuple[str, ...]:
    try:
        return parse_kinds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_fleet_parser(sub: Any, prog: str) -> None:
    p = sub.add_parser(
        "fleet", prog=f"{prog} fleet", help="N virtual devices, each a real agent, against a broker",
        description="A fleet of virtual devices in one process, each running the agent's own code.",
        epilog=FLEET_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", required=True, help="the broker: mqtt://host:port or mqtts://host:port")
    p.add_argument("--ca-file", type=Path, help="CA bundle for mqtts:// (system CAs when unset)")
    p.add_argument("--cert-file", type=Path, help="client certificate (with --key-file)")
    p.add_argument("--key-file", type=Path, help="client key")
    p.add_argument("--username", help="username pattern, {device} replaced by the device id")
    p.add_argument("--password", help="password pattern, {device} replaced by the device id")
    p.add_argument("--passwords", type=_passwords, default={}, metavar="FILE",
                   help="lines device:password (wins over --password)")  # fmt: skip
    p.add_argument("--devices", type=positive_int, default=10, help="how many devices (default 10)")
    p.add_argument("--id-prefix", default="sim-", help="device ids are PREFIX + number (default sim-)")
    p.add_argument("--rate", type=positive_float, default=1.0, help="readings/s per device (default 1)")
    end = p.add_mutually_exclusive_group()
    end.add_argument("--duration", type=positive_float, metavar="SECONDS", help="stop after this long")
    end.add_argument("--events", type=positive_int, default=0,
                     help="readings per device; stop when all are receipted")  # fmt: skip
    p.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                   help="with --events: give up after this long")  # fmt: skip
    p.add_argument("--drain", type=float, default=30.0, metavar="SECONDS",
                   help="after --duration: wait this long at most, readings stopped, for the outboxes "
                        "to empty (default 30)")  # fmt: skip
    p.add_argument("--ramp-up", type=float, default=0.0, metavar="SECONDS",
                   help="start the devices evenly over this long (default 0)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed of the sensor models")
    p.add_argument("--profile", choices=sorted(PROFILES), default="indoor",
                   help="sensor model (default indoor)")  # fmt: skip
    p.add_argument("--state-dir", type=Path, help="where the outboxes go (default: a temp dir, removed)")
    p.add_argument("--topic-prefix", default="devices", help="MQTT topic prefix (default devices)")
    p.add_argument("--expect", type=Path, metavar="FILE", help="write what each device committed here")
    p.add_argument("--procs", type=positive_int, default=os.cpu_count() or 1,
                   help="processes the devices are split among (default: one per core)")  # fmt: skip
    p.add_argument("--faults", type=_fault_kinds, default=(), metavar="KINDS",
                   help="inject faults on a seeded schedule: all, or some of " + ",".join(KINDS))  # fmt: skip
    p.add_argument("--fault-every", type=positive_float, default=30.0, metavar="SECONDS",
                   help="mean seconds between two faults, per process (default 30)")  # fmt: skip
    p.add_argument("--loops", type=_loops, default=0, metavar="K",
                   help="drive each process's devices from K shared loops (one thread each, stepping a "
                        "device only when it has work) instead of a thread per device (0, the default)")
    p.add_argument("--outbox-sync", choices=("FULL", "NORMAL"), default="FULL",
                   help="the outboxes' SQLite synchronous setting: FULL (default, as on a device) fsyncs "
                        "each commit; NORMAL leaves it to the WAL checkpoints, for many devices on one "
                        "disk")  # fmt: skip
    p.add_argument("--outbox-policy", choices=("reject_new", "drop_oldest"), default="reject_new",
                   help="the outboxes' policy at their bound (a full disk): reject_new refuses new events "
                        "(default), drop_oldest evicts committed ones; both announce a gap")  # fmt: skip
    p.add_argument("--log-level", default="WARNING", help="the agents' log level (default WARNING)")


def fleet_main(args: argparse.Namespace) -> int:
    from edgebridge.logs import setup_logging
    from simulators.fleet import FleetOptions
    from simulators.fleet_runner import run_fleet

    setup_logging(args.log_level)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    mqtt = {k: str(v) for k in ("ca_file", "cert_file", "key_file") if (v := getattr(args, k)) is not None}
    options = FleetOptions(
        url=args.url, devices=args.devices, rate=args.rate, id_prefix=args.id_prefix,
        duration=args.duration or args.timeout, events=args.events, ramp_up=args.ramp_up, seed=args.seed,
        profile=args.profile, topic_prefix=args.topic_prefix, username=args.username,
        password=args.password, passwords=args.passwords, mqtt=mqtt, state_dir=args.state_dir,
        faults=args.faults, fault_every=args.fault_every, drain=args.drain, policy=args.outbox_policy,
        loops=args.loops, synchronous=args.outbox_sync,
    )
    totals = run_fleet(options, stop, procs=args.procs, expect=args.expect, log_level=args.log_level)
    return 1 if totals.failed else 0


def add_audit_parser(sub: Any, prog: str) -> None:
    p = sub.add_parser(
        "audit", prog=f"{prog} audit", help="check a Kafka topic against a fleet's expectation file",
        description="What a fleet committed (--expect of `fleet`) against what a Kafka topic holds.",
        epilog=AUDIT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--expect", type=Path, required=True, metavar="FILE", help="the fleet's expectation file")
    p.add_argument("--bootstrap", metavar="HOST:PORT",
                   help="Kafka bootstrap servers (default: the configuration's [kafka] bootstrap)")
    p.add_argument("--config", type=Path, metavar="PATH",
                   help="TOML file whose [kafka] section (bootstrap, librdkafka: SASL, TLS) the audit's "
                   "consumer uses, a component's own file too; EDGEBRIDGE_KAFKA_* variables on top")
    p.add_argument("--topic", default="iot.events.processed", help="default iot.events.processed")
    p.add_argument("--sqlite", type=Path, metavar="DB",
                   help="also check the readings table of this SQLite sink database (readings only: a "
                   "run with gap events finds their seqs missing there)")


def audit_main(args: argparse.Namespace) -> int:
    """``edgebridge audit --expect``'s reading and check (:mod:`edgebridge.ops.audit`), and a sink's."""
    from edgebridge.ops.audit import expectation_checks, passed
    from edgebridge.ops.config import config_or_exit_code
    from edgebridge.ops.expectation import Expectation, check_keys, format_checks, format_faults, totals
    from edgebridge.ops.reading import Position, read

    # the operator's tools' reading: the [kafka] of any component's file, the environment on top
    prog = "edgebridge simulate audit"
    config = config_or_exit_code(args, prog)
    if isinstance(config, int):
        return config
    try:
        expectation = Expectation.read(args.expect)
    except ValueError as exc:
        print(f"{prog}: --expect {exc}", file=sys.stderr)
        return 2
    client = config.kafka.client_config({"bootstrap.servers": args.bootstrap} if args.bootstrap else {})
    records = read(client, args.topic, Position("beginning"))
    results = [(args.topic, expectation_checks(records, expectation))]
    if args.sqlite is not None:
        results.append((str(args.sqlite), check_keys(expectation, _sink_keys(args.sqlite))))
    for source, checks in results:
        print(f"{source}:\n{format_checks(checks)}")
        if expectation.faults:
            print(format_faults(expectation, checks))
    ok = True
    for source, checks in results:
        total = totals(checks)
        # duplicates are allowed in the raw topic only, as for `edgebridge audit`
        ok = ok and passed(total["lost"], total["duplicated"], source == config.topics.raw)
    return 0 if ok else 1


def _sink_keys(db: Path) -> list[tuple[str, str, int]]:
    """(device, epoch, seq) of every row of a SQLite sink's readings table, opened read-only."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return list(conn.execute("SELECT device_id, epoch, seq FROM readings"))
