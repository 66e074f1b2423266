"""``edgebridge tail TOPIC``: the records of a topic, pretty or as JSON lines, read committed.

A record with the dead-letter headers (``dlq_reason``, :mod:`edgebridge.deadletters`) shows its reason,
its error and where it came from (component, original topic/partition/offset or MQTT topic). ``TOPIC``
is a Kafka topic name or one of the ``[topics]`` fields (``raw``, ``deadletter``, ``commands`` ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from typing import Any

from edgebridge import deadletters as dlq
from edgebridge.arguments import device_id, positive_int
from edgebridge.config import add_config_arguments
from edgebridge.ops.config import config_or_exit_code
from edgebridge.ops.reading import Position, Record, position_argument, read
from edgebridge.topics import KafkaTopics

__all__ = ["as_json", "as_text", "main", "topic_name"]

EXAMPLES = """\
examples:
  edgebridge tail raw --from beginning                 every committed raw event so far
  edgebridge tail iot.events.processed --device dev-1 --follow
  edgebridge tail aggregates --device dev-1 --json      its windows' figures (the latest of a key last)
  edgebridge tail deadletter --from 1h --json          the last hour's dead letters, one JSON a line
  edgebridge tail raw --from 2026-12-06T01:00:00Z      from a time (each partition's first offset after)
  edgebridge tail raw --from 1:1200                    partition 1 from offset 1200
  EDGEBRIDGE_KAFKA_BOOTSTRAP=kafka:9093 edgebridge tail deadletter --config /etc/edgebridge/ops.toml
"""


def topic_name(text: str, topics: KafkaTopics) -> str:
    """A ``[topics]`` field's configured name (``raw`` -> ``iot.events.raw``), else ``text`` itself."""
    return str(getattr(topics, text)) if text in KafkaTopics.__dataclass_fields__ else text


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "backslashreplace")


def origin(record: Record) -> str:
    """Where a dead letter came from: ``enricher iot.events.raw/0/42``, ``bridge devices/x/events``."""
    parts = [record.header(dlq.COMPONENT) or "?"]
    if record.header(dlq.ORIGINAL_TOPIC) is not None:
        parts.append(f"{record.header(dlq.ORIGINAL_TOPIC)}/{record.header(dlq.ORIGINAL_PARTITION)}/"
                     f"{record.header(dlq.ORIGINAL_OFFSET)}")
    if record.header(dlq.MQTT_TOPIC) is not None:
        parts.append(record.header(dlq.MQTT_TOPIC) or "")
    return " ".join(parts)


def as_json(record: Record) -> dict[str, Any]:
    """One record as a JSON object: the value parsed when it is JSON, else its text."""
    value: Any = _text(record.value)
    with contextlib.suppress(ValueError, UnicodeDecodeError):  # not JSON: its text
        value = json.loads(record.value) if record.value else None
    out: dict[str, Any] = {
        "topic": record.topic, "partition": record.partition, "offset": record.offset,
        "timestamp": dlq.rfc3339(record.timestamp_ms / 1000) if record.timestamp_ms else None,
        "key": None if record.key is None else _text(record.key),
        "headers": {name: _text(v) for name, v in record.headers.items()},
        "value": value,
    }
    if dlq.REASON in record.headers:
        out["deadletter"] = {"reason": record.header(dlq.REASON),
                             "error_class": record.header(dlq.ERROR_CLASS),
                             "error": record.header(dlq.ERROR), "origin": origin(record)}
    return out


def as_text(record: Record, width: int = 200) -> str:
    """One record as a line (two for a dead letter: the reason, error and origin under it)."""
    when = dlq.rfc3339(record.timestamp_ms / 1000) if record.timestamp_ms else "-"
    value = _text(record.value)
    if len(value) > width:
        value = value[:width] + f"... ({len(record.value or b'')} bytes)"
    line = f"{when} {record.topic}[{record.partition}]@{record.offset} {_text(record.key) or '-'} {value}"
    if dlq.REASON in record.headers:
        line += (f"\n    {record.header(dlq.REASON)}: {record.header(dlq.ERROR_CLASS)}: "
                 f"{record.header(dlq.ERROR)}  (from {origin(record)})")
    return line



def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print the committed records of a Kafka topic (read_committed); on the dead-letter "
        "topic, each record's reason, error and origin.")
    add_config_arguments(parser)
    parser.add_argument("topic", help="a topic name, or a [topics] field: raw, processed, deadletter, "
                        "alerts, devices, commands, command_responses, status, aggregates")
    parser.add_argument("--device", type=device_id, help="only the records of this device (the key, or "
                        "a key under it: iot.aggregates' DEVICE/MEASUREMENT/WINDOW)")
    parser.add_argument("--from", dest="start", type=position_argument, default=Position("beginning"),
                        metavar="WHERE", help="beginning (default), end, OFFSET, PARTITION:OFFSET, "
                        "an RFC 3339 time or an age (10m, 2h)")
    parser.add_argument("--follow", "-f", action="store_true", help="go on with new records until Ctrl-C")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--limit", type=positive_int, help="stop after this many records")
    args = parser.parse_args(argv)
    config = config_or_exit_code(args, prog)
    if isinstance(config, int):
        return config
    topic = topic_name(args.topic, config.topics)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_a: stop.set())
    key = args.device.encode() if args.device else None
    # a device id has no "/", so a key under it (an aggregates window's) is unambiguous
    under = key + b"/" if key is not None else None
    shown = 0
    try:
        for record in read(config.kafka.client_config({}), topic, args.start, follow=args.follow, stop=stop):
            if key is not None and record.key != key and not (record.key or b"").startswith(under or b""):
                continue
            print(json.dumps(as_json(record), ensure_ascii=False) if args.json else as_text(record),
                  flush=args.follow)
            shown += 1
            if args.limit and shown >= args.limit:
                break
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `| head`: the reader is gone, which is fine
        sys.stderr.close()
        return 0
    except Exception as exc:  # EdgeBridgeError, KafkaException: one line for the operator
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0
