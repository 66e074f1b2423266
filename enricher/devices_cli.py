"""``edgebridge devices put | get | list | import | delete``: manage the compacted device registry topic.

A device record is the JSON object described in :mod:`enricher.registry`. ``import`` reads a JSON file
(a list of objects with an ``id``, or an object mapping ids to devices) or a CSV file with the columns
``id,name,site,location,model,calibration,thresholds,units`` (the last three as JSON text). Every record
is validated before anything is written; writes are acknowledged by all in-sync replicas (idempotent
producer) before the command returns 0. The running enrichers follow the topic, no restart needed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebridge.arguments import device_id, json_object
from edgebridge.config import add_config_arguments, config_or_exit_code
from edgebridge.errors import EdgeBridgeError
from edgebridge.settings import KafkaSettings
from edgebridge.topics import KafkaTopics

__all__ = ["DevicesConfig", "load_file", "main"]


@dataclass(frozen=True)
class DevicesConfig:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: KafkaTopics = field(default_factory=KafkaTopics)


def load_file(path: Path) -> dict[str, dict[str, Any]]:
    """Devices of a CSV or JSON file, by id (not yet validated)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        out: dict[str, dict[str, Any]] = {}
        for n, row in enumerate(csv.DictReader(text.splitlines()), start=2):
            deviceid = (row.pop("id", None) or "").strip()
            if not deviceid:
                raise EdgeBridgeError(f"{path}:{n}: no id")
            device: dict[str, Any] = {}
            for key, cell in row.items():
                if cell is None or cell.strip() == "":
                    continue
                if key in ("calibration", "thresholds", "units"):
                    try:
                        device[key] = json.loads(cell)
                    except json.JSONDecodeError as exc:
                        raise EdgeBridgeError(f"{path}:{n}: {key} is not JSON: {exc}") from exc
                else:
                    device[key] = cell
            out[deviceid] = device
        return out
    data = json.loads(text)
    if isinstance(data, dict):
        return {str(k): v for k, v in data.items()}
    if isinstance(data, list):
        return {str(d.pop("id")): d for d in data if isinstance(d, dict) and "id" in d}
    raise EdgeBridgeError(f"{path}: expected a JSON object or list")


def _write(config: DevicesConfig, records: dict[str, bytes | None]) -> None:
    from confluent_kafka import Producer

    errors: list[str] = []

    def report(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer(config.kafka.client_config({"enable.idempotence": True, "acks": "all"}))
    for deviceid, value in records.items():
        producer.produce(config.topics.devices, value, deviceid.encode(), on_delivery=report)
        producer.poll(0)
    if producer.flush(30) or errors:
        raise EdgeBridgeError(f"registry write failed: {errors[:3] or 'not delivered in 30 s'}")


def _encode(deviceid: str, obj: Any) -> bytes:
    from enricher.registry import parse_device

    return json.dumps(parse_device(deviceid, obj).to_json(), sort_keys=True).encode()


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Manage the device registry (the compacted "
                                     "iot.devices topic) that the enricher joins events with.")
    add_config_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="{put,get,list,import,delete}")
    put = sub.add_parser("put", help="create or replace one device")
    put.add_argument("id", type=device_id)
    put.add_argument("--json", type=json_object, help="the whole device record as a JSON object")
    for name in ("name", "site", "location", "model"):
        put.add_argument(f"--{name}")
    sub.add_parser("get", help="print one device as JSON").add_argument("id", type=device_id)
    sub.add_parser("list", help="print every device, one JSON object per line")
    sub.add_parser("import", help="put every device of a CSV or JSON file").add_argument("file", type=Path)
    sub.add_parser("delete", help="remove a device (a tombstone)").add_argument("id", type=device_id)
    args = parser.parse_args(argv)
    config = config_or_exit_code(DevicesConfig, args, prog)
    if isinstance(config, int):
        return config
    if args.command is None:
        parser.print_usage(sys.stderr)
        return 2
    try:
        return _run(config, args)
    except (EdgeBridgeError, OSError, json.JSONDecodeError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


def _run(config: DevicesConfig, args: argparse.Namespace) -> int:
    from enricher.registry import read_topic

    if args.command == "put":
        obj = dict(args.json or {})
        for name in ("name", "site", "location", "model"):
            if getattr(args, name) is not None:
                obj[name] = getattr(args, name)
        _write(config, {args.id: _encode(args.id, obj)})
    elif args.command == "import":
        records = {d: _encode(d, obj) for d, obj in load_file(args.file).items()}
        _write(config, dict(records))
        print(f"imported {len(records)} devices")
    elif args.command == "delete":
        _write(config, {args.id: None})
    else:
        devices = read_topic(config.kafka.client_config({}), config.topics.devices)
        if args.command == "get":
            if args.id not in devices:
                print(f"no device {args.id!r}", file=sys.stderr)
                return 1
            print(devices[args.id].decode())
        else:
            for deviceid in sorted(devices):
                print(json.dumps({"id": deviceid, **json.loads(devices[deviceid])}, sort_keys=True))
    return 0
