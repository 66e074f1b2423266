"""The enricher: exactly-once consume-transform-produce from iot.events.raw to iot.events.processed."""
