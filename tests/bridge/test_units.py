"""Pure logic of the bridge: the ack frontier, topic routes, translation into records. Never sleeps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bridge.ack_frontier import AckFrontier
from bridge.config import BridgeConfig, UplinkConfig
from bridge.routes import Route, filters, parse_topic
from bridge.validate import Translator
from edgebridge.config import load_config
from edgebridge.envelope import encode, encode_batch, new_reading, to_dict
from edgebridge.errors import ConfigError
from edgebridge.topics import KafkaTopics


def test_frontier_acks_in_arrival_order_whatever_the_delivery_order() -> None:
    f = AckFrontier()
    entries = [f.add(1, mid, 0.0) for mid in (10, 11, 12)]
    for e in entries:
        e.outstanding = 2
        e.sealed = True
    for _ in range(2):
        f.delivered(entries[2])  # the last message is complete first
    assert f.ready() == []  # ...but waits for the ones before it
    f.delivered(entries[0])
    assert f.ready() == []
    f.delivered(entries[0])
    assert [e.mid for e in f.ready()] == [10]
    f.delivered(entries[1])
    f.delivered(entries[1])
    assert [e.mid for e in f.ready()] == [11, 12]
    assert len(f) == 0


def test_frontier_waits_for_an_unsealed_message() -> None:
    f = AckFrontier()
    e = f.add(1, 1, 0.0)
    f.produced(e)
    f.delivered(e)  # its first record is confirmed before the second was produced
    assert f.ready() == []
    f.seal(e)
    assert f.ready() == [e]


def test_frontier_keeps_generation_for_the_caller_to_drop_stale_acks() -> None:
    f = AckFrontier()
    old, new = f.add(1, 7, 0.0), f.add(2, 7, 0.0)  # same mid, reused on the next connection
    for e in (old, new):
        e.sealed = True
    assert [(e.generation, e.mid) for e in f.ready()] == [(1, 7), (2, 7)]


def test_routes() -> None:
    assert parse_topic("a/b", "a/b/dev-1/events") == Route("events", "dev-1")
    assert parse_topic("a/b", "a/b/dev-1/status") == Route("status", "dev-1")
    assert parse_topic("a/b", "a/b/dev-1/commands/response") == Route("response", "dev-1")
    assert parse_topic("a/b", "a/b/dev-1/other") is None
    assert parse_topic("a/b", "a/x/dev-1/events") is None
    assert parse_topic("a", "a/dev 1/events") is None
    assert filters("p", UplinkConfig(share_group="g"))[0] == "$share/g/p/+/events"


def _translator(**kw: object) -> Translator:
    return Translator("devices", UplinkConfig(**kw), KafkaTopics(raw="raw", deadletter="dlq"))  # type: ignore[arg-type]


def test_translator_one_record_per_event_of_a_batch() -> None:
    events = [new_reading("d1", s, {"t": {"v": s}}) for s in (1, 2, 3)]
    records = _translator().records("devices/d1/events", encode_batch(events), 0.0)
    assert [r.topic for r in records] == ["raw"] * 3
    assert [orjson.loads(r.value)["seq"] for r in records] == [1, 2, 3]
    assert {r.key for r in records} == {b"d1"}
    assert records[1].value == encode(events[1])  # a batch item is re-encoded on its own


def test_translator_single_event_value_is_the_payload_and_batch_of_one_is_re_encoded() -> None:
    event = new_reading("d1", 7, {"t": {"v": 1.5, "u": "Cel"}})
    payload = b"  " + encode(event)  # leading whitespace: still one JSON object
    t = _translator()
    for _ in range(2):  # the second time the topic's route comes from the cache
        [record] = t.records("devices/d1/events", payload, 0.0)
        assert record.value is payload
        headers = dict(record.headers)
        assert headers["ce_id"] == event.id.encode() and headers["ce_seq"] == b"7"
        assert headers["content-type"] == b"application/cloudevents+json"
        assert headers["mqtt_topic"] == b"devices/d1/events"
    [one] = t.records("devices/d1/events", encode_batch([event]), 0.0)
    assert one.value == encode(event)
    [bad] = t.records("devices/x y/events", payload, 0.0)  # a bad topic is remembered as bad, too
    assert bad.reason == "bad_topic"


def test_translator_dead_letters_spoofing_and_size_and_partial_batches() -> None:
    t = _translator(max_message_bytes=2000, max_deadletter_payload=100)
    [spoof] = t.records("devices/d2/events", encode(new_reading("d1", 1, {"t": {"v": 1}})), 0.0)
    assert (spoof.topic, spoof.reason, spoof.key) == ("dlq", "device_mismatch", b"d2")
    [big] = t.records("devices/d2/events", b"x" * 2001, 0.0)
    assert big.reason == "oversized" and len(big.value) == 100
    assert dict(big.headers)["dlq_truncated"] == b"2001"
    items = [to_dict(new_reading("d1", s, {"t": {"v": s}})) for s in (1, 2)]
    items[0]["deviceid"], items[0]["source"] = "d9", "/devices/d9"
    out = t.records("devices/d1/events", orjson.dumps(items), 0.0)
    assert [(r.topic, r.reason) for r in out] == [("raw", ""), ("dlq", "device_mismatch")]
    [odd] = t.records("elsewhere/d1/events", b"{}", 0.0)
    assert odd.reason == "bad_topic" and odd.key is None


def test_translator_refuses_what_only_the_enricher_writes_but_still_owes_its_receipt() -> None:
    """A device publishes readings and gaps; a processed event from a device is refused at the door,
    and its seq is still receipted once the dead letter is in Kafka (or its agent resends it forever)."""
    obj = to_dict(new_reading("d1", 5, {"t": {"v": 1}}, epoch="0a0a0a0a0a0a0a0a"))
    obj["type"] = "edgebridge.reading.processed.v1"
    [dead] = _translator().records("devices/d1/events", orjson.dumps(obj), 0.0)
    assert (dead.topic, dead.reason, dead.seq, dead.epoch) == ("dlq", "unknown_type", 5, "0a0a0a0a0a0a0a0a")


def test_example_config_loads_and_guarantee_settings_are_protected() -> None:
    from pathlib import Path

    import pytest

    from bridge.config import BridgeConfig
    from bridge.kafka_sink import PROTECTED
    from edgebridge.config import dump_config, load_config
    from edgebridge.errors import ConfigError

    example = Path(__file__).parents[2] / "deploy" / "bridge.example.toml"
    config = load_config(BridgeConfig, example, env={"EDGEBRIDGE_KAFKA_LIBRDKAFKA__SASL_PASSWORD": "hunter2"})
    assert config.kafka.librdkafka["sasl.password"] == "hunter2"
    assert "hunter2" not in dump_config(config)
    env = {"EDGEBRIDGE_KAFKA_LIBRDKAFKA__ENABLE_IDEMPOTENCE": "false"}
    weakened = load_config(BridgeConfig, example, env=env)
    with pytest.raises(ConfigError, match=r"enable\.idempotence"):
        weakened.kafka.client_config({}, PROTECTED)
    with pytest.raises(ConfigError, match=r"uplink\.receive_maximum"):
        load_config(BridgeConfig, None, env={}, overrides={"uplink.receive_maximum": 0})


def test_topics_are_the_topics_section_and_the_former_uplink_names_still_work(tmp_path: Path) -> None:
    """The bridge names its Kafka topics under [topics] like the enricher and the sinks; a config file
    from the field with the former [uplink]/[downlink] names loads the same, with one warning line
    per old key naming the new one."""
    names = KafkaTopics(raw="r", status="s", command_responses="c", deadletter="d", commands="k")
    new = tmp_path / "new.toml"
    new.write_text('[topics]\nraw = "r"\nstatus = "s"\ncommand_responses = "c"\ndeadletter = "d"\n'
                   'commands = "k"\n')
    old = tmp_path / "old.toml"
    old.write_text('[uplink]\nraw_topic = "r"\nstatus_topic = "s"\nresponses_topic = "c"\n'
                   'deadletter_topic = "d"\n[downlink]\ncommands_topic = "k"\n')
    assert load_config(BridgeConfig, new, env={}).topics == names
    assert load_config(BridgeConfig, old, env={}).topics == names
    env = {"EDGEBRIDGE_UPLINK_RAW_TOPIC": "r", "EDGEBRIDGE_DOWNLINK_COMMANDS_TOPIC": "k"}
    from_env = load_config(BridgeConfig, None, env=env).topics
    assert (from_env.raw, from_env.commands) == ("r", "k")

    def print_config(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "edgebridge", "bridge", "run", "--print-config",
                               "--config", str(path)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, **env})

    fresh, former = print_config(new), print_config(old, EDGEBRIDGE_UPLINK_STATUS_TOPIC="s")
    assert fresh.returncode == former.returncode == 0 and fresh.stdout == former.stdout
    assert fresh.stderr == ""
    assert former.stderr.splitlines() == [
        "config key uplink.raw_topic is deprecated: use topics.raw",
        "config key uplink.status_topic is deprecated: use topics.status",
        "EDGEBRIDGE_UPLINK_STATUS_TOPIC is deprecated: use EDGEBRIDGE_TOPICS_STATUS",
        "config key uplink.responses_topic is deprecated: use topics.command_responses",
        "config key uplink.deadletter_topic is deprecated: use topics.deadletter",
        "config key downlink.commands_topic is deprecated: use topics.commands",
    ]


def test_receipt_book_hands_out_by_room_without_waiting_an_interval_and_merges_what_waited() -> None:
    from bridge.receipts import ReceiptBook

    book = ReceiptBook("p", 0.5)
    start = 1000.0
    book._due = start + 0.5
    for device in (b"a", b"b", b"c"):
        book.confirm(device, "e", 1)
    assert book.due(start, 10) == []  # the interval has not passed
    first = book.due(start + 0.5, 2)
    assert [r[2][0] for r in first] == [b"a", b"b"] and book.queued == 1
    assert [r[2][0] for r in book.due(start + 0.51, 5)] == [b"c"]  # room again: no interval to wait
    for seq in (2, 3):
        book.confirm(b"a", "e", seq)
    book.confirm(b"b", "e", 2)
    assert [r[2] for r in book.due(start + 1.0, 1)] == [(b"a", "e", [(2, 3)])]
    book.confirm(b"b", "e", 3)
    assert book.due(start + 1.2, 0) == [] and book.queued == 1  # no room: it waits
    # the next interval merges what still waited with what came since: one receipt per device
    assert [r[2] for r in book.due(start + 1.5, 10)] == [(b"b", "e", [(2, 3)])]
    assert book.deferred == 1 and len(book) == 0
    book.give_back(b"d", "e", [(5, 6)])  # could not be published: with the next interval
    assert book.due(start + 1.6, 10) == []
    assert [r[2] for r in book.due(start + 2.0, 10)] == [(b"d", "e", [(5, 6)])]


def test_run_logs_deprecations_in_the_configured_format_and_a_build_config_error_exits_2(
    tmp_path: Path,
) -> None:
    """``[log] format = "json"``: the warning of an old key comes out as JSON like every other line (it
    is held until logging is set up), and a ConfigError while building the bridge (a librdkafka key the
    bridge sets itself) is exit 2 with one line, before any broker is contacted."""
    path = tmp_path / "bridge.toml"
    path.write_text('[log]\nformat = "json"\n[uplink]\nraw_topic = "r"\n[kafka.librdkafka]\nacks = "1"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBRIDGE_")}
    done = subprocess.run([sys.executable, "-m", "edgebridge", "bridge", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2, done.stderr
    lines = [orjson.loads(line) for line in done.stderr.splitlines()]
    assert [(x["level"], x["msg"]) for x in lines] == [
        ("warning", "config key uplink.raw_topic is deprecated: use topics.raw"),
        ("error", "configuration error")], lines
    assert lines[1]["error"] == "librdkafka.acks: is set by edgebridge for its delivery guarantee"


def test_each_mqtt_connection_may_log_in_as_its_own_user() -> None:
    """[uplink]/[downlink] username and password take precedence over [mqtt]'s for that connection
    (a broker with use_username_as_clientid needs one user per connection); never printed."""
    import pytest

    from edgebridge.config import dump_config, load_config
    from edgebridge.errors import ConfigError

    env = {"EDGEBRIDGE_MQTT_USERNAME": "shared", "EDGEBRIDGE_MQTT_PASSWORD": "pw-shared",
           "EDGEBRIDGE_UPLINK_USERNAME": "bridge-uplink-1", "EDGEBRIDGE_UPLINK_PASSWORD": "pw-up"}
    config = load_config(BridgeConfig, None, env=env)
    up, down = config.mqtt_for(config.uplink), config.mqtt_for(config.downlink)
    assert (up.username, up.password and up.password.reveal()) == ("bridge-uplink-1", "pw-up")
    assert (down.username, down.password and down.password.reveal()) == ("shared", "pw-shared")
    assert up.url == config.mqtt.url and up.ca_file == config.mqtt.ca_file
    assert "pw-up" not in dump_config(config) and "pw-up" not in repr(config)
    with pytest.raises(ConfigError, match=r"downlink\.password"):
        load_config(BridgeConfig, None, env={"EDGEBRIDGE_DOWNLINK_PASSWORD": "x"})


def test_a_replica_in_a_share_group_keeps_no_session_unless_told() -> None:
    """A dead replica's persistent session would keep its share of the stream (docs/bridge.md#scaling)."""
    from bridge.config import UplinkConfig

    assert UplinkConfig().session_seconds == 7 * 24 * 3600
    assert UplinkConfig(share_group="bridges").session_seconds == 0
    assert UplinkConfig(share_group="bridges", session_expiry=60).session_seconds == 60
    assert UplinkConfig(session_expiry=0).session_seconds == 0


