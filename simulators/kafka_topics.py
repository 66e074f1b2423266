"""Create the Kafka topics of the wire contract with the settings each one needs.

The registry and the enricher's dedup state are compacted (only the latest value per key matters and
must be kept forever); the state topic has as many partitions as the raw topic, because the enricher
restores a raw partition's dedup state from the state partition of the same number.
"""

from __future__ import annotations

from edgebridge.topics import KafkaTopics

__all__ = ["ensure_topics"]


def ensure_topics(bootstrap: str, topics: KafkaTopics | None = None, partitions: int = 3) -> list[str]:
    """Create whichever contract topics do not exist yet; return the names created."""
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
