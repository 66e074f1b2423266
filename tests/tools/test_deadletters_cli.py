"""``edgebridge deadletters list | redrive`` on dead letters the real enricher wrote.

An unknown device's events are dead-lettered by the enricher (``unknown_devices = "deadletter"``); the
device is registered; redrive puts them back; they appear once in processed (read by a separate
read_committed consumer), also the one the device sent again meanwhile; a second redrive moves nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import orjson
import pytest

from edgebridge import envelope
from edgebridge.topics import KafkaTopics
from simulators.audit import read_records, read_topic
from simulators.processes import ComponentProcess
from tests.tools.conftest import Tools, produce
from tests.waiting import wait_for

pytestmark = [pytest.mark.brokers, pytest.mark.timeout(600)]


def _event(device: str, seq: int) -> bytes:
    return envelope.encode(envelope.new_reading(device, seq, {"t": {"v": 20 + seq, "u": "Cel"}}, epoch="e1"))


def _raw(device: str, seq: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """A raw record as the bridge writes it."""
    return (device.encode(), _event(device, seq), [("content-type", envelope.CONTENT_TYPE.encode()),
                                                   ("ce_seq", str(seq).encode())])


def _processed(tools: Tools) -> Counter[tuple[str, int]]:
    out: Counter[tuple[str, int]] = Counter()
    for value in read_topic(tools.bootstrap, tools.topics.processed, idle=1.0):
        event = orjson.loads(value)
        out[(event["deviceid"], event["seq"])] += 1
    return out


def _enricher(tools: Tools, workdir: Path, **pipeline: object) -> ComponentProcess:
    t = tools.topics
    name = t.raw.rsplit(".", 1)[1]
    config = {
        "instance_id": f"ops-{name}", "group_id": f"ops-{name}", "transactional_id_prefix": f"ops-{name}",
        "kafka": {"bootstrap": tools.bootstrap},
        "commit": {"transaction_timeout_ms": 10000, "interval_ms": 200},
        "pipeline": {"unknown_devices": "deadletter", **pipeline},
        "log": {"level": "INFO"},
        "topics": {f: getattr(t, f) for f in KafkaTopics.__dataclass_fields__},
    }
    proc = ComponentProcess("enricher", "enricher", config, workdir).start()
    assert proc.wait_healthy(90), f"enricher not healthy; see {proc.log_path}"
    return proc


def _summary(result_stdout: str) -> str:
    return result_stdout.strip().splitlines()[-1]


def test_redrive_after_registering_the_device_processes_each_event_once(tools: Tools, tmp_path: Path) -> None:
    tools.register("dev-ok", "s1")
    enricher = _enricher(tools, tmp_path)
    try:
        produce(tools.bootstrap, tools.topics.raw,
                [*(_raw("dev-ok", s) for s in (1, 2)), *(_raw("dev-new", s) for s in (1, 2, 3)),
                 (b"dev-bad", b"{not json", [])])
        # the fault happened: the enricher dead-lettered dev-new's three events and the bad record
        wait_for(lambda: len(read_records(tools.bootstrap, tools.topics.deadletter, idle=1.0)) == 4, 60,
                 "4 dead letters")
        assert _processed(tools) == {("dev-ok", 1): 1, ("dev-ok", 2): 1}

        listed = tools.run("deadletters", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        groups = {(g["reason"], g["device"]): g for g in map(json.loads, listed.stdout.splitlines())}
        assert set(groups) == {("unknown_device", "dev-new"), ("not_json", "dev-bad")}, groups
        assert groups[("unknown_device", "dev-new")]["count"] == 3
        assert groups[("unknown_device", "dev-new")]["error"] == (
            "Reject: unknown_device: 'dev-new' is not in the registry")
        assert groups[("unknown_device", "dev-new")]["redriven"] == 0
        table = tools.run("deadletters", "list").stdout
        assert "4 dead letters, 2 groups" in table

        # without a filter redrive refuses; before the fix, everything would only fail again
        assert tools.run("deadletters", "redrive").returncode == 2
        early = tools.run("deadletters", "redrive", "--all")
        assert early.returncode == 0, early.stderr
        assert _summary(early.stdout).startswith("redriven 0, already redriven 0, not redriven 4")
        assert "would fail again: 'dev-new' is still not in the registry" in early.stdout
        assert "would fail again: not_json" in early.stdout

        tools.register("dev-new", "s2")
        wait_for(lambda: enricher.metric("edgebridge_enricher_registry_devices") == 2, 30,
                 "the enricher has dev-new in its registry")
        # dev-new sends its event 2 again meanwhile (a resend): processed once now ...
        produce(tools.bootstrap, tools.topics.raw, [_raw("dev-new", 2)])
        wait_for(lambda: _processed(tools)[("dev-new", 2)] == 1, 60, "the resent event processed")

        dry = tools.run("deadletters", "redrive", "--reason", "unknown_device", "--dry-run")
        assert _summary(dry.stdout).startswith("would redrive 3, already redriven 0, not redriven 0")
        raw_before = len(read_records(tools.bootstrap, tools.topics.raw, idle=1.0))

        first = tools.run("deadletters", "redrive", "--reason", "unknown_device")
        assert first.returncode == 0, first.stderr
        assert _summary(first.stdout) == (f"redriven 3, already redriven 0, not redriven 0 (of 3 selected) "
                                          f"-> {tools.topics.raw}")
        raw_after = read_records(tools.bootstrap, tools.topics.raw, idle=1.0)
        assert len(raw_after) == raw_before + 3
        redriven = [r for r in raw_after if any(name == "redriven_from" for name, _ in r.headers)]
        assert sorted(orjson.loads(r.value or b"")["seq"] for r in redriven) == [1, 2, 3]
        assert {r.key for r in redriven} == {b"dev-new"}

        wait_for(lambda: {("dev-new", 1), ("dev-new", 3)} <= set(_processed(tools)), 60,
                 "the redriven events processed")
        enricher.terminate()  # a clean stop commits what it has: nothing more can arrive
        final = _processed(tools)
        assert final == {("dev-ok", 1): 1, ("dev-ok", 2): 1, ("dev-new", 1): 1, ("dev-new", 2): 1,
                         ("dev-new", 3): 1}, final

        second = tools.run("deadletters", "redrive", "--reason", "unknown_device")
        assert second.returncode == 0, second.stderr
        assert _summary(second.stdout).startswith("redriven 0, already redriven 3, not redriven 0")
        assert len(read_records(tools.bootstrap, tools.topics.raw, idle=1.0)) == raw_before + 3

        listed = {(g["reason"], g["device"]): g for g in map(json.loads, tools.run(
            "deadletters", "list", "--json", "--reason", "unknown_device").stdout.splitlines())}
        assert listed == {("unknown_device", "dev-new"): listed[("unknown_device", "dev-new")]}
        assert listed[("unknown_device", "dev-new")]["redriven"] == 3

        # the enricher's own config file serves the tools too: its [kafka] and [topics], the rest ignored
        tail = tools.run("tail", "deadletter", "--device", "dev-new", "--config", str(enricher.config_path),
                         config=False)
        assert tail.returncode == 0, tail.stderr
        assert tail.stdout.count("unknown_device: Reject: unknown_device: 'dev-new' is not in the registry"
                                 f"  (from enricher {tools.topics.raw}/") == 3
    finally:
        enricher.terminate()


def test_a_redrive_that_died_mid_transaction_leaves_nothing_and_the_next_moves_each_once(
    tools: Tools,
) -> None:
    """A redrive killed between its produce and its commit: the next redrive (same transactional id)
    fences it and aborts its transaction, so neither its records nor its markers ever count."""
    from confluent_kafka import Producer

    from edgebridge import deadletters
    from edgebridge.ops.redrive import ensure_marker_topic

    dlq = tools.topics.deadletter
    letters = [(b"dev-s", _event("dev-s", s), deadletters.headers(
        reason="step_failed", error=ZeroDivisionError("division by zero"), component="enricher",
        original=(tools.topics.raw, 0, s), step="my.steps:ratio")) for s in (1, 2)]
    produce(tools.bootstrap, dlq, letters, partition=0)
    ensure_marker_topic({"bootstrap.servers": tools.bootstrap}, tools.marker_topic)
    dying = Producer({"bootstrap.servers": tools.bootstrap, "transactional.id": _transactional_id(tools)})
    dying.init_transactions(30)
    dying.begin_transaction()
    dying.produce(tools.topics.raw, letters[0][1], b"dev-s",
                  headers=[("redriven_from", f"{dlq}/0/0".encode())])
    dying.produce(tools.marker_topic, b"{}", f"{dlq}/0/0".encode())
    assert dying.flush(30) == 0
    # the fault happened: the half-done record is in the log, invisible to read_committed readers
    assert len(read_records(tools.bootstrap, tools.topics.raw, idle=1.0,
                            settings={"isolation.level": "read_uncommitted"})) == 1
    assert _committed_count(tools, tools.topics.raw) == 0

    one = tools.run("deadletters", "redrive", "--device", "dev-s", "--offset", "0:1", "--dry-run")
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines()[0] == "0:1 step_failed      dev-s                would redrive"
    assert _summary(one.stdout).startswith("would redrive 1, already redriven 0, not redriven 0 (of 1 ")
    assert tools.run("deadletters", "redrive", "--offset", "zero").returncode == 2

    result = tools.run("deadletters", "redrive", "--reason", "step_failed")
    assert result.returncode == 0, result.stderr
    assert _summary(result.stdout).startswith("redriven 2, already redriven 0, not redriven 0")
    # aborted, not committed later: a read_committed reader gets exactly the two redriven records (an
    # open transaction would hold it before them, a committed one would add a third)
    committed = read_records(tools.bootstrap, tools.topics.raw, idle=1.0)
    assert sorted(orjson.loads(r.value or b"")["seq"] for r in committed) == [1, 2]
    again = tools.run("deadletters", "redrive", "--reason", "step_failed")
    assert _summary(again.stdout).startswith("redriven 0, already redriven 2")


def _transactional_id(tools: Tools) -> str:
    return "redrive-" + tools.topics.raw.rsplit(".", 1)[1]  # as the tools fixture configures it


def _committed_count(tools: Tools, topic: str) -> int:
    return len(read_records(tools.bootstrap, topic, idle=1.0))


def test_a_type_added_to_known_types_later_is_redriven_with_known_type(tools: Tools, tmp_path: Path) -> None:
    """The rollout of a new event type (docs/schema.md) when agents sent it before the enricher took it:
    its events were dead-lettered as unknown_type; once the enricher lists it, a redrive told the same
    brings each back once, as it came."""
    vibration = "com.example.vibration.v1"
    tools.register("dev-vib", "s1")

    def event(seq: int) -> bytes:
        obj = envelope.to_dict(envelope.new_reading("dev-vib", seq, {"t": {"v": 1}}, epoch="e1"))
        obj["type"], obj["data"] = vibration, {"rms": [0.5, seq]}
        return orjson.dumps(obj)

    sent = [event(1), event(2)]
    enricher = _enricher(tools, tmp_path / "before")
    try:
        produce(tools.bootstrap, tools.topics.raw, [(b"dev-vib", value, []) for value in sent])
        wait_for(lambda: len(read_records(tools.bootstrap, tools.topics.deadletter, idle=1.0)) == 2, 60,
                 "2 dead letters")
    finally:
        enricher.terminate()
    refused = tools.run("deadletters", "redrive", "--reason", "unknown_type", "--dry-run")
    assert _summary(refused.stdout).startswith("would redrive 0, already redriven 0, not redriven 2")
    assert "would fail again: unknown_type" in refused.stdout
    assert tools.run("deadletters", "redrive", "--all", "--known-type", "Vibration").returncode == 2

    enricher = _enricher(tools, tmp_path / "after",
                         known_types=[envelope.READING_TYPE, envelope.GAP_TYPE, vibration])
    try:
        went = tools.run("deadletters", "redrive", "--reason", "unknown_type", "--known-type", vibration)
        assert went.returncode == 0, went.stderr
        assert _summary(went.stdout).startswith("redriven 2, already redriven 0, not redriven 0")
        wait_for(lambda: set(_processed(tools)) == {("dev-vib", 1), ("dev-vib", 2)}, 60,
                 "the redriven events processed")
        enricher.terminate()
        values = read_topic(tools.bootstrap, tools.topics.processed, idle=1.0)
        assert sorted(map(orjson.loads, values), key=lambda e: e["seq"]) == [orjson.loads(v) for v in sent]
    finally:
        enricher.terminate()
