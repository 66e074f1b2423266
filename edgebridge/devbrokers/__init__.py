"""Real local brokers for development and tests: Mosquitto and single-node Kafka (KRaft), no Docker.

Used by `edgebridge brokers up | down | status | env`, by the pytest session fixtures and by the
demo. Each broker is a :class:`ManagedBroker` with start/stop/kill/pause/resume for fault injection.
"""

from edgebridge.devbrokers.base import ManagedBroker
from edgebridge.devbrokers.kafka import Kafka, KafkaOptions
from edgebridge.devbrokers.local import LocalBrokers, default_state_dir
from edgebridge.devbrokers.mosquitto import Mosquitto, MosquittoOptions

__all__ = [
    "Kafka",
    "KafkaOptions",
    "LocalBrokers",
    "ManagedBroker",
    "Mosquitto",
    "MosquittoOptions",
    "default_state_dir",
]
