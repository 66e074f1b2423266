"""MQTT device topics and Kafka topic names."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebridge import topics
from edgebridge.envelope import REASONS, is_deviceid
from edgebridge.errors import EnvelopeError
from edgebridge.topics import KafkaTopics, parse_device_topic

FAST = settings(deadline=None, database=None)

device_ids = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "P", "S"], exclude_characters="/+#"),
    min_size=1,
    max_size=40,
)


def test_device_topics_follow_the_wire_contract() -> None:
    assert topics.events_topic("pump-7") == "devices/pump-7/events"
    assert topics.status_topic("pump-7") == "devices/pump-7/status"
    assert topics.commands_topic("pump-7") == "devices/pump-7/commands"
    assert topics.command_response_topic("pump-7") == "devices/pump-7/commands/response"
    assert topics.events_topic("pump-7", "site1/devices") == "site1/devices/pump-7/events"


@pytest.mark.parametrize("kind", sorted(topics.KINDS))
def test_parse_inverts_the_builders(kind: str) -> None:
    topic = topics.device_topic("pump-7", kind, "site1/devices")
    assert parse_device_topic(topic, "site1/devices") == ("pump-7", kind)


@FAST
@given(device_ids, st.sampled_from(sorted(topics.KINDS)))
def test_parse_inverts_the_builders_for_any_device_id(device_id: str, kind: str) -> None:
    assert parse_device_topic(topics.device_topic(device_id, kind)) == (device_id, kind)


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "devices",
        "devices/",
        "devices/pump-7",
        "devices/pump-7/",
        "devices//events",
        "devices/pump-7/telemetry",
        "devices/pump-7/events/extra",
        "devices/pump-7/commands/response/x",
        "other/pump-7/events",
        "devicesX/pump-7/events",
        "site1/devices/pump-7/events",
        "devices/pump 7/events",
        "devices/pump\x007/events",
        "devices/+/events",
        "devices/#",
        "$share/g/devices/pump-7/events",
    ],
)
def test_parse_refuses_anything_but_a_device_topic(topic: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_device_topic(topic)
    assert info.value.reason == "bad_topic"


@FAST
@given(st.text(max_size=60) | st.builds(lambda t: "devices/" + t, st.text(max_size=40)))
def test_parse_raises_only_bad_topic(topic: str) -> None:
    try:
        device_id, kind = parse_device_topic(topic)
    except EnvelopeError as exc:
        assert exc.reason == "bad_topic"
    else:
        assert is_deviceid(device_id) and kind in topics.KINDS


@pytest.mark.parametrize("device_id", ["", "a/b", "a+b", "a#b", "a b", "a\nb", "x" * 129])
def test_builders_refuse_device_ids_that_are_not_one_topic_level(device_id: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        topics.events_topic(device_id)
    assert info.value.reason == "bad_topic"


@pytest.mark.parametrize("prefix", ["", "/devices", "devices/", "a//b", "dev+", "dev#", "$SYS"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(EnvelopeError):
        topics.events_topic("pump-7", prefix)
    with pytest.raises(EnvelopeError):
        parse_device_topic("devices/pump-7/events", prefix)


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(EnvelopeError):
        topics.device_topic("pump-7", "telemetry")
    with pytest.raises(EnvelopeError):
        topics.subscription("telemetry")


def test_subscriptions() -> None:
    assert topics.subscription(topics.EVENTS) == "devices/+/events"
    assert topics.subscription(topics.STATUS, "site1/devices") == "site1/devices/+/status"
    assert topics.subscription(topics.EVENTS, share_group="bridge") == "$share/bridge/devices/+/events"
    for group in ["", "a/b", "a+", "#"]:
        with pytest.raises(EnvelopeError):
            topics.subscription(topics.EVENTS, share_group=group)


def test_kafka_topic_defaults_match_the_design() -> None:
    names = KafkaTopics()
    assert names.raw == "iot.events.raw"
    assert names.processed == "iot.events.processed"
    assert names.deadletter == "iot.events.deadletter"
    assert names.alerts == "iot.alerts"
    assert names.devices == "iot.devices"
    assert names.commands == "iot.commands"
    assert names.command_responses == "iot.commands.responses"
    assert names.enricher_state == "iot.enricher.state"
    assert names.status == "iot.devices.status"
    assert len(set(names.names())) == 9
    assert names.compacted == {"iot.devices", "iot.enricher.state"}


def test_bad_topic_is_a_listed_reason() -> None:
    assert "bad_topic" in REASONS


def test_kafka_topics_are_frozen_and_configurable() -> None:
    custom = KafkaTopics(raw="test.raw")
    assert custom.raw == "test.raw" and custom.processed == "iot.events.processed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        custom.raw = "x"  # type: ignore[misc]