def test_known_types_admits_a_deployment_type_and_refuses_it_by_default() -> None:
    """Schema evolution (docs/schema.md): a type of a newer agent is dead-lettered as unknown_type (and
    receipted) until the bridge's known_types lists it; then it is forwarded as it came."""
    obj = to_dict(new_reading("d1", 3, {"t": {"v": 1}}))
    obj["type"], obj["data"] = "com.example.vibration.v1", {"rms": [0.1, 0.4], "axis": "z"}
    payload = orjson.dumps(obj)
    [dead] = _translator().records("devices/d1/events", payload, 0.0)
    assert (dead.topic, dead.reason, dead.seq) == ("dlq", "unknown_type", 3)
    known = ["edgebridge.reading.v1", "edgebridge.gap.v1", "com.example.vibration.v1"]
    [record] = _translator(known_types=known).records("devices/d1/events", payload, 0.0)
    assert (record.topic, record.value, record.seq) == ("raw", payload, 3)


@pytest.mark.parametrize(("known", "says"), [
    (["edgebridge.gap.v1"], "must keep edgebridge.reading.v1"),
    (["edgebridge.reading.v1", "edgebridge.gap.v1", "edgebridge.reading.processed.v1"], "enricher's output"),
    (["edgebridge.reading.v1", "edgebridge.gap.v1", "Vibration"], "words.vN"),
    (["edgebridge.reading.v1", "edgebridge.gap.v1", "com.example.vibration"], "words.vN"),
])
def test_known_types_that_would_lose_or_forge_events_are_a_config_error(known: list[str], says: str) -> None:
    with pytest.raises(ConfigError, match="known_types") as refused:
        UplinkConfig(known_types=known).validate()
    assert says in str(refused.value)
