"""Every count an audit of the bridge needs, on the bridge's own registry.

Audit identities (uplink): every QoS 1 message received is eventually acknowledged, or dropped as
stale (its connection ended first: the broker redelivers it), or still in flight::

    received == acked + stale_acks_dropped + in_flight        (per process lifetime)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edgebridge.metrics import new_registry

__all__ = ["BridgeMetrics"]

_P = "edgebridge_bridge_"


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else new_registry()
        r = self.registry
        self.received = Counter(_P + "received_messages", "MQTT messages received", registry=r)
        self.received_bytes = Counter(_P + "received_bytes", "MQTT payload bytes received", registry=r)
        self.produced = Counter(_P + "produced_records", "Kafka records confirmed by their delivery report",
                                ["topic"], registry=r)
        self.events = Counter(_P + "events", "Valid events confirmed in the raw topic", registry=r)
        self.acked = Counter(_P + "acked_messages", "MQTT messages acknowledged after Kafka", registry=r)
        self.stale_acks = Counter(_P + "stale_acks_dropped",
                                  "Acks dropped because their connection had ended (broker redelivers)",
                                  registry=r)
        self.deadletters = Counter(_P + "deadletters", "Records sent to the dead-letter topic", ["reason"],
                                   registry=r)
        self.delivery_errors = Counter(_P + "delivery_errors", "Failed Kafka delivery reports", ["code"],
                                       registry=r)
        self.reproduced = Counter(_P + "reproduced_records",
                                  "Records produced again after a failed delivery", registry=r)
        reconnects = Counter(_P + "mqtt_reconnects", "MQTT reconnections after the first connect",
                             ["client"], registry=r)
        self.reconnects = reconnects.labels("uplink")
        self.downlink_reconnects = reconnects.labels("downlink")
        self.intake_waits = Counter(_P + "intake_waits",
                                    "Times paho's thread waited for room in the intake queue because the "
                                    "broker sent past our Receive Maximum (policy: stop reading)", registry=r)
        self.byte_budget_waits = Counter(_P + "byte_budget_waits", "Times paho's thread paused reading "
                                         "because max_inflight_bytes of payload were held", registry=r)
        self.held_bytes = Gauge(_P + "held_bytes", "Payload bytes received and not yet acknowledged",
                                registry=r)
        self.redelivered = Counter(_P + "redelivered_messages",
                                   "MQTT messages received with the DUP flag (re-sent after a connection "
                                   "ended un-acknowledged): the upper bound of duplicates produced",
                                   registry=r)
        self.receipts = Counter(_P + "receipts_sent", "Receipt messages published to devices", registry=r)
        self.receipt_ranges = Counter(_P + "receipt_ranges", "Seq ranges in the receipts published "
                                      "(per message: this / receipts_sent)", registry=r)
        self.receipted_events = Counter(_P + "receipted_events", "Seqs covered by the receipts published",
                                        registry=r)
        self.receipts_refused = Counter(_P + "receipts_refused", "Receipts the broker refused (PUBACK with a "
                                        "failure reason, e.g. an ACL): their devices will resend", registry=r)
        self.receipts_deferred = Counter(_P + "receipts_deferred", "Receipts not publishable at their "
                                         "interval (MQTT down, queue full), sent with the next", registry=r)
        self.in_flight = Gauge(_P + "in_flight_messages", "MQTT messages received, not yet acknowledged",
                               registry=r)
        self.producer_queue = Gauge(_P + "producer_queue", "Records in the producer's queue", registry=r)
        self.ack_latency = Histogram(
            _P + "ack_latency_seconds", "From MQTT arrival to its PUBACK (after every Kafka delivery)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r)
        # downlink
        self.commands_published = Counter(_P + "commands_published", "Commands PUBACKed by the MQTT broker",
                                          registry=r)
        self.commands_committed = Counter(_P + "commands_committed", "Commands whose offset is committed",
                                          registry=r)
        self.commands_invalid = Counter(_P + "commands_invalid",
                                        "Commands not sent: bad_key (no device id), oversized, expired",
                                        ["reason"], registry=r)
