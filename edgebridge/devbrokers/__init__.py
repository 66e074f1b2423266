"""Real local brokers for development and tests: Mosquitto and Kafka (KRaft, one node or a
replicated cluster), no Docker.

Used by `edgebridge brokers up | down | status | env`, by the pytest session fixtures and by the
demo. Each broker is a :class:`ManagedBroker` with start/stop/kill/pause/resume for fault injection.
"""

from edgebridge.devbrokers.base import ManagedBroker
from edgebridge.devbrokers.kafka import Kafka, KafkaOptions
from edgebridge.devbrokers.kafka_cluster import KafkaCluster
from edgebridge.devbrokers.local import LocalBrokers, default_state_dir
from edgebridge.devbrokers.mosquitto import Mosquitto, MosquittoOptions

__all__ = [
    "Kafka",
    "KafkaCluster",
    "KafkaOptions",
    "LocalBrokers",
    "ManagedBroker",
    "Mosquitto",
    "MosquittoOptions",
    "default_state_dir",
]
