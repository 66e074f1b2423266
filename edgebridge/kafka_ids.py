"""The Kafka consumer groups and transactional ids of the components, by default: one place for each.

The components take their defaults from here, and `edgebridge topics acls` (:mod:`edgebridge.kafka_acls`)
grants exactly these, so an ACL cannot drift from the id a component really uses (and edgebridge/,
installed on devices too, never imports a component to learn them).
"""

from __future__ import annotations

__all__ = [
    "AGGREGATOR_GROUP",
    "AGGREGATOR_STATE_READER_GROUP",
    "AGGREGATOR_TRANSACTIONAL_ID_PREFIX",
    "BRIDGE_DOWNLINK_GROUP",
    "ENRICHER_GROUP",
    "ENRICHER_STATE_READER_GROUP",
    "ENRICHER_TRANSACTIONAL_ID_PREFIX",
    "REGISTRY_READER_GROUP",
    "REPLAY_PREFIX",
    "SINK_GROUP",
]

BRIDGE_DOWNLINK_GROUP = "edgebridge-bridge-downlink"  # the bridge's consumer of iot.commands
ENRICHER_GROUP = "edgebridge-enricher"  # the enricher's consumer of iot.events.raw
# the enricher's transactional.id is "{prefix}-{instance_id}"
ENRICHER_TRANSACTIONAL_ID_PREFIX = "edgebridge-enricher"
# assigned, never committed: only named because librdkafka looks up a group's coordinator
ENRICHER_STATE_READER_GROUP = "edgebridge-enricher-state-reader"
REGISTRY_READER_GROUP = "edgebridge-registry-reader"
# `edgebridge replay`: its consumer group and transactional id are "{prefix}-{name}", never the enricher's
REPLAY_PREFIX = "edgebridge-replay"
SINK_GROUP = "edgebridge-sink"  # a prefix in the ACLs: one sink per database has its own group
# the aggregator (enricher.aggregates): its consumer of iot.events.processed, its transactional.id
# "{prefix}-{instance_id}", and the assigned reader of its window state (never committed)
AGGREGATOR_GROUP = "edgebridge-aggregator"
AGGREGATOR_TRANSACTIONAL_ID_PREFIX = "edgebridge-aggregator"
AGGREGATOR_STATE_READER_GROUP = "edgebridge-aggregator-state-reader"
