"""The bridge: MQTT to Kafka uplink acknowledging only what Kafka has, and the command downlink.

Modules, one concept each: ``uplink`` (the loop and its commit order), ``mqtt_source`` (persistent QoS 1
session, manual acks, connection generations), ``ack_frontier`` (in-order acks), ``kafka_sink``
(idempotent producer, re-produce on failure), ``validate`` and ``deadletter`` (what a message becomes),
``routes`` (topics and filters), ``downlink`` (commands, offsets after PUBACK), ``service`` and ``cli``.
"""

from bridge.config import BridgeConfig, DownlinkConfig, UplinkConfig
from bridge.metrics import BridgeMetrics

__all__ = ["BridgeConfig", "BridgeMetrics", "DownlinkConfig", "UplinkConfig"]
