"""The bridge: MQTT to Kafka uplink acknowledging only what Kafka has, and the command downlink."""
