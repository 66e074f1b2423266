"""``edgebridge command DEVICE NAME [KEY=VALUE ...] --wait``: one command to a device, and its answer.

The request goes to ``iot.commands`` as the bridge's downlink carries it (:mod:`bridge.downlink`): key =
the device id, value = ``{"id", "command", "args", "expires"}`` (:mod:`edge_agent.commands`), headers
``correlation_id`` (= the id; the MQTT 5 Correlation Data of the command and of its reply) and
``expires_ms`` (the deadline in Unix ms: the bridge turns it into the MQTT 5 Message Expiry Interval,
so a device offline until after it never gets the command, and the agent refuses a command past its
``expires`` in any case). With ``--wait`` the reply is read from ``iot.commands.responses``, the record
whose ``correlation_data`` header is the id; the reader is placed at the topic's end *before* the
command is sent, so a fast reply cannot be missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

from edgebridge.arguments import device_id, json_object, positive_float
from edgebridge.config import add_config_arguments
from edgebridge.deadletters import rfc3339
from edgebridge.errors import EdgeBridgeError
from edgebridge.ops.config import OpsConfig, config_or_exit_code

__all__ = ["EXIT_REFUSED", "EXIT_TIMEOUT", "main", "request"]

EXIT_REFUSED = 1  # the device answered ok: false (or an error of ours)
EXIT_TIMEOUT = 3  # no answer within --timeout

EXAMPLES = """\
examples:
  edgebridge command dev-1 ping --wait
  edgebridge command dev-1 set-interval seconds=5 --wait --timeout 20
  edgebridge command dev-1 set-interval --args '{"seconds": 0.5}' --wait --json
  edgebridge command dev-1 flush --expires 3600          send, do not wait; void after an hour

The agent's commands: ping, status, set-interval seconds=N, flush (docs/operations.md).
exit status: 0 the device answered ok, 1 it answered an error (or sending failed), 2 a usage or
configuration error, 3 no answer within --timeout (the device may still run the command later, until
its --expires).
"""


def _arg(text: str) -> tuple[str, Any]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE (VALUE as JSON when it parses)")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a plain word: a string


def request(name: str, args: dict[str, Any], expires_in: float, now: float | None = None) -> dict[str, Any]:
    """The command's JSON body, with a fresh id and its absolute ``expires``."""
    now = time.time() if now is None else now
    return {"id": f"cli-{uuid.uuid4().hex}", "command": name, "args": args,
            "expires": rfc3339(now + expires_in)}


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Send a command to a device through iot.commands; with --wait, print its answer "
        "from iot.commands.responses.")
    add_config_arguments(parser)
    parser.add_argument("device", type=device_id)
    parser.add_argument("name", help="the command: ping, status, set-interval, flush")
    parser.add_argument("params", nargs="*", type=_arg, metavar="KEY=VALUE", help="the command's args")
    parser.add_argument("--args", type=json_object, help="the command's args as one JSON object")
    parser.add_argument("--wait", action="store_true", help="wait for the device's answer and print it")
    parser.add_argument("--timeout", type=positive_float, default=10.0,
                        help="seconds to wait for the answer (default 10)")
    parser.add_argument("--expires", type=positive_float, default=300.0, metavar="SECONDS",
                        help="the command is void this many seconds after it is sent: a device that comes "
                        "back later does not run it (default 300)")
    parser.add_argument("--json", action="store_true", help="print the answer's JSON as it came")
    args = parser.parse_args(argv)
    config = config_or_exit_code(args, prog)
    if isinstance(config, int):
        return config
    params = {**(args.args or {}), **dict(args.params)}
    body = request(args.name, params, args.expires)
    try:
        return _run(config, args, body)
    except KeyboardInterrupt:
        return EXIT_TIMEOUT
    except Exception as exc:  # EdgeBridgeError, KafkaException: one line for the operator
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_REFUSED


def _run(config: OpsConfig, args: argparse.Namespace, body: dict[str, Any]) -> int:
    from confluent_kafka import Consumer, Producer, TopicPartition

    client = config.kafka.client_config({})
    cid = body["id"]
    consumer = None
    if args.wait:
        topic = config.topics.command_responses
        consumer = Consumer({**client, "group.id": f"edgebridge-command-{cid}", "enable.auto.commit": False,
                             "isolation.level": "read_committed"})
        meta = consumer.list_topics(topic, timeout=15).topics.get(topic)
        if meta is None or meta.error is not None:
            consumer.close()
            raise EdgeBridgeError(f"topic {topic!r} does not exist")
        # the end of each partition now, before the command goes: the reply comes after it
        consumer.assign([TopicPartition(topic, p, consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=15)[1]) for p in meta.partitions])
    try:
        errors: list[str] = []
        producer = Producer(config.kafka.client_config({"enable.idempotence": True, "acks": "all"}))
        deadline_ms = int(time.time() * 1000 + args.expires * 1000)
        producer.produce(config.topics.commands, json.dumps(body).encode(), args.device.encode(),
                         headers=[("correlation_id", cid.encode()), ("expires_ms", str(deadline_ms).encode()),
                                  ("content-type", b"application/json")],
                         on_delivery=lambda err, _msg: errors.append(str(err)) if err else None)
        if producer.flush(30) or errors:
            raise EdgeBridgeError(f"the command was not written to {config.topics.commands!r}: "
                                  f"{errors[0] if errors else 'not delivered in 30 s'}")
        print(f"sent {args.name} to {args.device} (id {cid}, expires {body['expires']})", file=sys.stderr)
        if consumer is None:
            print(cid)
            return 0
        return _wait(consumer, cid, args)
    finally:
        if consumer is not None:
            consumer.close()


def _wait(consumer: Any, cid: str, args: argparse.Namespace) -> int:
    end = time.monotonic() + args.timeout
    want = cid.encode()
    while time.monotonic() < end:
        msg = consumer.poll(min(0.2, max(0.0, end - time.monotonic())))
        if msg is None or msg.error() is not None:
            continue
        if dict(msg.headers() or []).get("correlation_data") != want:
            continue  # another command's answer
        raw = msg.value() or b""
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if args.json or not isinstance(answer, dict):
            print(raw.decode("utf-8", "backslashreplace"))
        elif answer.get("ok"):
            print(json.dumps(answer.get("result"), indent=2, sort_keys=True))
        else:
            print(f"{args.device} refused {args.name}: {answer.get('error')}", file=sys.stderr)
        return 0 if isinstance(answer, dict) and answer.get("ok") is True else EXIT_REFUSED
    print(f"no answer from {args.device} within {args.timeout:g} s (the command stays valid until "
          "its expiry; a device that comes back before then still runs it)", file=sys.stderr)
    return EXIT_TIMEOUT
