"""MQTT device topics and Kafka topic names."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebridge import topics
from edgebridge.envelope import REASONS, is_deviceid
from edgebridge.errors import EnvelopeError
from edgebridge.ops.config import RedriveSettings
from edgebridge.topic_plan import ExistingTopic, TopicSpec, align_state, diff_topic, wanted_topics
from edgebridge.topics import KafkaTopics, parse_device_topic
from tests.conftest import BrokerAddresses

ROOT = Path(__file__).resolve().parents[1]

FAST = settings(deadline=None, database=None)

device_ids = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "P", "S"], exclude_characters="/+#"),
    min_size=1,
    max_size=40,
).filter(lambda s: s not in (".", ".."))  # the path names the device-id rule refuses


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
    assert names.aggregates == "iot.aggregates"
    assert names.aggregates_state == "iot.aggregates.state"
    assert len(set(names.names())) == 11
    assert names.compacted == {"iot.devices", "iot.enricher.state", "iot.aggregates.state"}
    assert names.compacted_with_deletion == {"iot.aggregates"}


def test_bad_topic_is_a_listed_reason() -> None:
    assert "bad_topic" in REASONS


def test_kafka_topics_are_frozen_and_configurable() -> None:
    custom = KafkaTopics(raw="test.raw")
    assert custom.raw == "test.raw" and custom.processed == "iot.events.processed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        custom.raw = "x"  # type: ignore[misc]


# --- `edgebridge topics create`: the plan, then the command against the session's Kafka ----------------


def test_the_plan_compacts_the_registry_and_state_and_partitions_state_like_raw() -> None:
    specs = {s.name: s for s in wanted_topics(KafkaTopics(), partitions=6, marker_topic="markers")}
    names = KafkaTopics()
    assert set(specs) == {*names.names(), "markers"}  # the redrive's markers are a topic of the plan
    assert specs[names.enricher_state].partitions == specs[names.raw].partitions == 6
    assert {n for n, s in specs.items() if s.config.get("cleanup.policy") == "compact"} == {
        *names.compacted, "markers"}
    assert {n for n, s in specs.items()
            if s.config.get("cleanup.policy") == "compact,delete"} == names.compacted_with_deletion
    assert specs[names.aggregates].partitions == specs[names.aggregates_state].partitions == 6
    assert specs["markers"].partitions == 1
    default = RedriveSettings().marker_topic
    assert default in {s.name for s in wanted_topics(KafkaTopics())}  # `brokers up` and the e2e tests
    assert all(s.replication_factor == 1 and "min.insync.replicas" not in s.config for s in specs.values())


@pytest.mark.parametrize(("rf", "min_isr"), [(2, "1"), (3, "2"), (5, "4")])
def test_a_replicated_plan_sets_min_insync_replicas_to_rf_minus_one(rf: int, min_isr: str) -> None:
    for spec in wanted_topics(KafkaTopics(), replication_factor=rf):
        assert spec.replication_factor == rf and spec.config["min.insync.replicas"] == min_isr, spec


def test_a_diff_names_what_we_would_set_and_what_we_only_report() -> None:
    spec = TopicSpec("t", 4, 3, {"cleanup.policy": "compact", "min.insync.replicas": "2"})
    diff = diff_topic(spec, ExistingTopic(2, 1, {"cleanup.policy": "delete", "min.insync.replicas": "2"}))
    assert diff.config == {"cleanup.policy": ("delete", "compact")}
    assert len(diff.notes) == 2 and "has 2 partitions, 4 asked" in diff.notes[0]
    assert "replication factor 1, 3 asked" in diff.notes[1]
    assert diff_topic(spec, ExistingTopic(8, 3, dict(spec.config))).empty  # more partitions: fine


def test_min_insync_replicas_follows_the_replication_factor_the_topic_has() -> None:
    # an RF 1 topic asked for RF 3 keeps its min ISR: 2 would refuse every acks=all write to it
    spec = wanted_topics(KafkaTopics(), replication_factor=3)[0]
    diff = diff_topic(spec, ExistingTopic(3, 1, {"min.insync.replicas": "1"}))
    assert diff.config == {} and "nor its min.insync.replicas" in diff.notes[0]
    same_rf = diff_topic(spec, ExistingTopic(3, 3, {"min.insync.replicas": "1"}))
    assert same_rf.config == {"min.insync.replicas": ("1", "2")}


def test_the_state_topic_follows_the_raw_topic_that_exists() -> None:
    names = KafkaTopics()
    specs = wanted_topics(names, partitions=6)
    raw2 = ExistingTopic(2, 1, {})
    aligned, notes = align_state(specs, names, {names.raw: raw2})
    assert {s.name: s.partitions for s in aligned}[names.enricher_state] == 2
    assert notes == [f"note {names.enricher_state}: 2 partitions, as {names.raw} has"]
    state4 = ExistingTopic(4, 1, {})
    aligned, notes = align_state(specs, names, {names.raw: raw2, names.enricher_state: state4})
    assert len(notes) == 1 and "has 4 partitions, iot.events.raw has 2: they must be equal" in notes[0]
    assert align_state(specs, names, {}) == (specs, [])  # nothing exists: as asked


def test_the_aggregator_topics_follow_the_processed_topic_that_exists() -> None:
    names = KafkaTopics()
    specs = wanted_topics(names, partitions=6)
    aligned, notes = align_state(specs, names, {names.processed: ExistingTopic(2, 1, {})})
    sizes = {s.name: s.partitions for s in aligned}
    assert sizes[names.aggregates] == sizes[names.aggregates_state] == 2
    assert notes == [f"note {names.aggregates}: 2 partitions, as {names.processed} has",
                     f"note {names.aggregates_state}: 2 partitions, as {names.processed} has"]


def _topics_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
    return subprocess.run([sys.executable, "-m", "edgebridge", "topics", *args], capture_output=True,
                          text=True, env={**clean, **env}, cwd=ROOT, timeout=120)


def _own_names(unique_name: Callable[[str], str]) -> tuple[KafkaTopics, dict[str, str]]:
    names = KafkaTopics(**{f: unique_name(f) for f in KafkaTopics.__dataclass_fields__})
    fields = KafkaTopics.__dataclass_fields__
    return names, {f"EDGEBRIDGE_TOPICS_{f.upper()}": getattr(names, f) for f in fields}


@pytest.mark.brokers
def test_topics_create_reads_the_kafka_settings_from_the_environment(
        brokers: BrokerAddresses, kafka_admin: Any, unique_name: Callable[[str], str]) -> None:
    names, env = _own_names(unique_name)
    env["EDGEBRIDGE_KAFKA_BOOTSTRAP"] = brokers.kafka_bootstrap  # no --bootstrap: the env alone
    markers = env["EDGEBRIDGE_REDRIVE_MARKER_TOPIC"] = unique_name("markers")
    result = _topics_cli("create", "--partitions", "2", env=env)
    assert result.returncode == 0, result.stderr
    assert f"created {names.raw}: 2 partitions, replication factor 1" in result.stdout
    assert f"created {markers}: 1 partition, replication factor 1, cleanup.policy=compact" in result.stdout
    cluster = kafka_admin.list_topics(timeout=10)
    assert {*names.names(), markers} <= set(cluster.topics)
    assert len(cluster.topics[names.enricher_state].partitions) == 2
    from confluent_kafka.admin import ConfigResource, ResourceType

    described = kafka_admin.describe_configs([ConfigResource(ResourceType.TOPIC, markers)])
    assert next(iter(described.values())).result(30)["cleanup.policy"].value == "compact"
    again = _topics_cli("create", "--partitions", "2", env=env)
    assert again.returncode == 0 and "nothing to create or change" in again.stdout, again.stdout


@pytest.mark.brokers
def test_topics_create_reads_a_config_file(brokers: BrokerAddresses, kafka_admin: Any,
                                           unique_name: Callable[[str], str], tmp_path: Path) -> None:
    names, _ = _own_names(unique_name)
    config = tmp_path / "admin.toml"
    config.write_text(f'[kafka]\nbootstrap = "{brokers.kafka_bootstrap}"\n\n[kafka.librdkafka]\n'
                      f'"client.id" = "topics-test"\n\n[topics]\nraw = "{names.raw}"\n')
    result = _topics_cli("create", "--config", str(config), "--dry-run", env={})
    assert result.returncode == 0, result.stderr
    assert f"would create {names.raw}: 3 partitions" in result.stdout
    assert names.raw not in kafka_admin.list_topics(timeout=10).topics


@pytest.mark.brokers
def test_a_replication_factor_above_the_brokers_is_refused_and_creates_nothing(
        brokers: BrokerAddresses, kafka_admin: Any, unique_name: Callable[[str], str]) -> None:
    names, env = _own_names(unique_name)
    result = _topics_cli("create", "--bootstrap", brokers.kafka_bootstrap, "--replication-factor", "2",
                         env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == ("edgebridge topics create: replication factor 2 needs at least 2 "
                                     "brokers, the cluster has 1: give --replication-factor at most the "
                                     "number of brokers")
    assert not set(names.names()) & set(kafka_admin.list_topics(timeout=10).topics)


def test_a_bad_config_key_is_named(tmp_path: Path) -> None:
    config = tmp_path / "admin.toml"
    config.write_text('[kafka]\nbootstrapp = "x:1"\n')
    result = _topics_cli("create", "--config", str(config), env={})
    assert result.returncode == 2
    assert "kafka.bootstrapp: unknown key (did you mean 'bootstrap'?)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.brokers
def test_acls_on_a_broker_without_an_authorizer_is_one_clear_line(brokers: BrokerAddresses) -> None:
    result = _topics_cli("acls", "--bootstrap", brokers.kafka_bootstrap, env={})
    assert result.returncode == 1
    assert result.stderr == ("edgebridge topics acls: cannot read or create ACLs: "
                             "No Authorizer is configured.\n")
