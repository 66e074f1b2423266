"""`edgebridge topics create`: the Kafka topics of the wire contract, with the settings each one needs.

The registry and the enricher's dedup state are compacted (only the latest value per key matters and
must be kept forever); the state topic has as many partitions as the raw topic, because the enricher
restores a raw partition's dedup state from the state partition of the same number.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edgebridge.arguments import positive_int
from edgebridge.topics import KafkaTopics

__all__ = ["ensure_topics", "main"]


def ensure_topics(bootstrap: str, topics: KafkaTopics | None = None, partitions: int = 3) -> list[str]:
    """Create whichever contract topics do not exist yet; return the names created."""
    # Imported here: edgebridge/ is also installed on devices, which have no confluent-kafka.
    from confluent_kafka.admin import AdminClient, NewTopic

    t = topics or KafkaTopics()
    compacted = {"cleanup.policy": "compact"}
    wanted = {
        t.raw: (partitions, {}),
        t.processed: (partitions, {}),
        t.deadletter: (1, {}),
        t.alerts: (1, {}),
        t.devices: (1, compacted),
        t.commands: (partitions, {}),
        t.command_responses: (1, {}),
        t.enricher_state: (partitions, compacted),
        t.status: (1, {}),
    }
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(name, num_partitions=n, replication_factor=1, config=config)
           for name, (n, config) in wanted.items() if name not in existing]
    if new:
        for future in admin.create_topics(new).values():
            future.result(timeout=30)
    return [n.topic for n in new]


def main(argv: Sequence[str], prog: str = "edgebridge topics") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Create the Kafka topics of the wire contract that do not exist yet (idempotent): "
        "compacted iot.devices and iot.enricher.state, the state topic partitioned like the raw topic.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="{create}")
    create = sub.add_parser("create", help="create the missing topics")
    create.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    create.add_argument("--partitions", type=positive_int, default=3,
                        help="partitions of the raw, processed, commands and state topics (default 3)")
    args = parser.parse_args(list(argv))
    try:
        created = ensure_topics(args.bootstrap, partitions=args.partitions)
    except Exception as exc:  # librdkafka's KafkaException and timeouts: one line for the operator
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    return 0
