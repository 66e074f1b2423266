"""The edge agent: sensors to a durable SQLite outbox to MQTT (see DESIGN.md)."""
